"""A LeRobotDataset v3 written with lerobot's own writer, with features genba did not choose.

One video camera "top" and one image-stored camera "side" of different sizes, 7 joints with names of another arm
(one with a space, one with a slash), a Japanese task, per-frame next.success, 15 fps, two episodes of different
lengths: what `genba viz` must show for any lerobot log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

JOINTS7 = ["waist", "shoulder", "elbow", "forearm_roll", "wrist angle", "wrist/rotate", "gripper"]
TASKS = ["赤いキューブを青い箱に入れて", "stack the green cylinder on the yellow cube"]
LENGTHS = [9, 12]
FPS = 15


@dataclass
class ForeignDataset:
    root: Path
    state: list[np.ndarray]  # per episode (F, 7) float32, as written
    action: list[np.ndarray]  # per episode (F, 7) float32
    top: list[np.ndarray]  # per episode (F, 24, 32, 3) uint8, as written (stored as lossy video)
    side: list[np.ndarray]  # per episode (F, 20, 20, 3) uint8 (stored as PNG images: lossless)
    success: list[np.ndarray]  # per episode (F,) bool


def _frames(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Smooth moving gradients: video codecs keep them close to the original, unlike noise."""
    y, x = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w, 3), np.uint8)
    base = rng.uniform(40, 200, size=3)
    for t in range(n):
        for c in range(3):
            out[t, :, :, c] = np.clip(base[c] + 40 * np.sin((x + 2 * t) / 6.0 + c) + 20 * np.cos(y / 5.0), 0, 255)
    return out


@pytest.fixture(scope="session")
def foreign_dataset(tmp_path_factory: pytest.TempPathFactory) -> ForeignDataset:
    from lerobot.datasets import LeRobotDataset

    root = tmp_path_factory.mktemp("foreign") / "aloha_like"
    features = {
        "observation.images.top": {"dtype": "video", "shape": (24, 32, 3), "names": ["height", "width", "channels"]},
        "observation.images.side": {"dtype": "image", "shape": (20, 20, 3), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (7,), "names": JOINTS7},
        "action": {"dtype": "float32", "shape": (7,), "names": JOINTS7},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }
    ds = LeRobotDataset.create("test/aloha_like", fps=FPS, features=features, root=root, robot_type="other_arm")
    rng = np.random.default_rng(7)
    data = ForeignDataset(root, [], [], [], [], [])
    for task, n in zip(TASKS, LENGTHS, strict=True):
        state = rng.normal(size=(n, 7)).astype(np.float32)
        action = (state + rng.normal(scale=0.1, size=(n, 7))).astype(np.float32)
        top, side = _frames(rng, n, 24, 32), _frames(rng, n, 20, 20)
        success = np.arange(n) >= n - 3
        for t in range(n):
            ds.add_frame(
                {
                    "observation.images.top": top[t],
                    "observation.images.side": side[t],
                    "observation.state": state[t],
                    "action": action[t],
                    "next.success": np.array([success[t]]),
                    "task": task,
                }
            )
        ds.save_episode()
        for field_, value in zip(
            ("state", "action", "top", "side", "success"), (state, action, top, side, success), strict=True
        ):
            getattr(data, field_).append(value)
    ds.finalize()
    return data
