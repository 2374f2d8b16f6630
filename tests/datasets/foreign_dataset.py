"""A LeRobotDataset v3 written only through lerobot's own writer, with features genba did not choose: three cameras of
other names and a non-square size, fps 15, a Japanese instruction, an extra feature. Shared by the clip, stats and
bench tests of this folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FPS = 15
LENGTHS = (12, 5, 20)  # episode 1 is shorter than some windows: padding on both sides
CAMS = ("cam_high", "cam_left_wrist", "cam_low")
H, W = 64, 80  # not square, so resizing changes the aspect
TASKS = ("pick up the red block", "赤いブロックを箱に入れて", "pick up the red block")
STATE = "observation.state"


def state_value(ep: int, frame: int) -> np.ndarray:
    """Encodes (episode, frame) so that any leak across episodes or off-by-one shows in the values."""
    return np.array([ep * 1000 + frame, frame * 0.5, -ep, 1.0], dtype=np.float32)


def make_lerobot_dataset(root: Path) -> Path:
    """A dataset written only through lerobot's LeRobotDataset.create / add_frame / save_episode / finalize."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    video = {"dtype": "video", "shape": (H, W, 3), "names": ["height", "width", "channels"]}
    features = {
        **{f"observation.images.{c}": dict(video) for c in CAMS},
        STATE: {"dtype": "float32", "shape": (4,), "names": ["a", "b", "c", "d"]},
        "observation.effort": {"dtype": "float32", "shape": (2,), "names": ["e0", "e1"]},
        "action": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
    }
    ds = LeRobotDataset.create("test/foreign", fps=FPS, features=features, root=root, use_videos=True)
    yy, xx = np.mgrid[0:H, 0:W]
    for ep, n in enumerate(LENGTHS):
        for f in range(n):
            frame = {
                STATE: state_value(ep, f),
                "observation.effort": np.array([f, -f], dtype=np.float32),
                "action": np.array([ep * 1000 + f + 0.5, f, ep], dtype=np.float32),
                "task": TASKS[ep],
            }
            for c, cam in enumerate(CAMS):  # smooth images that change with frame and camera (codec-friendly)
                img = np.stack([(xx * 3 + f * 9) % 256, (yy * 3 + c * 60) % 256, np.full_like(xx, 40 * ep)], -1)
                frame[f"observation.images.{cam}"] = img.astype(np.uint8)
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    return root
