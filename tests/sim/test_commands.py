"""`genba tasks` and `genba bench sim` through the CLI, in-process."""

import json

from genba.cli import main


def test_tasks_command(tmp_path, capsys):
    out = tmp_path / "tasks.json"
    assert main(["tasks", f"out={out}"]) == 0
    printed = capsys.readouterr().out.splitlines()
    summary = json.loads(out.read_text())
    names = [t["name"] for t in summary["tasks"]]
    assert names == ["reach", "push", "pick_place", "stack"]
    for t in summary["tasks"]:
        assert any(line.startswith(t["name"]) and t["description"] in line for line in printed)
        assert t["id"].startswith("genba/") and t["max_episode_steps"] > 0
        assert t["example_instruction_en"] and t["example_instruction_ja"] != t["example_instruction_en"]
    assert printed[-1] == str(out)


def test_bench_sim_command(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "sim", "task=reach", "steps=12", "repeats=1", "image_size=32", f"out={out}"]) == 0
    s = json.loads(out.read_text())
    for key in ("physics_steps_per_s", "render_steps_per_s", "raw_mj_steps_per_s", "physics_overhead"):
        assert s[key] > 0
    assert s["render_steps_per_s"] < s["physics_steps_per_s"]
    assert 0.5 < s["physics_overhead"] < 3
    assert s["device"]["cpu"] and s["substeps_per_env_step"] == 50


def test_bench_sim_bad_task(capsys):
    assert main(["bench", "sim", "task=juggle"]) == 2
    assert "valid: reach, push, pick_place, stack" in capsys.readouterr().err
