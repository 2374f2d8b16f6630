"""`genba collect` end to end: real MuJoCo episodes of the scripted expert, written through lerobot's writer, read back
with lerobot's LeRobotDataset and compared with what the env produced; workers=2 == workers=1; SIGKILL of a real
`python -m genba collect` and resume; one-line errors for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from genba import keys
from genba.cli import main
from genba.datasets.commit import read_episode_meta
from genba.datasets.simulate import simulate_episode
from genba.datasets.writer import repo_id_for

pytestmark = pytest.mark.xdist_group("datasets_collect")  # one xdist worker: the module fixture is built once

S = 64  # small images keep this fast (collect refuses < 32: libsvtav1 crashes below 25 pixels wide)
BASE = ["task=pick_place", "episodes=2", f"image_size={S}", "lang=en", "depth=true"]
ENV = {"image_size": S, "cameras": list(keys.CAMERAS), "depth": True, "lang": "en"}


def collect(out: Path, *overrides: str) -> dict:
    assert main(["collect", *BASE, f"out={out}", *overrides]) == 0
    return json.loads((out / "summary.json").read_text())


def load(root: Path, **kwargs):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(repo_id_for(root), root=root, **kwargs)


def columns(root: Path) -> dict[str, np.ndarray]:
    """Every non-video column of the dataset, as arrays."""
    hf = load(root).hf_dataset.with_format("numpy")
    return {k: np.stack(hf[k]) for k in hf.column_names}


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("collect") / "serial"
    return out, collect(out, "workers=1")


def test_summary_and_features(serial):
    out, summary = serial
    assert summary["episodes"] == 2 and summary["dataset"] == str(out)
    assert summary["expert_success_rate"] == 1.0
    assert summary["frames"] > 2 and summary["frames_per_s"] > 0 and summary["seconds"] > 0
    ds = load(out)
    assert ds.num_episodes == 2 and len(ds) == summary["frames"] and ds.fps == 10
    f = ds.features
    for cam in keys.CAMERAS:
        assert f[keys.image_key(cam)]["dtype"] == "video" and tuple(f[keys.image_key(cam)]["shape"]) == (S, S, 3)
        assert f[keys.depth_key(cam)]["info"]["is_depth_map"] is True
        assert tuple(f[keys.depth_key(cam)]["shape"]) == (S, S, 1)
    assert f[keys.OBS_STATE]["names"] == list(keys.JOINTS) and f[keys.ACTION]["names"] == list(keys.JOINTS)
    assert tuple(f[keys.OBS_ENV_STATE]["shape"]) == (35,)


def test_matches_what_the_env_produced(serial):
    """State, action, env state exact; instruction as task; video and depth frames close to the rendered ones."""
    out, _ = serial
    ds = load(out, depth_output_unit="m")
    start = 0
    for episode in range(2):
        meta = read_episode_meta(out, episode)
        ref = simulate_episode(
            {"task": "pick_place", "env": ENV, "noise": 0.0, "base_seed": 0, "attempt": meta["attempt"]}
        )
        frames = ref["frames"]
        assert meta["seed"] == ref["seed"] and meta["success"] is True and meta["length"] == ref["length"]
        assert meta["spec"]["instruction"] == ref["task"] == meta["task"]
        assert meta["physics"] == json.loads(json.dumps(ref["physics"]))
        for t in [0, ref["length"] // 2, ref["length"] - 1]:
            item = ds[start + t]
            assert item["task"] == ref["task"]
            for key in (keys.OBS_STATE, keys.ACTION, keys.OBS_ENV_STATE):
                np.testing.assert_array_equal(item[key].numpy(), frames[key][t])
            for cam in keys.CAMERAS:
                image = item[keys.image_key(cam)].numpy().transpose(1, 2, 0) * 255
                assert np.abs(image - frames[keys.image_key(cam)][t]).mean() < 12  # AV1 at crf 30
                depth, true = item[keys.depth_key(cam)].numpy()[0], frames[keys.depth_key(cam)][t, ..., 0]
                near = true < 10.0  # lerobot's default depth range is [0.01, 10] m; beyond is clipped
                assert np.abs(depth - true)[near].max() < 0.005
        start += ref["length"]


def test_workers_2_equals_workers_1(serial, tmp_path):
    out, _ = serial
    parallel = tmp_path / "parallel"
    collect(parallel, "workers=2")
    a, b = columns(out), columns(parallel)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    strip = lambda p: [{k: v for k, v in json.loads(x).items()} for x in p.read_text().splitlines()]  # noqa: E731
    assert strip(parallel / "meta/genba/episodes.jsonl") == strip(out / "meta/genba/episodes.jsonl")
    for cam in keys.CAMERAS:  # same frames through the same encoder
        da, db = load(out), load(parallel)
        for i in (0, len(da) - 1):
            assert np.array_equal(da[i][keys.image_key(cam)].numpy(), db[i][keys.image_key(cam)].numpy())


def test_japanese_instructions_and_camera_subset(tmp_path):
    out = tmp_path / "ja"
    assert main(["collect", "task=reach", "episodes=1", f"image_size={S}", "lang=ja", "cameras=[wrist]",
                 f"out={out}"]) == 0  # fmt: skip
    ds = load(out)
    assert [k for k in ds.features if k.startswith("observation.images")] == [keys.image_key(keys.WRIST)]
    task = ds[0]["task"]
    assert task == read_episode_meta(out, 0)["spec"]["instruction"]
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in task), task


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task=fly"], "unknown task 'fly' (valid: reach, push, pick_place, stack)"),
        (["episodes=0"], "episodes=0 must be an integer >= 1"),
        (["cameras=[top]"], "cameras=['top']: each must be one of front, wrist"),
        (["noise=-1"], "noise=-1"),
        (["lang=fr"], "lang='fr' is not one of en, ja, mixed"),
        (["image_size=24"], "image_size=24 must be an integer in [32, 1024]"),  # libsvtav1 would die of SIGFPE
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, overrides, message):
    assert main(["collect", f"out={tmp_path / 'x'}", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x").exists()


def test_out_that_cannot_be_created_is_one_line(capsys):
    """/proc refuses new folders even to root, for whom os.access says every path is writable."""
    assert main(["collect", "task=reach", "episodes=1", "cameras=[]", "out=/proc/genba-test/dataset"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write" in err and "/proc/genba-test" in err, err


def test_out_is_the_current_folder(tmp_path, monkeypatch, capsys):
    """The dataset folder is created elsewhere and renamed into place: never the folder the process stands in."""
    monkeypatch.chdir(tmp_path)
    assert main(["collect", "task=reach", "episodes=1", "cameras=[]", "out=."]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "out=. is the current folder" in err, err
    assert list(tmp_path.iterdir()) == []


def test_other_options_on_same_out_are_refused(serial, tmp_path, capsys):
    out, _ = serial
    before = (out / "meta/genba/commit.json").read_text()
    assert main(["collect", *BASE, f"out={out}", "image_size=32"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "image_size=64 (asked 32)" in err, err
    assert (out / "meta/genba/commit.json").read_text() == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    assert main(["collect", *BASE, f"out={mine}"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]


def _cli(out: Path, episodes: int, kill_at: str | None = None, workers: int = 1) -> subprocess.Popen:
    env = {**os.environ, "SVT_LOG": "1"}
    env.pop("GENBA_KILL_AT", None)
    if kill_at:
        env["GENBA_KILL_AT"] = kill_at
    if env.pop("PYTHONDONTWRITEBYTECODE", None):  # else each child recompiles torch from source (~20 s)
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "genba-test-pycache"))
    args = [*BASE, f"episodes={episodes}", "depth=false", f"out={out}", f"workers={workers}"]
    cmd = [sys.executable, "-m", "genba", "collect", *args]
    # into a log file beside `out`, not pipes: nobody reads them while the test waits for commits
    with open(out.parent / f"{out.name}.log", "a") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def _committed(out: Path) -> int:
    try:
        return json.loads((out / "meta/genba/commit.json").read_text())["episodes"]
    except (OSError, ValueError):
        return 0


def _when_committed(proc: subprocess.Popen, out: Path, n: int) -> None:
    while proc.poll() is None and _committed(out) < n:
        time.sleep(0.02)


def test_sigkill_ctrl_c_and_resume_cli(serial, tmp_path):
    """SIGKILL `python -m genba collect workers=2` at an arbitrary moment (no worker outlives it), Ctrl-C a rerun (the
    dataset is loadable right away), rerun to the end: the result equals an uninterrupted run, every frame decodes."""
    out = tmp_path / "killed"
    proc = _cli(out, 4, workers=2)
    _when_committed(proc, out, 1)  # then mid-simulation or mid-write of episode 1
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    deadline = time.time() + 15
    while _group_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _group_alive(proc.pid)
    assert _committed(out) >= 1

    proc = _cli(out, 4)
    _when_committed(proc, out, 2)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert proc.wait(timeout=120) in (130, 0)  # 0: it finished before the signal landed
    assert load(out).num_episodes == _committed(out) >= 2  # checkpointed on the way out: loadable as it is

    proc = _cli(out, 4)
    assert proc.wait(timeout=300) == 0, (tmp_path / "killed.log").read_text()[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 4
    ds = load(out)
    assert ds.num_episodes == 4 and len(ds) == summary["frames"]
    for i in range(len(ds)):  # every frame of every camera decodes
        assert ds[i][keys.image_key(keys.FRONT)].shape == (3, S, S)
        assert ds[i][keys.image_key(keys.WRIST)].shape == (3, S, S)
    got, ref = columns(out), columns(serial[0])  # the first two episodes equal the uninterrupted run's
    n = len(ref["index"])
    for key in (keys.OBS_STATE, keys.ACTION, keys.OBS_ENV_STATE, "episode_index", "frame_index"):
        np.testing.assert_array_equal(got[key][:n], ref[key], err_msg=key)
    assert [read_episode_meta(out, i)["seed"] for i in range(4)] == [0, 1, 2, 3]


def test_failed_attempts_skipped_or_kept(tmp_path):
    """noise=0.3 makes the reach expert fail often: keep_failed=false skips failures (still counted in the success
    rate), keep_failed=true keeps every attempt. Expectations come from the env itself, attempt by attempt."""
    job = {"task": "reach", "env": {"image_size": S, "cameras": [], "depth": False, "lang": "en"}, "noise": 0.3}
    outcomes = []
    while True not in outcomes or len(outcomes) < 2:
        outcomes.append(simulate_episode({**job, "base_seed": 0, "attempt": len(outcomes)})["success"])
    common = ["task=reach", "noise=0.3", "cameras=[]", "lang=en"]

    skipped = tmp_path / "skipped"
    assert main(["collect", *common, "episodes=1", f"out={skipped}"]) == 0
    summary = json.loads((skipped / "summary.json").read_text())
    first = outcomes.index(True)  # the attempt that gives the one episode asked for
    assert summary["attempts"] == first + 1 and summary["episodes"] == 1
    assert summary["expert_success_rate"] == round(1 / (first + 1), 4)
    assert read_episode_meta(skipped, 0)["seed"] == first
    assert load(skipped).num_episodes == 1

    kept = tmp_path / "kept"
    assert main(["collect", *common, "episodes=2", "keep_failed=true", f"out={kept}"]) == 0
    metas = [read_episode_meta(kept, i) for i in range(2)]
    assert [m["seed"] for m in metas] == [0, 1]
    assert [m["success"] for m in metas] == outcomes[:2]
    assert load(kept).num_episodes == 2
