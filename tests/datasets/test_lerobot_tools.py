"""genba datasets in LeRobot's own tools (lerobot 0.6.1), run as users run them: `lerobot-edit-dataset` (info, merge,
delete_episodes, modify_tasks) and `lerobot-dataset-viz --save 1` as subprocesses, LeRobot's own checks (loading,
video timestamps, `validate_frame`, `validate_all_metadata`) in process. And what genba's readers make of
meta/genba/ after such an edit: lerobot's tools do not know it, so once it no longer describes lerobot's files it is
ignored with a warning rather than trusted.

lerobot 0.6.1 has no stand-alone dataset validator: LeRobot validates a dataset when it loads it (codebase version,
metadata), decodes it (every video frame within `tolerance_s` of its timestamp), records a frame into it
(`validate_frame`) and merges it with others (`validate_all_metadata`). `lerobot-info` reports the system, not a
dataset; the dataset summary is `lerobot-edit-dataset --operation.type info`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genba import keys
from genba.cli import main
from genba.datasets.commit import GENBA_META_DIR, read_all_episode_meta, read_commit, read_episode_meta
from genba.datasets.writer import repo_id_for

pytestmark = pytest.mark.xdist_group("datasets_lerobot_tools")  # one xdist worker: the fixture is built once

S = 64
# Two datasets that differ only in the instruction language, so that LeRobot merges them; depth too, since
# lerobot's tools handle depth videos (merge copies them, delete re-encodes them losslessly).
BASE = ["task=reach", "episodes=2", f"image_size={S}", "depth=true"]
CLI_TIMEOUT_S = 300


def lerobot_cli(name: str, *args: str, cwd: Path | None = None) -> str:
    """Run one of lerobot's console scripts (the venv's, beside this Python); its output, or a failed test."""
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert exe is not None, f"{name} is not installed beside {sys.executable}"
    env = dict(os.environ, HF_HUB_OFFLINE="1", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    done = subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=CLI_TIMEOUT_S, cwd=cwd, env=env, check=False
    )
    out = done.stdout + done.stderr
    # lerobot 0.6.1's tools now and then abort at interpreter exit, after their work is written, on a C++ thread still
    # running (seen once in CI on delete_episodes: "Dataset saved", then SIGABRT). Accepted only in exactly that form;
    # every caller then checks what the tool wrote.
    aborted_at_exit = done.returncode == -signal.SIGABRT and "terminate called without an active exception" in out
    assert done.returncode == 0 or aborted_at_exit, f"{name} {' '.join(args)} exited {done.returncode}:\n{out[-3000:]}"
    return out


def load(root: Path, **kwargs):
    from lerobot.datasets import LeRobotDataset

    return LeRobotDataset(repo_id_for(root), root=root, **kwargs)


def episode_rows(ds, episode: int) -> list[dict]:
    """Every decoded frame of one episode (LeRobot checks each video frame's timestamp while decoding)."""
    start = int(ds.meta.episodes["dataset_from_index"][episode])
    stop = int(ds.meta.episodes["dataset_to_index"][episode])
    return [ds[i] for i in range(start, stop)]


def append_with_lerobot(root: Path) -> None:
    """Episode 0 again, as a new episode written by LeRobot's own writer (what lerobot-record --resume does)."""
    from lerobot.datasets import LeRobotDataset
    from lerobot.utils.constants import DEFAULT_FEATURES

    source = episode_rows(load(root), 0)
    ds = LeRobotDataset.resume(repo_id_for(root), root=root)
    for row in source:
        ds.add_frame(
            {
                k: (v.numpy().transpose(1, 2, 0) if k in ds.meta.camera_keys else v.numpy())
                for k, v in row.items()
                if k in ds.features and k not in DEFAULT_FEATURES
            }
            | {keys.TASK: "an episode genba did not record"}
        )
    ds.save_episode()
    ds.finalize()


def stacked(rows: list[dict], key: str) -> np.ndarray:
    return np.stack([row[key].numpy() for row in rows])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Two genba reach datasets (2 episodes each, 64x64, front+wrist RGB and depth), English and Japanese, and
    their merge by `lerobot-edit-dataset`; HF_LEROBOT_HOME points into the test's folder so nothing lands in ~."""
    root = tmp_path_factory.mktemp("lerobot-tools")
    os.environ["HF_LEROBOT_HOME"] = str(root / "hf_lerobot_home")
    for lang in ("en", "ja"):
        assert main(["collect", *BASE, f"lang={lang}", f"out={root / lang}"]) == 0
    lerobot_cli(
        "lerobot-edit-dataset",
        "--new_repo_id=genba/merged",
        f"--new_root={root / 'merged'}",
        "--operation.type=merge",
        "--operation.repo_ids=['genba/en', 'genba/ja']",
        f"--operation.roots=['{root / 'en'}', '{root / 'ja'}']",
    )
    return {"root": root, "en": root / "en", "ja": root / "ja", "merged": root / "merged"}


def test_lerobot_validates_genba_datasets(data):
    from lerobot.datasets.aggregate import validate_all_metadata
    from lerobot.datasets.feature_utils import validate_frame
    from lerobot.utils.constants import DEFAULT_FEATURES

    metas = []
    for lang in ("en", "ja"):
        ds = load(data[lang])
        commit = read_commit(data[lang])
        assert (ds.num_episodes, ds.num_frames) == (commit["episodes"], commit["frames"]) == (2, len(ds))
        assert set(ds.meta.depth_keys) == {keys.depth_key(c) for c in keys.CAMERAS}
        for i in range(len(ds)):  # decoding checks each video frame against its timestamp (tolerance_s)
            item = ds[i]
            # the frame as a recorder would hand it to LeRobot: images (H, W, C), no automatic features
            frame = {
                k: (v.numpy().transpose(1, 2, 0) if k in ds.meta.camera_keys else v.numpy())
                for k, v in item.items()
                if k in ds.features and k not in DEFAULT_FEATURES
            }
            validate_frame(frame | {keys.TASK: item[keys.TASK]}, ds.features)
        metas.append(ds.meta)
    validate_all_metadata(metas)  # what merge requires: same fps, robot type and features


def test_edit_dataset_info(data):
    out = lerobot_cli(
        "lerobot-edit-dataset",
        "--repo_id=genba/ja",
        f"--root={data['ja']}",
        "--operation.type=info",
        "--operation.show_features=true",
    )
    commit = read_commit(data["ja"])
    assert f"Total episode: {commit['episodes']}" in out
    assert f"Total frame(Actual Count): {commit['frames']}({commit['frames']})" in out
    features = json.loads(out[out.index("Features:\n") + len("Features:\n") :].split("\n}\n")[0] + "\n}")
    assert features[keys.depth_key("front")]["info"]["is_depth_map"] is True
    assert features[keys.OBS_STATE]["names"] == list(keys.JOINTS)


def test_merge_of_two_genba_datasets(data):
    merged = load(data["merged"])
    sources = [load(data["en"]), load(data["ja"])]
    assert merged.num_episodes == sum(s.num_episodes for s in sources) == 4
    assert merged.num_frames == sum(s.num_frames for s in sources) == len(merged)
    en, ja = ([list(s.meta.episodes["tasks"][i]) for i in range(s.num_episodes)] for s in sources)
    assert [list(t) for t in merged.meta.episodes["tasks"]] == en + ja  # both instructions, in order
    assert set(merged.meta.tasks.index) == {t for ts in en + ja for t in ts}
    # the Japanese dataset's last episode, now the merge's last: same state, same depth (copied, not re-encoded)
    got, want = episode_rows(merged, 3), episode_rows(sources[1], 1)
    assert [r[keys.TASK] for r in got] == [r[keys.TASK] for r in want]
    for key in (keys.OBS_STATE, keys.ACTION, keys.depth_key("front"), keys.image_key("wrist")):
        np.testing.assert_array_equal(stacked(got, key), stacked(want, key), err_msg=key)
    # LeRobot leaves meta/genba behind: the merge is a plain LeRobotDataset to genba, no stale metadata
    assert not (data["merged"] / GENBA_META_DIR).exists()
    assert read_all_episode_meta(data["merged"]) is None


def test_delete_an_episode(data, tmp_path):
    out = tmp_path / "deleted"
    lerobot_cli(
        "lerobot-edit-dataset",
        "--repo_id=genba/merged",
        f"--root={data['merged']}",
        "--new_repo_id=genba/deleted",
        f"--new_root={out}",
        "--operation.type=delete_episodes",
        "--operation.episode_indices=[1]",
    )
    merged, deleted = load(data["merged"]), load(out)
    lengths = [int(n) for n in merged.meta.episodes["length"]]
    assert deleted.num_episodes == merged.num_episodes - 1
    assert deleted.num_frames == len(deleted) == merged.num_frames - lengths[1]
    tasks = [list(t) for t in merged.meta.episodes["tasks"]]
    assert [list(t) for t in deleted.meta.episodes["tasks"]] == tasks[:1] + tasks[2:]
    # episode 2 is episode 1 now; LeRobot re-encodes the videos it cuts: depth losslessly, RGB (AV1) not
    got, want = episode_rows(deleted, 1), episode_rows(merged, 2)
    for key in (keys.OBS_STATE, keys.depth_key("wrist")):
        np.testing.assert_array_equal(stacked(got, key), stacked(want, key), err_msg=key)
    rgb = keys.image_key("front")
    assert np.abs(stacked(got, rgb) - stacked(want, rgb)).mean() < 0.05
    assert read_all_episode_meta(out) is None


def test_delete_in_place_leaves_genba_metadata_with_the_backup(data, tmp_path):
    root = tmp_path / "en"
    shutil.copytree(data["en"], root)
    lerobot_cli(
        "lerobot-edit-dataset",
        "--repo_id=genba/en",
        f"--root={root}",
        f"--new_root={root}",
        "--operation.type=delete_episodes",
        "--operation.episode_indices=[0]",
    )
    assert load(root).num_episodes == 1
    assert read_episode_meta(root, 0) is None  # no meta/genba any more: a plain LeRobotDataset
    backup = tmp_path / "en_old"  # LeRobot's backup of the original, meta/genba and all: still consistent
    assert [r["seed"] for r in read_all_episode_meta(backup)] == [0, 1]


def test_dataset_viz_writes_an_rrd_rerun_reads(data, tmp_path):
    from genba.viz.readback import read_rrd, verify_rrd

    lerobot_cli(
        "lerobot-dataset-viz",
        "--repo-id=genba/ja",
        f"--root={data['ja']}",
        "--episode-index=1",
        "--save=1",
        f"--output-dir={tmp_path}",
        "--num-workers=0",  # no DataLoader worker processes for 64x64 frames
    )
    rrd = tmp_path / "genba_ja_episode_1.rrd"
    verify_rrd(rrd)
    contents = read_rrd(rrd)
    length = int(load(data["ja"]).meta.episodes["length"][1])
    for cam in keys.CAMERAS:
        assert contents.series(keys.image_key(cam), "Image:buffer")[0] == list(range(length)), cam
        assert contents.series(keys.depth_key(cam), "DepthImage:buffer")[0] == list(range(length)), cam
    frames, states = contents.series("state", "Scalars:scalars")
    assert frames == list(range(length))
    want = stacked(episode_rows(load(data["ja"]), 1), keys.OBS_STATE)
    np.testing.assert_allclose(np.array(states, dtype=np.float32), want, rtol=1e-6)


def test_lerobot_info_lists_the_tools():
    out = lerobot_cli("lerobot-info")
    assert "lerobot-edit-dataset" in out and "lerobot-dataset-viz" in out


# --- genba's metadata after edits by lerobot's tools ---


def test_metadata_ignored_after_modify_tasks(data, tmp_path, capsys):
    """modify_tasks edits in place and keeps meta/genba: same counts, other instructions. Detected per episode."""
    root = tmp_path / "ja"
    shutil.copytree(data["ja"], root)
    assert len(read_all_episode_meta(root)) == 2
    assert capsys.readouterr().err == ""
    lerobot_cli(
        "lerobot-edit-dataset",
        "--repo_id=genba/ja",
        f"--root={root}",
        "--operation.type=modify_tasks",
        "--operation.episode_tasks={'1': 'touch the ball'}",
    )
    assert read_all_episode_meta(root) is None
    assert read_episode_meta(root, 1) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("genba: warning: ignoring genba's") for line in err)
    assert "episode 1 is" in err[0] and "touch the ball" in err[0] and "edited by another tool" in err[0]


