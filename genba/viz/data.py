"""One episode as plain arrays: what the Rerun logger consumes, whatever produced it.

Two producers share this shape so that one logger serves both: `read_episode` (any LeRobotDataset v3 on disk, decoded
through lerobot's own `LeRobotDataset`, so the frames are exactly what training sees) and `episode_from_steps` (the
observations of a live env rollout, no dataset needed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genba import keys
from genba.errors import GenbaError
from genba.io import one_line

# Per-frame success / reward columns as different recorders name them (lerobot's constants, gymnasium's info key).
SUCCESS_KEYS = ("next.success", "is_success", "success")
REWARD_KEYS = ("next.reward", "reward")


@dataclass
class Episode:
    """F frames of one episode. Arrays are indexed by frame; dicts are keyed by camera name."""

    fps: float
    timestamps: np.ndarray  # (F,) float64 seconds since the episode start
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (F, H, W, 3) uint8
    depth: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (F, H, W) float32 metres
    state: np.ndarray | None = None  # (F, S) float32
    state_names: list[str] = field(default_factory=list)  # S names
    action: np.ndarray | None = None  # (F, A) float32
    action_names: list[str] = field(default_factory=list)  # A names
    env_state: np.ndarray | None = None  # (F, E) float32 privileged object state (genba sim layout)
    tasks: list[str] = field(default_factory=list)  # F instructions (usually one repeated)
    success: np.ndarray | None = None  # (F,) float32 in {0, 1}, when the recorder logged it per frame
    reward: np.ndarray | None = None  # (F,) float32
    meta: dict[str, Any] | None = None  # genba's per-episode metadata (spec, physics, success, seed), if any
    audio: np.ndarray | None = None  # (T,) float32 the spoken instruction (collect audio=true), at audio_rate Hz
    audio_rate: int = 0
    source: str = ""  # where it came from, for the summary and the episode panel
    index: int = 0  # episode index in its dataset

    @property
    def num_frames(self) -> int:
        return len(self.timestamps)

    @property
    def episode_success(self) -> bool | None:
        """Episode-level outcome: genba's metadata first, else the last per-frame success flag."""
        if self.meta is not None and "success" in self.meta:
            return bool(self.meta["success"])
        if self.success is not None and len(self.success):
            return bool(self.success[-1] > 0.5)
        return None


def check_dataset_dir(root: str | Path, episode: int | None = None) -> Path:
    """Fail with one line before lerobot would try to download a missing local dataset from the Hub.

    With `episode`, also check it against info.json's total_episodes (standard library only, so a typo in the
    command line costs no lerobot import)."""
    root = Path(root).expanduser()
    if not str(root) or str(root) == ".":
        raise GenbaError("data= is required: the directory of a LeRobotDataset v3 (e.g. data=outputs/dataset)")
    if not root.exists():
        raise GenbaError(f"dataset directory not found: {root}")
    if not root.is_dir():
        raise GenbaError(f"data={root} is a file, not a LeRobotDataset directory")
    if not (root / "meta" / "info.json").is_file():
        raise GenbaError(f"{root} is not a LeRobotDataset v3 directory (no meta/info.json)")
    # lerobot answers a missing metadata file by downloading it from the Hub: refuse before it gets the chance
    try:
        info = json.loads((root / "meta" / "info.json").read_text())
        version = str(info.get("codebase_version", "?"))
    except (OSError, ValueError, AttributeError) as e:
        raise GenbaError(f"{root}/meta/info.json is unreadable: {e}") from None
    if not version.startswith("v3"):
        raise GenbaError(
            f"{root} is a LeRobotDataset {version}, not v3.x: convert it with lerobot's convert_dataset_v21_to_v30"
        )
    if episode is not None:  # first: a dataset created but given no episode yet also lacks meta/episodes
        _check_episode(root, episode, int(info.get("total_episodes", 0)))
    missing = [p for p in ("meta/tasks.parquet", "meta/episodes") if not (root / p).exists()]
    if missing:
        raise GenbaError(f"{root} is an incomplete LeRobotDataset v3 (missing {', '.join(missing)})")
    return root


