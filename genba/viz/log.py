"""Log an `Episode` to a Rerun recording: cameras, depth, per-joint state/action, instruction, success; and a layout.

Entity layout (what readers of the .rrd and the blueprint rely on):
  cameras/<camera>          JPEG frames (rr.EncodedImage), raw rr.Image, or an H.264 rr.VideoStream: one per frame
  depth/<camera>            rr.EncodedDepthImage, 16-bit PNG of millimetres, one per frame
  state/<joint>             rr.Scalars, one series per joint, named after the dataset's feature `names`
  action/<joint>            rr.Scalars, same
  success, reward           rr.Scalars per frame when the dataset has them; else success once, at the last frame,
                            from genba's episode metadata
  instruction               rr.TextDocument, logged at the frames where the task string changes
  episode                   rr.TextDocument (static): source, instruction, outcome, genba's physics parameters
  audio                     rr.AssetAudio (WAV) of the spoken instruction at time 0, played by the viewer's audio
                            view (collect audio=true); audio/envelope: its peak per 10 ms as rr.Scalars on `time`
  world/...                 the 3D scene (genba.viz.scene) and point clouds (genba.viz.pointcloud)
Timelines: `frame_index` (sequence) and `time` (seconds since the episode start).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from genba.viz.data import Episode

if TYPE_CHECKING:
    import rerun as rr
    import rerun.blueprint as rrb

FRAME_TIMELINE = "frame_index"
TIME_TIMELINE = "time"
CAMERAS, DEPTH, STATE, ACTION = "cameras", "depth", "state", "action"
SUCCESS, REWARD, INSTRUCTION, EPISODE, WORLD = "success", "reward", "instruction", "episode", "world"
AUDIO, ENVELOPE = "audio", "audio/envelope"
ENVELOPE_S = 0.01  # one envelope point per 10 ms of audio
KEYFRAME_SECONDS = 2.0  # H.264 keyframe interval: scrubbing decodes at most this much video


def entity(*parts: str) -> str:
    """An entity path from parts that may contain '/', spaces or non-ASCII (joint names, camera names)."""
    import rerun as rr

    return "/".join(rr.escape_entity_path_part(p) for p in parts)


def time_columns(ep: Episode, frames: np.ndarray | None = None) -> list[rr.TimeColumn]:
    """Both timelines for the frames `frames` (default: all), for rr.send_columns."""
    import rerun as rr

    frames = np.arange(ep.num_frames) if frames is None else frames
    return [
        rr.TimeColumn(FRAME_TIMELINE, sequence=frames),
        rr.TimeColumn(TIME_TIMELINE, duration=ep.timestamps[frames]),
    ]


def set_frame(rec: rr.RecordingStream, ep: Episode, i: int) -> None:
    rec.set_time(FRAME_TIMELINE, sequence=int(i))
    rec.set_time(TIME_TIMELINE, duration=float(ep.timestamps[i]))


def log_episode(
    rec: rr.RecordingStream, ep: Episode, *, images: str = "jpeg", jpeg_quality: int = 90, crf: int = 23
) -> None:
    """Everything 2D and scalar of the episode; the 3D parts are logged by genba.viz.scene / pointcloud.

    images: "jpeg" (quality jpeg_quality), "raw" (exact pixels) or "h264" (a video stream at constant rate factor
    crf: several times smaller than JPEG, but the native viewer needs FFmpeg on PATH to decode it).
    """
    _log_scalars(rec, ep)
    _log_text(rec, ep)
    if ep.audio is not None:
        log_audio(rec, ep.audio, ep.audio_rate)
    if images == "h264":
        for camera, frames in ep.images.items():
            log_h264(rec, entity(CAMERAS, camera), frames, ep, crf=crf)
    _log_frames(rec, ep, {} if images == "h264" else ep.images, raw=images == "raw", jpeg_quality=jpeg_quality)


def _log_frames(
    rec: rr.RecordingStream, ep: Episode, images: dict[str, np.ndarray], *, raw: bool, jpeg_quality: int
) -> None:
    """Per frame: each camera in `images` (camera -> (F, H, W, 3) uint8) as an image, and every depth camera."""
    import rerun as rr
    from tqdm import tqdm

    for i in tqdm(range(ep.num_frames), desc="logging frames", unit="frame", leave=False, disable=None):
        set_frame(rec, ep, i)
        for camera, frames in images.items():
            image = rr.Image(frames[i])  # (H, W, 3) uint8
            rec.log(entity(CAMERAS, camera), image if raw else image.compress(jpeg_quality=jpeg_quality))
        for camera, frames in ep.depth.items():
            rec.log(entity(DEPTH, camera), depth_png(frames[i]))
    rec.reset_time()


def depth_png(depth: np.ndarray) -> rr.EncodedDepthImage:
    """Depth (H, W) float32 metres as a 16-bit PNG of millimetres: lossless at 1 mm up to 65 m, and ~10x smaller
    than raw float32 on sim scenes (smooth surfaces). Integer depth is millimetres to the viewer by default."""
    import io

    import rerun as rr
    from PIL import Image

    mm = np.clip(np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0) * 1000.0 + 0.5, 0, 65535).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(mm).save(buffer, format="PNG")
    return rr.EncodedDepthImage(blob=buffer.getvalue(), media_type=rr.components.MediaType.PNG)


def log_h264(rec: rr.RecordingStream, path: str, frames: np.ndarray, ep: Episode, *, crf: int = 23) -> int:
    """Encode frames (F, H, W, 3) uint8 as H.264 (Annex B, no B-frames, as rr.VideoStream needs) and log one
    sample per frame at that frame's time; returns the bytes logged. Odd sizes are padded by one edge pixel
    (4:2:0 chroma needs even sizes)."""
    import io
    from fractions import Fraction

    import av
    import rerun as rr

    f, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    fps = Fraction(ep.fps).limit_denominator(1001)
    rec.log(path, rr.VideoStream(codec=rr.VideoCodec.H264), static=True)
    logged = 0

    def emit(packets: list) -> None:
        nonlocal logged
        for packet in packets:
            set_frame(rec, ep, int(packet.pts))
            sample = bytes(packet)
            rec.log(path, rr.VideoStream.from_fields(sample=sample))
            logged += len(sample)

    quiet = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # libx264 prints its statistics on close otherwise
    try:
        container = av.open(io.BytesIO(), "w", format="h264")
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w + pw, h + ph, "yuv420p"
        stream.max_b_frames = 0
        stream.codec_context.gop_size = max(1, round(KEYFRAME_SECONDS * ep.fps))
        stream.options = {"tune": "zerolatency", "crf": str(crf)}  # zerolatency: one packet out per frame in
        for i in range(f):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
            frame.pts = i
            emit(stream.encode(frame))
        emit(stream.encode(None))
        container.close()
    finally:
        av.logging.set_level(quiet)
    rec.reset_time()
    return logged


def log_audio(rec: rr.RecordingStream, wave: np.ndarray, sample_rate: int) -> None:
    """wave (T,) float32 as a WAV asset starting at time 0 (Rerun plays an AssetAudio from the time it is logged
    at), and its envelope as a plot, so that it is seen beside the cameras as well as heard."""
    import io
    import wave as wavfile

    import rerun as rr

    pcm = (np.clip(wave, -1, 1) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    with wavfile.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    rec.set_time(FRAME_TIMELINE, sequence=0)
    rec.set_time(TIME_TIMELINE, duration=0.0)
    rec.log(AUDIO, rr.AssetAudio(contents=buffer.getvalue(), media_type="audio/wav"))
    rec.reset_time()
    step = max(1, round(ENVELOPE_S * sample_rate))
    n = len(wave) // step
    if n:
        peaks = np.abs(wave[: n * step]).reshape(n, step).max(axis=1).astype(np.float64)  # (n,)
        rec.log(ENVELOPE, rr.SeriesLines(names="speech"), static=True)
        times = [rr.TimeColumn(TIME_TIMELINE, duration=np.arange(n) * step / sample_rate)]
        rec.send_columns(ENVELOPE, indexes=times, columns=rr.Scalars.columns(scalars=peaks))


def _log_scalars(rec: rr.RecordingStream, ep: Episode) -> None:
    import rerun as rr

    times = time_columns(ep)
    for prefix, values, names in ((STATE, ep.state, ep.state_names), (ACTION, ep.action, ep.action_names)):
        if values is None:
            continue
        for j, name in enumerate(names):
            path = entity(prefix, name)
            rec.log(path, rr.SeriesLines(names=f"{name} ({prefix})"), static=True)
            rec.send_columns(path, indexes=times, columns=rr.Scalars.columns(scalars=values[:, j].astype(np.float64)))
    for path, values in ((SUCCESS, ep.success), (REWARD, ep.reward)):
        if values is not None:
            rec.log(path, rr.SeriesLines(names=path), static=True)
            rec.send_columns(path, indexes=times, columns=rr.Scalars.columns(scalars=values.astype(np.float64)))
    if ep.success is None and ep.episode_success is not None:
        # only the episode's outcome is known (genba's metadata): one marked point at the last frame
        rec.log(SUCCESS, rr.SeriesPoints(names=SUCCESS, marker_sizes=6.0), static=True)
        last = np.array([ep.num_frames - 1])
        scalars = rr.Scalars.columns(scalars=[float(ep.episode_success)])
        rec.send_columns(SUCCESS, indexes=time_columns(ep, last), columns=scalars)


def _log_text(rec: rr.RecordingStream, ep: Episode) -> None:
    import rerun as rr

    previous = None
    for i, task in enumerate(ep.tasks):
        if task != previous:  # lerobot allows the task to change within an episode (subtasks)
            set_frame(rec, ep, i)
            rec.log(INSTRUCTION, rr.TextDocument(task))
            previous = task
    rec.reset_time()
    rec.log(EPISODE, rr.TextDocument(episode_markdown(ep), media_type=rr.MediaType.MARKDOWN), static=True)


def episode_markdown(ep: Episode) -> str:
    """The episode panel: where it came from, what was asked, how it went, genba's recorded physics."""
    outcome = {True: "success", False: "failure", None: "not recorded"}[ep.episode_success]
    instructions = list(dict.fromkeys(ep.tasks))
    lines = [
        f"# episode {ep.index}",
        f"- source: `{ep.source}`",
        f"- frames: {ep.num_frames} at {ep.fps:g} fps ({ep.timestamps[-1]:.2f} s)",
        f"- instruction: {' / '.join(instructions) if instructions else '(none)'}",
        f"- outcome: **{outcome}**",
    ]
    if ep.meta:
        spec = ep.meta.get("spec") or {}
        for key in ("task", "seed", "lang"):  # the spec's task is the task name (the record's is the instruction)
            value = spec.get(key, ep.meta.get(key))
            if value is not None:
                lines.append(f"- {key}: {value}")
        audio = ep.meta.get("audio")
        if audio:
            noise = (
                f", {audio.get('noise')} noise at {audio.get('snr_db')} dB" if audio.get("snr_db") is not None else ""
            )
            lines.append(f"- spoken by: `{audio.get('voice')}` ({audio.get('seconds')} s{noise})")
        physics = ep.meta.get("physics") or spec.get("physics")
        if physics:
            lines += ["", "## physics", "```json", json.dumps(physics, indent=1, ensure_ascii=False), "```"]
    return "\n".join(lines)


