"""`genba bench worldmodel` (genba.worldmodel.bench): a preset's training step and rollout rate."""

import pytest

from genba.cli import main
from genba.worldmodel.bench import BenchWorldModelConfig, run_bench_worldmodel


def test_it_times_a_training_step_and_a_rollout_of_the_tiny_preset():
    cfg = BenchWorldModelConfig(preset="tiny", batch_size=2, warmup=0, repeats=1, horizon=2, rollout_batch=1, threads=1)
    out = run_bench_worldmodel(cfg)
    assert out["batch_size"] == 2 and out["step_ms"] > 0 and out["rollout_ms"] > 0
    assert out["samples_per_s"] == pytest.approx(2 / (out["step_ms"] / 1e3), rel=0.01)
    assert out["rollout_frames_per_s"] == pytest.approx(1 * 2 / (out["rollout_ms"] / 1e3), rel=0.02)
    assert out["mfu"] is None and out["threads"] == 1 and out["params"] > 1_000_000  # no MFU without CUDA


def test_bad_options_are_one_line(tmp_path, capsys):
    assert main(["bench", "worldmodel", "repeats=0", f"out={tmp_path / 'b.json'}"]) == 2
    assert "repeats, horizon and rollout_batch must be >= 1" in capsys.readouterr().err
    assert main(["bench", "worldmodel", "preset=huge", f"out={tmp_path / 'b.json'}"]) == 2
    assert "preset='huge'" in capsys.readouterr().err
    assert main(["bench", "worldmodel", "compile=turbo", f"out={tmp_path / 'b.json'}"]) == 2
    assert "compile='turbo': not a torch.compile backend (" in capsys.readouterr().err


def test_compile_runs_the_same_step_through_torch_compile():
    """aot_eager: dynamo's capture and AOT autograd without code generation (inductor's C++ build takes minutes on
    this CPU; the GPU session measures inductor)."""
    cfg = BenchWorldModelConfig(preset="tiny", batch_size=2, warmup=1, repeats=1, horizon=2, rollout_batch=1,
                                threads=1, compile="aot_eager")  # fmt: skip
    out = run_bench_worldmodel(cfg)
    assert out["compile"] == "aot_eager" and out["step_ms"] > 0
