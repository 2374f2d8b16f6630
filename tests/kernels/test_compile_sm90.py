"""Without a GPU: the kernels compile for an H100 (sm_90) through triton's bundled ptxas, onto wgmma, unspilled;
the descriptor kernels' tiles move through the copy engine (TMA)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton", reason="triton is not installed")
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"

# A separate process: compiling needs TRITON_INTERPRET unset, and this one runs the interpreter.
SCRIPT = """
import json, pathlib, re, subprocess, sys, tempfile
from genba.kernels import triton_tma
from genba.kernels.triton_attention import _CANDIDATES, compile_ahead

def facts(k):
    cubin = pathlib.Path(tempfile.mkdtemp()) / "k.cubin"
    cubin.write_bytes(k.asm["cubin"])
    usage = subprocess.run([sys.argv[1], "--dump-resource-usage", str(cubin)], capture_output=True, text=True).stdout
    ptx = k.asm["ptx"]
    return {"wgmma": "wgmma" in ptx, "tma": "cp.async.bulk.tensor" in ptx,
            "stack": int(re.search(r"STACK:(\\d+)", usage).group(1))}

report = {}
for name, candidates in _CANDIDATES.items():  # the first autotuning candidate meant for D = 128, per kernel
    bm, bn, warps, stages, _ = next(c for c in candidates if c[4] == 128)
    k = compile_ahead(name, dtype="bf16", head_dim=128, block_m=bm, block_n=bn, num_warps=warps, num_stages=stages)
    report[name] = facts(k) | {"tma": None}
for name, candidates in triton_tma.CANDIDATES.items():  # every descriptor candidate (all meant for D <= 128)
    for config in candidates:
        report[f"tma {name} {config}"] = facts(triton_tma.compile_ahead(name, config))
print(json.dumps(report))
"""


@pytest.mark.skipif(not CUOBJDUMP.exists(), reason="this triton build ships no NVIDIA tools (ptxas, cuobjdump)")
def test_kernels_compile_for_h100_on_tensor_cores_without_spills():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(CUOBJDUMP)], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for name, info in report.items():
        assert info["wgmma"], f"{name}: no wgmma in the PTX (not on Hopper tensor cores)"
        assert info["stack"] == 0, f"{name}: {info['stack']} bytes of register spills"
        assert info["tma"] is not False, f"{name}: its tiles do not move through the copy engine"


def test_autotuning_keeps_only_unspilled_candidates_at_d128():
    from genba.kernels import triton_attention as ta

    for name, candidates in ta._CANDIDATES.items():
        for head_dim in (32, 64, 128):
            kept = ta._pruner(name)(ta._configs(name), {"L": 4096}, HEAD_DIM=head_dim)
            allowed = {(bm, bn, w, s) for bm, bn, w, s, d in candidates if head_dim <= d}
            assert kept and {(*c.kwargs.values(), c.num_warps, c.num_stages) for c in kept} == allowed, name