def _check_episode(root: Path, episode: int, total: int) -> None:
    if total == 0:
        raise GenbaError(f"{root} holds no episodes")
    if not 0 <= episode < total:
        raise GenbaError(f"episode={episode} out of range: {root} has {total} episodes (valid: 0..{total - 1})")


def read_episode(root: str | Path, episode: int) -> Episode:
    """Decode episode `episode` of the LeRobotDataset v3 at `root` (a local directory; never the Hub)."""
    root = check_dataset_dir(root, episode)  # before importing lerobot (seconds): bad input fails at once
    from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata

    repo_id = f"local/{root.name}"  # only a label: with a local root lerobot reads from disk
    try:
        meta = LeRobotDatasetMetadata(repo_id, root=root)
    except Exception as e:  # corrupt json, old codebase version, ...: lerobot's message, on one line
        raise GenbaError(f"cannot read {root} as a LeRobotDataset v3: {type(e).__name__}: {one_line(e)}") from None
    _check_episode(root, episode, meta.total_episodes)  # info.json and lerobot's view agree; check both

    try:
        ds = LeRobotDataset(repo_id, root=root, episodes=[episode], return_uint8=True, depth_output_unit="m")
        frames = [ds[i] for i in range(len(ds))]
    except Exception as e:
        raise GenbaError(f"cannot decode episode {episode} of {root}: {type(e).__name__}: {one_line(e)}") from None
    if not frames:
        raise GenbaError(f"episode {episode} of {root} has no frames")
    return _episode_from_frames(frames, meta.features, set(meta.depth_keys), meta.fps, root, episode)


def _episode_from_frames(
    frames: list[dict], features: dict, native_depth: set[str], fps: float, root: Path, episode: int
) -> Episode:
    def stack(key: str) -> np.ndarray:
        return np.stack([np.asarray(f[key]) for f in frames])

    ep = Episode(fps=float(fps), timestamps=stack("timestamp").astype(np.float64).reshape(-1))
    ep.timestamps -= ep.timestamps[0]
    ep.source, ep.index = str(root), episode
    ep.tasks = [str(f.get(keys.TASK, "")) for f in frames]

    for key, ft in features.items():
        if ft["dtype"] not in ("video", "image") and not key.startswith(keys.OBS_DEPTH + "."):
            continue
        camera = camera_name(key)
        x = stack(key)
        if key in native_depth or key.startswith(keys.OBS_DEPTH + "."):
            # (F, 1, H, W) channel-first from lerobot's native depth, or (F, H, W, 1) from a float32 feature
            ep.depth[camera] = np.squeeze(x.astype(np.float32), axis=1 if x.shape[1] == 1 else -1)
        else:
            ep.images[camera] = _to_hwc_uint8(x)

    if keys.OBS_STATE in features:
        ep.state = stack(keys.OBS_STATE).astype(np.float32).reshape(len(frames), -1)
        ep.state_names = feature_names(features[keys.OBS_STATE], "state", ep.state.shape[1])
    if keys.ACTION in features:
        ep.action = stack(keys.ACTION).astype(np.float32).reshape(len(frames), -1)
        ep.action_names = feature_names(features[keys.ACTION], "action", ep.action.shape[1])
    if keys.OBS_ENV_STATE in features:
        ep.env_state = stack(keys.OBS_ENV_STATE).astype(np.float32).reshape(len(frames), -1)
    for key in SUCCESS_KEYS:
        if key in features:
            ep.success = stack(key).astype(np.float32).reshape(len(frames), -1)[:, 0]
            break
    for key in REWARD_KEYS:
        if key in features:
            ep.reward = stack(key).astype(np.float32).reshape(len(frames), -1)[:, 0]
            break
    ep.meta = _genba_meta(root, episode, ep)
    if ep.meta and ep.meta.get("audio"):
        _read_audio(root, ep)
    return ep


def _read_audio(root: Path, ep: Episode) -> None:
    """The episode's spoken instruction; an unreadable file costs the audio (with a warning), not the episode."""
    from genba.speech.audio_io import read_flac

    path = root / ep.meta["audio"]["path"]
    try:
        ep.audio, ep.audio_rate = read_flac(path)
    except Exception as e:  # soundfile's errors have no common base: a missing or foreign file
        _warn(f"ignoring the episode's audio {path}: {one_line(e)}")