def test_metadata_ignored_after_lerobot_appends_an_episode(data, tmp_path, capsys):
    """LeRobot's own writer (what lerobot-record --resume does) adds an episode genba never recorded."""
    root = tmp_path / "en"
    shutil.copytree(data["en"], root)
    append_with_lerobot(root)
    assert load(root).num_episodes == 3
    assert read_episode_meta(root, 0) is None
    err = capsys.readouterr().err
    assert "counts 3 episodes" in err and "genba recorded 2 episodes" in err


def test_metadata_copied_into_an_edited_dataset_is_ignored(data, tmp_path, capsys):
    """meta/genba carried over by hand into LeRobot's merge: the counts give it away."""
    root = tmp_path / "merged"
    shutil.copytree(data["merged"], root)
    shutil.copytree(data["en"] / GENBA_META_DIR, root / GENBA_META_DIR)
    assert read_all_episode_meta(root) is None
    assert "counts 4 episodes" in capsys.readouterr().err


def test_copies_keep_valid_metadata(data, tmp_path, capsys):
    """recompute_stats and reencode_videos copy the whole folder (meta/genba too): the episodes are the same, so
    genba's metadata stays true and is read without a warning."""
    from lerobot.datasets import recompute_stats

    root = tmp_path / "en"
    shutil.copytree(data["en"], root)  # what lerobot-edit-dataset does before recompute_stats
    recompute_stats(load(root))
    capsys.readouterr()  # lerobot's progress bars
    records = read_all_episode_meta(root)
    assert [r["seed"] for r in records] == [0, 1]
    assert records[1] == read_episode_meta(data["en"], 1)
    assert capsys.readouterr().err == ""


