"""The one episode loop: a policy drives a robot (a simulated arm or a real one) one control step at a time.

    import genba.sim
    from genba.policies.registry import policy_factory
    from genba.policies.rollout import rollout

    policy = policy_factory("linear", horizon=16)()
    episode = rollout(genba.sim.make("pick_place", cameras=[]), policy, seed=0, n_action_steps=8, record=True)
    episode.success, episode.steps, episode.truncation_reason, episode.frames["action"].shape  # (T, 6)

`run_episode(robot, policy, ...)` is the loop itself; `rollout(env, policy, seed)` runs it on a genba env through
`genba.sim.arm.SimArm`. Collection, evaluation, the robot client (genba.serving.robot_loop) and the tests all use it,
so action chunks run the same way in simulation and on an arm: every step the robot is observed, the observation is
cut to the policy's input spec and checked against it, the chunk broker (genba.policies.broker) gives the step's
action (asking the policy for a new chunk when `refill_at` rows are left, blending an overlap), the action is
clipped to the robot's limits when given, and sent.

realtime=False (simulation): lock-step; each step waits for the policy. realtime=True (an arm): step k is due at
t0 + k / fps; an action that has not arrived by `deadline_fraction` of the step's period makes the watchdog hold the
last commanded target (never a guess at the next one).

Spoken instructions: `rollout(..., speak=fn)` wraps the arm in a `SpokenRobot`, whose observations also carry the
instruction as speech, `observation.audio` (T,) float32 from `fn(text)` (synthesized once per instruction) with its
`observation.audio_sample_rate`; with `typed=False` the typed instruction is withheld from the policy (the episode
still records it as `task`). The loop keeps the sample rate with the waveform whenever the policy's input spec
declares one: the spec checks it here as on the server (genba.policies.spec), and the policy gets it too, so that a
RemotePolicy forwards it to its server.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from genba import keys
from genba.errors import GenbaError
from genba.policies.broker import ChunkBroker, refill_for
from genba.policies.contract import Policy
from genba.policies.spec import SpecError


class Robot(Protocol):
    """What the loop drives: genba.sim.arm.SimArm, genba.serving.robots.LeRobotArm, or your own."""

    fps: float

    def observe(self) -> dict[str, Any]: ...  # LeRobot keys: observation.state (A,), images, task, ...

    def send(self, action: np.ndarray) -> None: ...  # (A,) joint targets in the policy's units

    @property
    def done(self) -> bool: ...


class Limits(Protocol):
    def clip(self, chunk: np.ndarray, current: np.ndarray | None) -> np.ndarray: ...  # (H, A), (A,) -> (H, A)


@dataclass
class Episode:
    """One episode's record. `frames` (record=True): every array the robot observed and every action sent, stacked
    per step: {feature: (T, ...)}; frame t is the observation before action t."""

    seed: int | None
    success: bool
    steps: int
    truncation_reason: str | None
    holds: int = 0  # steps where the watchdog held the last target
    held_steps: list[int] = field(default_factory=list, repr=False)  # which ones
    requests: int = 0  # chunks asked of the policy
    chunks: int = 0  # chunks adopted
    errors: int = 0  # requests that failed (the loop asks again)
    last_error: str = ""
    seconds: float = 0.0
    task: str = ""  # the instruction
    frames: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def summary(self) -> dict:
        """Everything but the frames, JSON-able."""
        return {k: v for k, v in asdict(self).items() if k != "frames"}


def run_episode(robot: Robot, policy: Policy, **options: Any) -> Episode:
    """Control until the robot reports done, `max_steps`, or `stop_event`; the robot's episode is already reset.
    Options are `episode_loop`'s, which this runs to its end."""
    loop = episode_loop(robot, policy, **options)
    while True:
        try:
            next(loop)
        except StopIteration as end:
            return end.value