def blueprint(ep: Episode, *, scene: bool) -> rrb.Blueprint:
    """Cameras side by side (and the 3D scene) on top, one state-vs-action plot per joint below, text on the side."""
    import rerun.blueprint as rrb

    images: list = [rrb.Spatial2DView(origin=entity(CAMERAS, c), name=c) for c in ep.images]
    images += [rrb.Spatial2DView(origin=entity(DEPTH, c), name=f"{c} depth") for c in ep.depth]
    top: list = [rrb.Spatial3DView(origin=WORLD, name="scene")] if scene else []
    if images:  # cameras side by side; with depth or many cameras they wrap into a grid
        top.append(rrb.Horizontal(*images) if len(images) <= 3 else rrb.Grid(*images))
    plots: list = []
    shared = [n for n in ep.state_names if n in set(ep.action_names)]
    for name in shared:
        plots.append(rrb.TimeSeriesView(origin="/", contents=[entity(STATE, name), entity(ACTION, name)], name=name))
    if ep.state is not None and len(shared) < len(ep.state_names):
        plots.append(rrb.TimeSeriesView(origin=STATE, name="state"))
    if ep.action is not None and len(shared) < len(ep.action_names):
        plots.append(rrb.TimeSeriesView(origin=ACTION, name="action"))
    side: list = [
        rrb.TextDocumentView(origin=INSTRUCTION, name="instruction"),
        rrb.TextDocumentView(origin=EPISODE, name="episode"),
    ]
    shares = [1, 3]
    if ep.audio is not None:
        side += [rrb.AudioView(origin=AUDIO, contents=AUDIO, name="spoken instruction"),
                 rrb.TimeSeriesView(origin=ENVELOPE, name="speech envelope")]  # fmt: skip
        shares += [1, 1]
    outcome = [p for p, v in ((SUCCESS, ep.episode_success), (REWARD, ep.reward)) if v is not None]
    if outcome:
        side.append(rrb.TimeSeriesView(origin="/", contents=outcome, name="success / reward"))
        shares.append(2)
    main: list = []
    if top:
        main.append(rrb.Horizontal(*top) if len(top) > 1 else top[0])
    if plots:
        main.append(rrb.Grid(*plots))
    layout = rrb.Horizontal(
        rrb.Vertical(*main) if main else rrb.TextDocumentView(origin=EPISODE),
        rrb.Vertical(*side, row_shares=shares),
        column_shares=[3, 1],
    )
    return rrb.Blueprint(layout, rrb.TimePanel(timeline=FRAME_TIMELINE), collapse_panels=False)
