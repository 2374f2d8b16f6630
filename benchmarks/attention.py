"""Spatiotemporal attention benchmark: `python benchmarks/attention.py [key=value ...]` = `genba bench attention`.

Defaults on a CUDA machine are the issue's grid (bf16; F in 8, 16, 32; N in 64, 256; D in 64, 128; window none or 4;
triton, compiled flex, sdpa with mask, dense causal flash sdpa); on CPU a tiny smoke grid. Record the table printed
on stderr, with the device and date from the JSON summary, in benchmarks/README.md.
"""

import sys

from genba.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "attention", *sys.argv[1:]]))