def episode_loop(
    robot: Robot,
    policy: Policy,
    *,
    n_action_steps: int | None = None,
    blend: int = 0,
    realtime: bool = False,
    limits: Limits | None = None,
    max_steps: int = 10_000,
    record: bool = False,
    deadline_fraction: float = 0.9,
    stop_event: threading.Event | None = None,
    broker: ChunkBroker | None = None,
) -> Generator[None, None, Episode]:
    """The episode loop as a generator that pauses after each `robot.send` (before reading `robot.done`) and returns
    the Episode: run_episode resumes it at once; genba.worldmodel.batched steps many episodes' robots together in one
    batched step between a send and the next resume.

    n_action_steps: rows of each chunk executed before the next is asked for (default: the whole horizon).
    broker: reuse one across episodes (a background broker for remote policies); default: a lock-step one.
    """
    spec = policy.input_spec
    horizon = policy.action_spec.horizon
    if broker is None:
        broker = ChunkBroker(policy.infer, refill_at=refill_for(horizon, n_action_steps), blend=blend)
    broker.reset()
    policy.reset()
    period = 1.0 / robot.fps
    rows: dict[str, list[np.ndarray]] = {}
    last: np.ndarray | None = None
    task, held, steps = "", [], 0
    t0 = time.perf_counter()
    for step in range(max_steps):
        deadline = t0 + (step + deadline_fraction) * period if realtime else math.inf
        raw = robot.observe()
        task = raw.get(keys.TASK, task)
        current = np.asarray(raw[keys.OBS_STATE], dtype=np.float32)
        action = broker.action(step, _policy_input(raw, spec), deadline)
        if action is None:  # watchdog: the last commanded target (or where the arm is)
            held.append(step)
            action = last if last is not None else current
        elif limits is not None:
            action = limits.clip(action[None], current)[0]
        robot.send(action)
        yield
        last = np.array(action, dtype=np.float32)
        steps += 1
        if record:
            for k, v in raw.items():
                if isinstance(v, np.ndarray) and k != keys.OBS_AUDIO:  # the spoken instruction: once, not per step
                    rows.setdefault(k, []).append(np.array(v))  # a copy: renderers reuse their buffers
            rows.setdefault(keys.ACTION, []).append(last)
        if robot.done or (stop_event is not None and stop_event.is_set()):
            break
        if realtime:
            time.sleep(max(0.0, t0 + (step + 1) * period - time.perf_counter()))
    info = getattr(robot, "episode_info", dict)()
    return Episode(
        seed=info.get("seed"),
        success=bool(info.get("success", False)),
        steps=steps,
        truncation_reason=info.get("truncation_reason"),
        holds=len(held),
        held_steps=held,
        requests=broker.requests,
        chunks=broker.chunks,
        errors=broker.errors,
        last_error=broker.last_error,
        seconds=round(time.perf_counter() - t0, 3),
        task=info.get(keys.TASK) or task,
        frames={k: np.stack(v) for k, v in rows.items()} if record else None,
    )


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and (when loaded) torch's global generators: what a policy's random draws come from, so
    that an episode of a seed is the same whichever process runs it (eval, ranking, collect)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def rollout(
    env: Any,
    policy: Policy,
    seed: int,
    reset_options: dict | None = None,
    speak: Callable[[str], np.ndarray] | None = None,
    typed: bool = True,
    **options: Any,
) -> Episode:
    """One episode of `policy` in a genba env (a `genba.sim.make` env) from `seed`; options as `run_episode`.
    reset_options go to the env's reset (e.g. {"instruction": "shuffled"}); `speak` (text -> float32 (T,) at
    keys.AUDIO_SAMPLE_RATE) gives the policy the instruction spoken too, `typed=False` only spoken (SpokenRobot)."""
    from genba.sim.arm import SimArm

    return run_episode(episode_robot(SimArm(env), seed, reset_options, speak, typed), policy, **options)


def episode_robot(
    arm: Any, seed: int, reset_options: dict | None, speak: Callable[[str], np.ndarray] | None, typed: bool
) -> Robot:
    """A SimArm reset to `seed`, spoken to when `speak` is given: the robot `rollout` drives."""
    arm.reset(seed, reset_options)
    return arm if speak is None else SpokenRobot(arm, speak, typed=typed)


class SpokenRobot:
    """A robot whose observations also carry its instruction spoken: `observation.audio` (T,) float32 from
    `speak(text)`, synthesized when the instruction changes, and `observation.audio_sample_rate`. typed=False
    withholds the typed instruction (`task`) from the policy; `episode_info()` still names it."""

    def __init__(
        self,
        robot: Robot,
        speak: Callable[[str], np.ndarray],
        typed: bool = True,
        sample_rate: int = keys.AUDIO_SAMPLE_RATE,
    ) -> None:
        self.robot, self.speak, self.typed, self.sample_rate = robot, speak, typed, sample_rate
        self.fps = robot.fps
        self.text: str | None = None
        self.wave = np.zeros(0, np.float32)

    def observe(self) -> dict[str, Any]:
        raw = dict(self.robot.observe())
        text = str(raw.get(keys.TASK, ""))
        if text != self.text:
            self.text, self.wave = text, np.asarray(self.speak(text), np.float32)
        raw[keys.OBS_AUDIO], raw[keys.OBS_AUDIO_RATE] = self.wave, self.sample_rate
        if not self.typed:
            raw.pop(keys.TASK, None)
        return raw

    def send(self, action: np.ndarray) -> None:
        self.robot.send(action)

    @property
    def done(self) -> bool:
        return self.robot.done

    def episode_info(self) -> dict:
        info = dict(getattr(self.robot, "episode_info", dict)())
        return {**info, keys.TASK: self.text or ""}


def _policy_input(raw: dict[str, Any], spec: Any) -> dict[str, Any]:
    """The observation cut to the policy's input spec and checked against it (the server's own check); a waveform's
    sample rate goes with it when the spec declares one (the spec checks it and drops it)."""
    rated = any(f.sample_rate for f in spec.features.values())
    obs = {k: v for k, v in raw.items() if k in spec.features or (rated and k == keys.OBS_AUDIO_RATE)}
    try:
        out = spec.validate(obs)
    except SpecError as e:
        raise GenbaError(
            f"the robot's observation does not fit the policy: {e} (robot gives: {', '.join(raw)})"
        ) from None
    if rated and keys.OBS_AUDIO in out:  # checked; it travels on with the waveform (a served policy's server needs it)
        out[keys.OBS_AUDIO_RATE] = int(obs[keys.OBS_AUDIO_RATE])
    return out