def test_metadata_read_while_genba_writes(tmp_path, capsys):
    """Between checkpoints lerobot's files lag genba's record (episodes in the open segment are not finalized):
    that is genba's own write in progress, not an edit, and the committed records are read."""
    from genba.datasets.writer import open_writer

    features = {k: {"dtype": "float32", "shape": (6,), "names": list(keys.JOINTS)} for k in (keys.OBS_STATE, "action")}
    writer = open_writer(tmp_path / "ds", 10, features, {"task": "synthetic"}, checkpoint_every=2)
    try:
        for i, length in enumerate((4, 6, 5)):  # episodes 0-1 checkpointed, episode 2 in the open segment
            frames = {k: np.full((length, 6), i, np.float32) for k in features}
            writer.write_episode(frames, f"task {i}", {"seed": i, "task": f"task {i}"})
            records = read_all_episode_meta(tmp_path / "ds")
            assert [r["seed"] for r in records] == list(range(i + 1))
    finally:
        writer.close()
    assert [r["length"] for r in read_all_episode_meta(tmp_path / "ds")] == [4, 6, 5]
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("edit", ["modify_tasks", "append"])
def test_collect_refuses_to_resume_a_dataset_another_tool_changed(data, tmp_path, capsys, edit):
    """Resuming would roll lerobot's edit back (modify_tasks) or overwrite what it added (an appended episode)."""
    root = tmp_path / "en"
    shutil.copytree(data["en"], root)
    if edit == "modify_tasks":
        lerobot_cli("lerobot-edit-dataset", "--repo_id=genba/en", f"--root={root}", "--operation.type=modify_tasks",
                    "--operation.episode_tasks={'0': 'touch the ball'}")  # fmt: skip
    else:
        append_with_lerobot(root)
    before = {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    argv = ["collect", *(a for a in BASE if not a.startswith("episodes=")), "episodes=4", "lang=en", f"out={root}"]
    capsys.readouterr()  # what the edit itself printed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "was changed by another tool" in err and err.count("\n") == 1, err
    assert before == {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
