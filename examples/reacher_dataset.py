"""Record a LeRobotDataset v3 from gymnasium's MuJoCo Reacher-v5, written only by lerobot's own writer.

    python examples/reacher_dataset.py --out data/reacher60        # 60 episodes x 60 steps, 64x64, 50 fps
    python examples/reacher_dataset.py --out /tmp/r --episodes 2 --steps 12 --image-size 32

It shows genba training on a dataset genba did not write: nothing here imports genba. The dataset has one camera,
stored as the single feature `observation.image` (not genba's `observation.images.<cam>`), the env's 10-value
observation vector as `observation.state`, 2 joint torques as `action`, and the env's own control rate (1/dt = 50 fps).
Then, for example:

    from genba.datasets.clips import ClipConfig, ClipDataset
    ds = ClipDataset(ClipConfig(data="data/reacher60", obs_frames=1, future_frames=20, action_horizon=21))

The camera looks straight down on the arena (+x to the right, +y up in the image) and the target's marker is drawn
larger than the env's 9 mm (it has no collisions and its mass was fixed at load, so the physics is unchanged).
A noisy PD controller on the joint angles from the 2-link arm's inverse kinematics reaches the target, with per-episode
gains, interrupted by random exploration segments, so actions matter and are not a function of the image. Each
episode's instruction names the target's quadrant in the image, in English (even episodes) or Japanese (odd ones).
Needs gymnasium's MuJoCo extra: pip install "gymnasium[mujoco]".
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; a user's own MUJOCO_GL (glfw, osmesa) wins
if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

ENV_ID = "Reacher-v5"
LINKS = (0.1, 0.11)  # shoulder-elbow and elbow-fingertip lengths of reacher.xml (m)
TOP_DOWN = {"trackbodyid": -1, "distance": 0.58, "elevation": -90.0, "azimuth": 90.0, "lookat": np.zeros(3)}
TARGET_RADIUS = 0.02  # drawn size of the target marker (m)
STATE_NAMES = ["cos_joint0", "cos_joint1", "sin_joint0", "sin_joint1", "target_x", "target_y",
               "joint0_vel", "joint1_vel", "fingertip_minus_target_x", "fingertip_minus_target_y"]  # fmt: skip
ACTION_NAMES = ["joint0_torque", "joint1_torque"]
IMAGE_NAMES = ["height", "width", "channels"]
QUADRANTS = {  # (target above the base, target right of the base) -> (English, Japanese)
    (True, False): ("upper left", "左上"),
    (True, True): ("upper right", "右上"),
    (False, False): ("lower left", "左下"),
    (False, True): ("lower right", "右下"),
}


def instruction(target_xy: np.ndarray, episode: int) -> str:
    """Where the target is in the top-down image, in English for even episodes and Japanese for odd ones."""
    en, ja = QUADRANTS[(bool(target_xy[1] > 0), bool(target_xy[0] > 0))]
    return f"reach the target in the {en}" if episode % 2 == 0 else f"{ja}の目標に手を伸ばして"


def inverse_kinematics(target_xy: np.ndarray, elbow: float) -> np.ndarray:
    """Joint angles that put the fingertip on the target (nearest reachable point), keeping the elbow's side."""
    l1, l2 = LINKS
    cos_q1 = np.clip((target_xy @ target_xy - l1**2 - l2**2) / (2 * l1 * l2), -1.0, 1.0)
    q1 = np.arccos(cos_q1) * (1.0 if elbow >= 0 else -1.0)
    q0 = np.arctan2(target_xy[1], target_xy[0]) - np.arctan2(l2 * np.sin(q1), l1 + l2 * np.cos(q1))
    return np.array([q0, q1])


