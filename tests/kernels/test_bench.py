"""`genba bench attention` on the CPU's tiny grid (the GPU grid is the same code with other defaults)."""

import json

import pytest

from genba.cli import main
from genba.errors import GenbaError
from genba.kernels.bench import BenchAttentionConfig, format_table, run_bench_attention


def test_cli_runs_the_tiny_grid(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "attention", "device=cpu", "frames=[3]", "tokens=[8]", "dims=[32]", "windows=[0,2]", "reps=2"]
    assert main([*argv, f"out={out}"]) == 0
    assert capsys.readouterr().out.strip().endswith(str(out))
    summary = json.loads(out.read_text())
    rows = summary["rows"]
    assert {r["backend"] for r in rows} == {"reference", "sdpa", "flex"}
    assert {r["window"] for r in rows} == {None, 2}
    for r in rows:
        assert r["ms_fwd"] > 0 and r["tflops_fwd"] > 0
        assert r["max_err_vs_reference"] < 1e-5
        assert r["useful_pairs"] == (6 if r["window"] is None else 5) * 64  # frame pairs x N^2
        assert ("ms_bwd" in r and "ms_fwd_bwd" in r) == (r["backend"] != "flex")  # flex has no backward on CPU
        assert r.get("tflops_bwd", 1) > 0
    assert summary["targets"]["measured"] is False  # no triton row on CPU
    assert summary["triton_kernels"] is None  # and so no kernel family to report


def test_triton_is_refused_on_cpu():
    with pytest.raises(GenbaError, match="benchmarked only on CUDA"):
        run_bench_attention(BenchAttentionConfig(backends=["triton"], device="cpu"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("backends=[fast]", "backends: unknown"),
        ("dims=[48]", "head dims must be 32, 64 or 128"),
        ("dtype=f8", "dtype"),
        ("triton_kernels=fast", "triton_kernels='fast' (valid: auto, tma, pointer)"),
    ],
)
def test_bad_config_is_one_line(capsys, override, message):
    assert main(["bench", "attention", override]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_table_lists_every_row():
    rows = [{"backend": "sdpa", "D": 64, "N": 16, "F": 4, "window": None, "ms_fwd": 1.5, "tflops_fwd": 0.2}]
    table = format_table(rows)
    assert "sdpa" in table and "1.5" in table and "n/a" in table
