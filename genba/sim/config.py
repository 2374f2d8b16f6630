"""EnvConfig: the knobs of a genba simulation environment (standard library only, so the CLI imports it fast).

Every field can be passed to `genba.sim.make(name, **overrides)` or `gymnasium.make("genba/<Task>-v0", **overrides)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LANGS = ("en", "ja", "mixed")
ACTION_MODES = ("joint", "ee_delta")
CAMERA_NAMES = ("front", "wrist")  # = genba.keys.CAMERAS


@dataclass
class EnvConfig:
    image_size: int = field(default=128, metadata={"help": "side of the square camera images, pixels"})
    cameras: list[str] = field(
        default_factory=lambda: list(CAMERA_NAMES),
        metadata={"help": "cameras to render, a subset of front,wrist; empty -> no rendering at all"},
    )
    depth: bool = field(default=False, metadata={"help": "also render depth (metres) for each camera"})
    lang: str = field(default="en", metadata={"help": "instruction language: en, ja or mixed (seeded per episode)"})
    action_mode: str = field(
        default="joint", metadata={"help": "joint: 6 target joint positions; ee_delta: gripper-tip deltas"}
    )
    randomize: bool = field(
        default=True, metadata={"help": "domain randomization: lights, colours, cameras, mass, friction, gains"}
    )
    max_episode_steps: int | None = field(default=None, metadata={"help": "time limit; None -> the task default"})
    fps: int = field(default=10, metadata={"help": "control rate in Hz (physics substeps run inside a step)"})
    after_success: int = field(
        default=0,
        metadata={"help": "steps the episode goes on after the task first succeeds (per-step success labels for a "
                  "world model's success head); 0 = it terminates on success"},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size={self.image_size!r} must be an integer in [16, 1024]")
        self.cameras = list(self.cameras)
        bad = [c for c in self.cameras if c not in CAMERA_NAMES]
        if bad or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras={self.cameras!r}: each must be one of {', '.join(CAMERA_NAMES)}, no repeats")
        if self.lang not in LANGS:
            raise ValueError(f"lang={self.lang!r} is not one of {', '.join(LANGS)}")
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode={self.action_mode!r} is not one of {', '.join(ACTION_MODES)}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps={self.max_episode_steps!r} must be >= 1 (or None)")
        if not isinstance(self.fps, int) or not 1 <= self.fps <= 100:
            raise ValueError(f"fps={self.fps!r} must be an integer in [1, 100]")
        if not isinstance(self.after_success, int) or not 0 <= self.after_success <= 1000:
            raise ValueError(f"after_success={self.after_success!r} must be an integer in [0, 1000]")
        if self.depth and not self.cameras:
            raise ValueError("depth=True needs at least one camera (cameras is empty)")
