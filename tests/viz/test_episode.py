"""`genba viz` on a LeRobotDataset genba did not write, read back with rerun's own reader."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FPS, JOINTS7, LENGTHS, TASKS, ForeignDataset

from genba.cli import main
from genba.viz.log import entity
from genba.viz.readback import RrdContents, blueprint_views, read_rrd, verify_rrd


@pytest.fixture(scope="module")
def rrd_episode1(foreign_dataset: ForeignDataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("viz") / "ep1.rrd"
    assert main(["viz", f"data={foreign_dataset.root}", "episode=1", f"out={out}"]) == 0
    summary = json.loads(Path(str(out) + ".json").read_text())
    return out, summary


def _decode_jpeg(blob: list[int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(bytes(blob))).convert("RGB"))


def test_summary_describes_the_episode(rrd_episode1: tuple[Path, dict]) -> None:
    out, summary = rrd_episode1
    assert summary["rrd"] == str(out) and out.stat().st_size == summary["bytes"] > 0
    assert summary["episode"] == 1 and summary["frames"] == LENGTHS[1] and summary["fps"] == FPS
    assert sorted(summary["cameras"]) == ["side", "top"]
    assert summary["state_names"] == JOINTS7 and summary["action_names"] == JOINTS7
    assert summary["instruction"] == TASKS[1]
    assert summary["success"] is True  # from next.success: no genba metadata in a foreign dataset
    assert summary["scene"] is False and summary["points"] == 0
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    assert "verified without error" in verify_rrd(out)


def test_every_camera_has_one_jpeg_per_frame_close_to_the_recording(
    rrd_episode1: tuple[Path, dict], foreign_dataset: ForeignDataset
) -> None:
    rrd = read_rrd(rrd_episode1[0])
    n = LENGTHS[1]
    for camera, written, tolerance in (("top", foreign_dataset.top[1], 12.0), ("side", foreign_dataset.side[1], 4.0)):
        frames, blobs = rrd.series(entity("cameras", camera), "EncodedImage:blob")
        assert frames == list(range(n)), camera
        _, media = rrd.series(entity("cameras", camera), "EncodedImage:media_type")
        assert {m[0] for m in media} == {"image/jpeg"}
        decoded = np.stack([_decode_jpeg(b[0]) for b in blobs])
        assert decoded.shape == written.shape
        # top went through AV1 video and JPEG, side (PNG-stored) only through JPEG; a wrong frame or a channel
        # swap is off by far more than this
        error = np.abs(decoded.astype(float) - written.astype(float)).mean(axis=(1, 2, 3))
        assert error.max() < tolerance, (camera, error)
        wrong_order = np.abs(decoded[::-1].astype(float) - written.astype(float)).mean()
        assert wrong_order > error.mean()


def test_state_and_action_per_joint_equal_the_dataset(
    rrd_episode1: tuple[Path, dict], foreign_dataset: ForeignDataset
) -> None:
    rrd = read_rrd(rrd_episode1[0])
    n = LENGTHS[1]
    for prefix, written in (("state", foreign_dataset.state[1]), ("action", foreign_dataset.action[1])):
        for j, name in enumerate(JOINTS7):
            path = entity(prefix, name)
            frames, values = rrd.series(path, "Scalars:scalars")
            assert frames == list(range(n)), path
            np.testing.assert_array_equal(np.array([v[0] for v in values], np.float32), written[:, j])
            assert rrd.static(path, "SeriesLines:names") == [f"{name} ({prefix})"]


def test_timelines_instruction_and_success(rrd_episode1: tuple[Path, dict], foreign_dataset: ForeignDataset) -> None:
    rrd: RrdContents = read_rrd(rrd_episode1[0])
    n = LENGTHS[1]
    np.testing.assert_allclose(rrd.times(entity("state", JOINTS7[0])), np.arange(n) / FPS, atol=1e-6)
    np.testing.assert_allclose(rrd.times(entity("cameras", "top")), np.arange(n) / FPS, atol=1e-6)
    frames, texts = rrd.series("instruction", "TextDocument:text")
    assert frames == [0] and texts == [[TASKS[1]]]
    frames, values = rrd.series("success", "Scalars:scalars")
    assert frames == list(range(n))
    np.testing.assert_array_equal([v[0] for v in values], foreign_dataset.success[1].astype(float))
    panel = rrd.static("episode", "TextDocument:text")[0]
    assert TASKS[1] in panel and "success" in panel and f"{n} at {FPS}" in panel


def test_default_blueprint_shows_cameras_and_a_plot_per_joint(rrd_episode1: tuple[Path, dict]) -> None:
    views = {(v["kind"], v["name"]): v["origin"] for v in blueprint_views(rrd_episode1[0])}
    assert views[("2D", "top")] == "cameras/top" and views[("2D", "side")] == "cameras/side"
    assert {name for kind, name in views if kind == "TimeSeries"} == {*JOINTS7, "success / reward"}
    assert views[("TextDocument", "instruction")] == "instruction"
    assert not [v for v in views if v[0] == "3D"]  # no genba scene in a foreign dataset


def test_other_episode_and_raw_images_are_exact(foreign_dataset: ForeignDataset, tmp_path: Path) -> None:
    """images=raw logs lerobot's decoded pixels unchanged: the PNG-stored camera is bit-exact."""
    out = tmp_path / "sub" / "ep0.rrd"
    assert main(["viz", f"data={foreign_dataset.root}", "episode=0", f"out={out}", "images=raw"]) == 0
    rrd = read_rrd(out)
    frames, buffers = rrd.series(entity("cameras", "side"), "Image:buffer")
    assert frames == list(range(LENGTHS[0]))
    pixels = np.stack([np.asarray(b[0], np.uint8).reshape(20, 20, 3) for b in buffers])
    np.testing.assert_array_equal(pixels, foreign_dataset.side[0])
    assert rrd.series("instruction", "TextDocument:text")[1] == [[TASKS[0]]]
    _, values = rrd.series(entity("state", "wrist/rotate"), "Scalars:scalars")
    np.testing.assert_array_equal(np.array([v[0] for v in values], np.float32), foreign_dataset.state[0][:, 5])


