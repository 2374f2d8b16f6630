"""`genba bench policy` (genba.policies.bench): a preset's step time and latency per chunk."""

import pytest

from genba.cli import main
from genba.errors import GenbaError
from genba.policies.bench import BenchPolicyConfig, run_bench_policy


@pytest.mark.parametrize("preset", ["tiny", "tiny-locate"])
def test_it_times_a_training_step_and_a_chunk_of_a_tiny_preset(preset):
    out = run_bench_policy(BenchPolicyConfig(preset=preset, batch_size=2, warmup=0, repeats=1, chunks=3, threads=1))
    assert out["head"] == "flow" and out["flow_steps"] == 10 and out["batch_size"] == 2
    assert out["step_ms"] > 0 and out["chunk_ms"] > 0 and out["chunk_ms_p99"] >= out["chunk_ms"]
    assert out["samples_per_s"] == pytest.approx(2 / (out["step_ms"] / 1e3), rel=0.01)
    assert out["params"] > 1_000_000 and out["minutes_per_run"] > 0


def test_bad_options_are_one_line(tmp_path, capsys):
    with pytest.raises(GenbaError, match="preset="):
        BenchPolicyConfig(preset="base")
    assert main(["bench", "policy", "chunks=0", f"out={tmp_path / 'b.json'}"]) == 2
    assert "chunks must be >= 1" in capsys.readouterr().err
