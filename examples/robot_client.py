"""Drive an arm from a running `genba serve`: the genba MuJoCo arm, or a simulated SO-101 through lerobot's
Robot interface (the same code path as a real SO-101 follower, whose lerobot config you would pass instead).

    genba serve policy=scripted task=pick_place &
    python examples/robot_client.py --task pick_place --episodes 3              # sim arm, real-time 10 Hz
    python examples/robot_client.py --robot so101-sim --episodes 3 --fast       # lerobot robot API, lock-step

With an API key: `GENBA_API_KEY=... genba serve host=0.0.0.0 ...` and `--api-key ...` (or $GENBA_API_KEY) here.
"""

from __future__ import annotations

import argparse
import json
import os

import genba.sim as sim
from genba.errors import GenbaError
from genba.serving.remote import RemotePolicy
from genba.serving.robot_client import RobotClient
from genba.serving.robots import LeRobotArm, so101_units
from genba.serving.safety import robot_limits
from genba.sim.arm import SimArm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8000")
    parser.add_argument("--api-key", default=os.environ.get("GENBA_API_KEY"))
    parser.add_argument("--robot", choices=["sim", "so101-sim"], default="sim")
    parser.add_argument("--task", default="pick_place", choices=sorted(sim.TASKS))
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--fast", action="store_true", help="lock-step instead of real time")
    args = parser.parse_args()

    try:
        policy = RemotePolicy(args.url, api_key=args.api_key)
    except GenbaError as e:  # no server, wrong address or key: one line, not a traceback
        parser.exit(2, f"robot_client: error: {e}\n")
    print(f"connected to {args.url}: policy {policy.name}, inputs {policy.input_spec.describe()}")
    if args.robot == "sim":
        robot = SimArm(sim.make(args.task, cameras=[]))
        arm, reset = robot, robot.reset
    else:
        from genba.serving.lerobot_sim import SimSO101Config, SimSO101Follower

        robot = SimSO101Follower(SimSO101Config(task=args.task, max_relative_target=30.0))
        robot.connect()
        arm = LeRobotArm(robot, fps=robot.env.unwrapped.fps, units=so101_units())
        reset = robot.reset
    client = RobotClient(arm, policy, limits=robot_limits("genba_arm"), realtime=not args.fast)
    try:
        for seed in range(args.episodes):
            reset(seed)
            print(json.dumps(client.run_episode().summary()))
    finally:
        client.close()
        policy.close()


if __name__ == "__main__":
    main()
