"""`genba viz`: one episode of any LeRobotDataset v3 in Rerun, as a .rrd file or in the live viewer.

Every camera stream, state and action per joint (named from the dataset's feature `names`), the instruction (and,
when `genba collect audio=true` spoke it, its audio, played by Rerun's audio view) and the outcome, on the timelines
`frame_index` and `time`. For genba's own sim episodes (those with genba metadata) also the arm and objects in 3D
and, when depth was recorded, coloured point clouds. Entity layout: genba.viz.log.

Images are logged JPEG-compressed by default: a 128x128 frame is ~5 KB instead of 48 KB raw, every frame stays
independently decodable (scrubbing, and readers of the .rrd, need no video decoder), and the frames were already
lossy-encoded video in the dataset. `images=raw` logs the decoded pixels exactly; `images=h264` logs an H.264
video stream, 3-10x smaller again (measured in the VIZ report), which Rerun's native viewer decodes through FFmpeg
(it must be on PATH) and the web viewer through the browser.

This module imports only the standard library at top level: the CLI imports it to print --help.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genba.errors import GenbaError
from genba.io import atomic_path, check_writable, one_line

if TYPE_CHECKING:
    from genba.viz.data import Episode

VIEWER = "viewer"
WRITE_A_FILE = "write a file instead, out=episode.rrd, and open it with `rerun episode.rrd` where there is a screen"
IMAGE_MODES = ("jpeg", "h264", "raw")


@dataclass
class VizConfig:
    data: str = field(default="", metadata={"help": "LeRobotDataset v3 directory (genba's or any lerobot log)"})
    episode: int = field(default=0, metadata={"help": "episode index in the dataset (0-based)"})
    out: str = field(
        default="",
        metadata={"help": "output .rrd file; empty or 'viewer' streams to a spawned live Rerun viewer instead"},
    )
    images: str = field(default="jpeg", metadata={"help": f"how camera frames are logged: {'|'.join(IMAGE_MODES)}"})
    jpeg_quality: int = field(default=90, metadata={"help": "JPEG quality 1..100 when images=jpeg"})
    crf: int = field(default=23, metadata={"help": "H.264 constant rate factor 0..51 when images=h264 (lower: better)"})
    scene: bool = field(default=True, metadata={"help": "genba sim episodes: the arm and objects in 3D"})
    pointcloud: bool = field(default=True, metadata={"help": "genba sim episodes with depth: point clouds (open3d)"})
    pointcloud_every: int = field(default=1, metadata={"help": "a point cloud every N frames"})
    voxel: float = field(default=0.004, metadata={"help": "point cloud voxel size in metres (0: every pixel)"})
    max_depth: float = field(default=2.0, metadata={"help": "drop depth beyond this many metres (background)"})

    def __post_init__(self) -> None:
        if self.episode < 0:
            raise ValueError(f"episode={self.episode} must be >= 0")
        if self.out and self.out != VIEWER and not self.out.endswith(".rrd"):
            raise ValueError(f"out={self.out!r} must be a .rrd file path, or empty / '{VIEWER}' for the live viewer")
        if self.images not in IMAGE_MODES:
            raise ValueError(f"images={self.images!r} is not valid (valid: {', '.join(IMAGE_MODES)})")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality={self.jpeg_quality} must be in 1..100")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf={self.crf} must be in 0..51")
        if self.pointcloud_every < 1:
            raise ValueError(f"pointcloud_every={self.pointcloud_every} must be >= 1")
        if self.voxel < 0:
            raise ValueError(f"voxel={self.voxel} must be >= 0 (0 keeps every pixel)")
        if self.max_depth <= 0:
            raise ValueError(f"max_depth={self.max_depth} must be > 0")

    @property
    def live(self) -> bool:
        return self.out in ("", VIEWER)

    def summary_path(self) -> str:
        """Beside the .rrd (episode.rrd.json); for the live viewer under outputs/ (there is no file to sit beside)."""
        if self.live:
            return str(Path("outputs") / f"viz-{time.strftime('%Y%m%d-%H%M%S')}.json")
        return self.out + ".json"


def run_viz(cfg: VizConfig) -> dict:
    """Log cfg.episode of cfg.data to Rerun; returns the JSON summary."""
    started = time.perf_counter()
    from genba.viz.data import check_dataset_dir, read_episode

    # the input first (a typo in data= or episode= is the likelier mistake), then the output, then the slow decoding
    check_dataset_dir(cfg.data, cfg.episode)
    out = None if cfg.live else Path(cfg.out).expanduser()
    if out is not None:
        check_writable(out, "out")
    else:
        viewer_executable()  # fail before the (slow) decoding when there is no viewer to show it in
    ep = read_episode(cfg.data, cfg.episode)
    decode_seconds = time.perf_counter() - started
    summary = write_recording(ep, out, cfg)
    seconds = time.perf_counter() - started
    summary["decode_seconds"] = round(decode_seconds, 3)
    summary["seconds"] = round(seconds, 3)
    summary["frames_per_s"] = round(ep.num_frames / seconds, 1) if seconds > 0 else None
    return summary


def write_recording(ep: Episode, out: Path | None, cfg: VizConfig | None = None) -> dict:
    """Log an Episode (from a dataset or straight from env steps) to `out` (.rrd) or the live viewer (None).

    Returns the summary: what was logged (frames, cameras, joints, instruction, outcome, 3D parts, file size).
    """
    import contextlib
    import uuid

    import rerun as rr

    from genba.viz.log import blueprint, log_episode

    cfg = cfg or VizConfig()
    replayer, scene_error = _replayer(ep) if (cfg.scene or cfg.pointcloud) else (None, None)
    with_scene = replayer is not None and cfg.scene
    with_points = replayer is not None and cfg.pointcloud and bool(ep.depth)
    layout = blueprint(ep, scene=with_scene or with_points)
    if out is not None:
        try:  # what check_writable cannot foresee (root on /proc, a read-only mount), before rerun buffers anything
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GenbaError(f"cannot write {out}: {one_line(e)}") from None
    rec = rr.RecordingStream("genba", recording_id=uuid.uuid4(), send_properties=True)
    # written beside the target and renamed at the end: an interrupted run never leaves half a .rrd behind
    with atomic_path(out) if out is not None else contextlib.nullcontext() as tmp:
        try:
            rec.send_recording_name(f"{Path(ep.source).name or 'episode'} #{ep.index}")
            if tmp is None:
                try:
                    rr.spawn(recording=rec, executable_path=viewer_executable(), default_blueprint=layout)
                except Exception as e:  # the viewer process failed to come up (port taken, ...)
                    raise GenbaError(f"cannot start the Rerun viewer ({one_line(e)}); {WRITE_A_FILE}") from None
            else:
                try:
                    tmp.touch()
                except OSError as e:
                    raise GenbaError(f"cannot write {out}: {one_line(e)}") from None
                rec.save(tmp, default_blueprint=layout)
            log_episode(rec, ep, images=cfg.images, jpeg_quality=cfg.jpeg_quality, crf=cfg.crf)
            scene = {"geoms": 0, "bodies": 0, "moving": 0}
            if with_scene:
                from genba.viz.scene import log_scene

                scene = log_scene(rec, ep, replayer)
            points = 0
            if with_points:
                from genba.viz.pointcloud import log_pointclouds

                points = log_pointclouds(
                    rec, ep, replayer, every=cfg.pointcloud_every, max_depth=cfg.max_depth, voxel=cfg.voxel
                )
            try:
                rec.flush()
            except RuntimeError as e:  # a spawned viewer that died (no GPU/display) never takes the data
                raise GenbaError(f"the Rerun viewer did not take the data ({one_line(e)}); {WRITE_A_FILE}") from None
        finally:
            rec.disconnect()  # closes the file sink: before the rename, or before the partial file is dropped
    return {
        "rrd": str(out) if out is not None else VIEWER,
        "dataset": ep.source,
        "episode": ep.index,
        "frames": ep.num_frames,
        "fps": ep.fps,
        "cameras": list(ep.images),
        "depth_cameras": list(ep.depth),
        "state_names": ep.state_names,
        "action_names": ep.action_names,
        "instruction": ep.tasks[0] if ep.tasks else "",
        "success": ep.episode_success,
        "scene": with_scene,
        "scene_error": scene_error,
        "scene_geoms": scene["geoms"],
        "scene_bodies": scene["bodies"],
        "scene_moving_bodies": scene["moving"],
        "points": points,
        "audio_seconds": round(len(ep.audio) / ep.audio_rate, 3) if ep.audio is not None else None,
        "bytes": out.stat().st_size if out is not None else None,
    }


def viewer_executable() -> str:
    """The `rerun` viewer: on PATH, or beside this Python (a venv used without being activated)."""
    import shutil

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise GenbaError(f"no display for the live Rerun viewer (DISPLAY and WAYLAND_DISPLAY unset); {WRITE_A_FILE}")
    found = shutil.which("rerun") or shutil.which("rerun", path=str(Path(sys.executable).parent))
    if not found:
        raise GenbaError(f"no Rerun viewer (`rerun`) on PATH (it comes with rerun-sdk); {WRITE_A_FILE}")
    return found


def _replayer(ep: Episode) -> tuple[Any, str | None]:
    """(Replayer of the episode's scene, None) when genba recorded one (spec + per-frame state), else (None, why).

    A spec this genba cannot rebuild (written by another version) costs the 3D view, not the visualisation.
    """
    spec = (ep.meta or {}).get("spec")
    if not spec:
        return None, None
    if ep.state is None or ep.env_state is None:
        return None, "the dataset has no observation.state / observation.environment_state to pose the scene"
    from genba.sim.replay import Replayer

    try:
        return Replayer(spec), None
    except Exception as e:
        why = f"cannot rebuild the scene from the episode spec ({one_line(e)})"
        print(f"genba viz: warning: {why}; logging 2D only", file=sys.stderr)
        return None, why