def camera_name(key: str) -> str:
    """observation.images.front / observation.depth.front -> front; other image keys keep their last part."""
    for prefix in (keys.OBS_IMAGES + ".", keys.OBS_DEPTH + "."):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key.split(".")[-1]


def _to_hwc_uint8(x: np.ndarray) -> np.ndarray:
    """(F, C, H, W) uint8 or float in [0, 1] (lerobot's layout) -> (F, H, W, 3) uint8."""
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.dtype != np.uint8:
        x = (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x)


def feature_names(feature: dict, fallback: str, dim: int) -> list[str]:
    """Per-dimension names from a feature's `names`: a flat list, or lerobot's older {"motors": [...]} form."""
    names = feature.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list | tuple) and len(names) == dim and all(isinstance(n, str) for n in names):
        return [str(n) for n in names]
    return [f"{fallback}_{i}" for i in range(dim)]


def _genba_meta(root: Path, episode: int, ep: Episode) -> dict | None:
    """genba's per-episode metadata (spec for the 3D scene, physics, success) or None for foreign datasets.

    Checked against the episode itself: lerobot's own tools (delete or merge episodes) renumber episodes without
    knowing about meta/genba, and a scene from another episode would be worse than none.
    """
    from genba.datasets.commit import read_episode_meta

    try:
        meta = read_episode_meta(root, episode)
    except GenbaError as e:
        _warn(f"ignoring genba metadata: {e}")
        return None
    if meta is None:
        return None
    length = meta.get("length")
    instruction = (meta.get("spec") or {}).get("instruction", meta.get(keys.TASK))
    if (length is not None and length != ep.num_frames) or (instruction is not None and instruction not in ep.tasks):
        _warn(
            f"ignoring genba metadata of episode {episode}: it describes {length} frames of {instruction!r}, "
            f"the dataset has {ep.num_frames} frames of {ep.tasks[0]!r} (episodes renumbered by another tool?)"
        )
        return None
    return meta


def _warn(message: str) -> None:
    import sys

    print(f"genba viz: warning: {message}", file=sys.stderr)


def episode_from_steps(
    observations: list[dict],
    actions: list[np.ndarray] | np.ndarray | None,
    *,
    fps: float,
    instruction: str,
    success: list[bool] | None = None,
    meta: dict | None = None,
    state_names: list[str] | None = None,
) -> Episode:
    """An Episode straight from env observations (keys.PIXELS / DEPTH / AGENT_POS / ENV_STATE), no dataset.

    observations[t] is the observation the policy saw at step t and actions[t] what it did, as a dataset records them.
    """
    n = len(observations)
    if n == 0:
        raise GenbaError("episode_from_steps: no observations")
    ep = Episode(fps=float(fps), timestamps=np.arange(n, dtype=np.float64) / float(fps))
    first = observations[0]
    for camera in first.get(keys.PIXELS) or {}:
        ep.images[camera] = np.stack([o[keys.PIXELS][camera] for o in observations]).astype(np.uint8)
    for camera in first.get(keys.DEPTH) or {}:
        ep.depth[camera] = np.stack([o[keys.DEPTH][camera] for o in observations]).astype(np.float32)
    if keys.AGENT_POS in first:
        ep.state = np.stack([o[keys.AGENT_POS] for o in observations]).astype(np.float32)
        names = list(state_names or keys.JOINTS)
        ep.state_names = names if len(names) == ep.state.shape[1] else feature_names({}, "state", ep.state.shape[1])
    if keys.ENV_STATE in first:
        ep.env_state = np.stack([o[keys.ENV_STATE] for o in observations]).astype(np.float32)
    if actions is not None and len(actions):
        ep.action = np.asarray(actions, dtype=np.float32).reshape(n, -1)
        same = ep.state is not None and ep.action.shape[1] == ep.state.shape[1]
        ep.action_names = ep.state_names if same else feature_names({}, "action", ep.action.shape[1])
    ep.tasks = [instruction] * n
    if success is not None:
        ep.success = np.asarray(success, dtype=np.float32).reshape(n)
    ep.meta = meta
    ep.source = "env"
    return ep
