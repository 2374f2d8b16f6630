"""Kernel tests: Triton's interpreter on machines without CUDA.

TRITON_INTERPRET must be on before triton is first imported in the process: triton.language compiles or interprets
its own helpers (tl.zeros, tl.max, ...) when it is imported. Only without CUDA: on a GPU machine it would turn every
Triton kernel in the process (ours, inductor's, FlexAttention's) into the interpreter, and the GPU tests cover the
kernel there. Under pytest-xdist every worker imports this file while collecting, before any test runs; only a test
module of another folder that imports triton at collection time could come first (then the `interpreted` fixture
fails with the reason instead of letting the kernel crash). tests/conftest.py setting the same variable closes that.
"""

import os
import sys

import pytest
import torch

TRITON_IMPORTED_EARLY = "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1"
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def interpreted() -> None:
    """For tests of the Triton kernel on CPU tensors: the interpreter must be active."""
    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("CUDA machine: the kernel is tested compiled by test_gpu.py (TRITON_INTERPRET=1 runs these)")
    if TRITON_IMPORTED_EARLY:
        pytest.fail("triton was imported before tests/kernels/conftest.py set TRITON_INTERPRET=1; set it earlier")
    from genba.kernels import triton_attention

    assert triton_attention.INTERPRET, "TRITON_INTERPRET=1 is not in effect for the kernel module"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
