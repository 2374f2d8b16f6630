"""Suite-wide set-up that must happen before any test module is collected."""

import os

import torch

# The Triton kernels run in Triton's interpreter on CPU. Triton reads this when a kernel is decorated, so it must be
# set before any module that defines kernels is imported, whichever test folder xdist happens to collect first.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
