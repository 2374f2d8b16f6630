"""`genba bench data` through the CLI on a small lerobot-written dataset: the summary's figures exist and are sane,
and the check that both pipelines yield identical samples ran and passed. (The figures themselves are recorded in
benchmarks/README.md from a run on a `genba collect` dataset.)"""

from __future__ import annotations

import json

from foreign_dataset import CAMS, make_lerobot_dataset

from genba.cli import main


def test_bench_data_summary(tmp_path, capsys):
    data = make_lerobot_dataset(tmp_path / "ds")
    out = tmp_path / "bench.json"
    args = [
        "bench", "data", f"data={data}", f"out={out}", f"cache_dir={tmp_path / 'cache'}", "image_size=32",
        "future_frames=2", "action_horizon=4", "samples=24", "batch_size=8", "repeats=2", "workers=1",
        "check_samples=12",
    ]  # fmt: skip
    assert main(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    s = json.loads(out.read_text())
    for key in ("genba_samples_per_s", "lerobot_samples_per_s", "ratio", "peak_rss_mb"):
        assert s[key] > 0, key
    assert abs(s["ratio"] - s["genba_samples_per_s"] / s["lerobot_samples_per_s"]) < 0.02 * s["ratio"] + 0.01
    assert len(s["genba_samples_per_s_runs"]) == len(s["lerobot_samples_per_s_runs"]) == 2
    assert s["samples_identical"] is True and s["checked_samples"] == 12 and s["mismatches"] == {}
    assert s["clip"]["cameras"] == list(CAMS[:2]) and s["clip"]["image_size"] == 32  # two cameras, like the spec
    assert s["cache_built"] is True and s["cache_mb"] > 0


def test_bench_data_errors(tmp_path, capsys):
    assert main(["bench", "data"]) == 2
    assert "data= is required" in capsys.readouterr().err
    assert main(["bench", "data", f"data={tmp_path}", "workers=-1"]) == 2
    assert "workers=-1" in capsys.readouterr().err