def _decode_h264(samples: list[bytes]) -> np.ndarray:
    import av

    codec = av.CodecContext.create("h264", "r")
    frames = []
    for sample in [*samples, b""]:  # b"": the parser hands over the last access unit it holds
        for packet in codec.parse(sample):
            frames += [f.to_ndarray(format="rgb24") for f in codec.decode(packet)]
    frames += [f.to_ndarray(format="rgb24") for f in codec.decode(None)]  # drain the decoder
    return np.stack(frames)


def test_h264_video_stream_has_one_sample_per_frame_and_decodes_to_the_recording(
    foreign_dataset: ForeignDataset, tmp_path: Path
) -> None:
    out = tmp_path / "h264.rrd"
    assert main(["viz", f"data={foreign_dataset.root}", "episode=1", f"out={out}", "images=h264", "crf=10"]) == 0
    rrd = read_rrd(out)
    n = LENGTHS[1]
    for camera, written in (("top", foreign_dataset.top[1]), ("side", foreign_dataset.side[1])):
        path = entity("cameras", camera)
        assert rrd.static(path, "VideoStream:codec") == [0x61766331]  # 'avc1': H.264
        frames, samples = rrd.series(path, "VideoStream:sample")
        assert frames == list(range(n))
        assert "EncodedImage:blob" not in str(rrd.rows[path][0][2])  # video instead of, not besides, JPEGs
        decoded = _decode_h264([bytes(s[0]) for s in samples])
        assert decoded.shape == written.shape
        error = np.abs(decoded.astype(float) - written.astype(float)).mean(axis=(1, 2, 3))
        assert error.max() < 12.0, (camera, error)
    assert "verified without error" in verify_rrd(out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data={missing}"], "dataset directory not found"),
        (["data={empty}"], "not a LeRobotDataset v3 directory"),
        (["data={old}"], "is a LeRobotDataset v2.1, not v3.x"),
        (["data={incomplete}"], "incomplete LeRobotDataset v3 (missing meta/tasks.parquet)"),
        (["data={no_episodes}"], "{no_episodes} holds no episodes"),
        (["data={root}", "episode=2"], "out of range: {root} has 2 episodes (valid: 0..1)"),
        (["data={root}", "episode=-1"], "episode=-1 must be >= 0"),
        (["data={root}", "out={blocker}/ep.rrd"], "cannot write"),
        (["data={root}", "out=/proc/genba-test/ep.rrd"], "cannot write"),  # even root cannot create it
        (["data={root}", "out={tmp}"], "must be a .rrd file path"),
        (["data={root}", "images=png"], "images='png' is not valid (valid: jpeg, h264, raw)"),
        (["data={root}", "crf=60"], "crf=60 must be in 0..51"),
        (["data=", "out={tmp}/x.rrd"], "data= is required"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    foreign_dataset: ForeignDataset,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "blocker").write_text("a file where a directory is expected")
    (tmp_path / "old" / "meta").mkdir(parents=True)
    (tmp_path / "old" / "meta" / "info.json").write_text('{"codebase_version": "v2.1", "fps": 30}')
    (tmp_path / "incomplete" / "meta" / "episodes").mkdir(parents=True)
    (tmp_path / "incomplete" / "meta" / "info.json").write_text('{"codebase_version": "v3.0", "total_episodes": 1}')
    (tmp_path / "no_episodes" / "meta").mkdir(parents=True)  # what lerobot's create() leaves before save_episode
    (tmp_path / "no_episodes" / "meta" / "info.json").write_text('{"codebase_version": "v3.0", "total_episodes": 0}')
    names = {
        "missing": tmp_path / "nope",
        "empty": tmp_path / "empty",
        "old": tmp_path / "old",
        "incomplete": tmp_path / "incomplete",
        "no_episodes": tmp_path / "no_episodes",
        "root": foreign_dataset.root,
        "blocker": tmp_path / "blocker",
        "tmp": tmp_path,
    }
    argv = [a.format(**names) for a in args]
    if not any(a.startswith("out=") for a in argv):
        argv.append(f"out={tmp_path}/ep.rrd")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["viz", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.format(**names) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("out", ["", "viewer"])
def test_live_viewer_without_a_display_fails_fast_in_one_line(
    foreign_dataset: ForeignDataset,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    out: str,
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)  # the live viewer's summary would go to ./outputs
    assert main(["viz", f"data={foreign_dataset.root}", f"out={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no display for the live Rerun viewer" in err and "out=" in err
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("data", ["{tmp}/nope", ""])
def test_bad_data_is_reported_before_the_missing_display(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, data: str
) -> None:
    """`genba viz data=/tmp/nope` (no out=): the input is the mistake to name, not the absent viewer."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["viz", f"data={data.format(tmp=tmp_path)}"]) == 2
    err = capsys.readouterr().err.strip()
    expected = "dataset directory not found" if data else "data= is required"
    assert len(err.splitlines()) == 1 and expected in err and "display" not in err, err
    assert not (tmp_path / "outputs").exists()