class Controller:
    """A noisy joint-space PD towards the IK solution, with random exploration segments of held random torques."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.kp, self.kd = rng.uniform(0.4, 2.0), rng.uniform(0.1, 0.3)
        self.left = 0  # steps left in the current segment
        self.exploring = False
        self.held = np.zeros(2)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        rng = self.rng
        if self.left == 0:  # a new segment: explore 40% of the time, 5-15 steps each
            self.exploring, self.left = bool(rng.random() < 0.4), int(rng.integers(5, 16))
        self.left -= 1
        if self.exploring:
            if rng.random() < 0.3:  # piecewise-constant random torques: the arm swings, visibly
                self.held = rng.uniform(-0.6, 0.6, 2)
            action = self.held
        else:
            q, qvel = np.arctan2(obs[2:4], obs[0:2]), obs[6:8]
            error = np.angle(np.exp(1j * (inverse_kinematics(obs[4:6], q[1]) - q)))  # wrapped to (-pi, pi]
            action = self.kp * error - self.kd * qvel
        return np.clip(action + rng.normal(0.0, 0.08, 2), -1.0, 1.0).astype(np.float32)


def make_env(image_size: int, steps: int):
    """Reacher-v5 rendering top-down images of image_size x image_size, truncated after `steps` steps."""
    try:
        import gymnasium
        from gymnasium.envs.mujoco import MujocoEnv  # noqa: F401  (fails without the MuJoCo extra)
    except ImportError as e:
        sys.exit(f"error: {ENV_ID} needs gymnasium's MuJoCo extra ({e}); pip install 'gymnasium[mujoco]'")
    env = gymnasium.make(ENV_ID, render_mode="rgb_array", width=image_size, height=image_size,
                         default_camera_config=TOP_DOWN, max_episode_steps=steps)  # fmt: skip
    model = env.unwrapped.model
    model.geom_size[model.geom("target").id, 0] = TARGET_RADIUS
    return env


def record(out: Path, episodes: int, steps: int, seed: int, image_size: int) -> Path:
    """Write `episodes` episodes of `steps` frames each to `out` with LeRobotDataset.create / add_frame / finalize."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from tqdm import tqdm

    env = make_env(image_size, steps)
    fps = round(1.0 / env.unwrapped.dt)  # 0.01 s timestep x frame_skip 2 -> 50 fps
    features = {
        "observation.image": {"dtype": "video", "shape": (image_size, image_size, 3), "names": IMAGE_NAMES},
        "observation.state": {"dtype": "float32", "shape": (len(STATE_NAMES),), "names": STATE_NAMES},
        "action": {"dtype": "float32", "shape": (len(ACTION_NAMES),), "names": ACTION_NAMES},
    }
    ds = LeRobotDataset.create("local/reacher", fps=fps, features=features, root=out, robot_type="reacher",
                               use_videos=True)  # fmt: skip
    try:
        for ep in tqdm(range(episodes), desc=f"recording {ENV_ID}", unit="episode"):
            obs, _ = env.reset(seed=seed + ep)
            controller = Controller(np.random.default_rng(seed + ep))
            task = instruction(obs[4:6], ep)
            for _ in range(steps):  # each frame: the image and state at t, and the action taken from them
                image, action = env.render(), controller(obs)
                ds.add_frame({"observation.image": image, "observation.state": obs.astype(np.float32),
                              "action": action, "task": task})  # fmt: skip
                obs, *_ = env.step(action)
            ds.save_episode()
    finally:
        ds.finalize()
        env.close()
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="new dataset folder (must not exist, or be empty)")
    p.add_argument("--episodes", type=int, default=60, help="episodes to record (default 60)")
    p.add_argument("--steps", type=int, default=60, help="frames per episode (default 60, 1.2 s at 50 fps)")
    p.add_argument("--seed", type=int, default=0, help="episode i resets the env with seed+i (default 0)")
    p.add_argument("--image-size", type=int, default=64, help="camera image height and width in pixels (default 64)")
    args = p.parse_args(argv)
    for name in ("episodes", "steps", "image_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.image_size < 16 or args.image_size % 2:
        p.error("--image-size must be even and at least 16 (video encoders need it)")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    out: Path = args.out.expanduser()
    if out.exists():
        if not out.is_dir() or any(out.iterdir()):
            sys.exit(f"error: --out {out} already exists and is not empty; choose a new folder")
        out.rmdir()  # lerobot creates the folder itself
    start = time.perf_counter()
    record(out, args.episodes, args.steps, args.seed, args.image_size)
    print(f"wrote {args.episodes} episodes x {args.steps} frames to {out} in {time.perf_counter() - start:.0f} s")
    return out


if __name__ == "__main__":
    main()
