"""`genba bench collect` on a tiny configuration: real collect runs (one writer, and local shards merged), the
per-frame costs with the decode cost of training, same-run ratios."""

from __future__ import annotations

import pytest

from genba.cli import main
from genba.datasets.bench_collect import BenchCollectConfig, run_bench_collect
from genba.datasets.shards import _KEPT


def test_bench_collect_tiny():
    cfg = BenchCollectConfig(task="reach", episodes=2, image_size=32, cameras=["front"], multisampling=[False],
                             points=["local:1", "local:1:2"], repeats=1)  # fmt: skip
    summary = run_bench_collect(cfg)
    rows = {r["point"]: r for r in summary["results"]}
    assert set(rows) == {"local:1", "local:1:2"}
    assert rows["local:1"]["ratio_to_local_1"] == 1.0 and rows["local:1:2"]["ratio_to_local_1"] > 0
    assert "merge_share" not in rows["local:1"] and rows["local:1:2"]["merge_seconds"] > 0  # two shards, merged
    assert all(r["frames_per_s"] > 0 and r["frames"] > 2 for r in rows.values())
    (costs,) = summary["costs"].values()
    assert costs["sim_render_ms"] > 0 and costs["write_ms"] > 0 and costs["frames"] == rows["local:1"]["frames"]
    assert costs["decode_in_order_ms"] > 0 and costs["decode_random_ms"] > 0
    assert not _KEPT  # the local shard processes kept for the runs are gone


def test_bench_collect_bad_points_and_help(capsys):
    for bad in ("dask:2", "local:0", "local:2:2:2", "ray"):
        with pytest.raises(ValueError, match="executor:workers"):
            BenchCollectConfig(points=[bad])
    assert main(["bench", "collect", "--help"]) == 0
    assert "points=[local:1,local:2,local:2:2,ray:2]" in capsys.readouterr().out
