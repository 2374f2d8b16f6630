"""Batched imagination: many episodes in one world-model env stepped together, one `imagine_step` per control step
on a (B, ...) batch instead of B calls on batches of one (the tiny model's per-call overhead dominates on a CPU).

    from genba.worldmodel import make_env
    from genba.worldmodel.batched import Job, run_batch

    env = make_env("reach", run="runs/wm-reach", cameras=["front", "wrist"])
    done = run_batch(env, [Job(seed=1_000_000 + i, policy=make_policy()) for i in range(25)])
    [(episode.success, episode.steps) for episode, _ in done]       # genba.policies.rollout.Episode each

Each episode is what `rollout(env, policy, seed)` gives on its own, within float tolerance:

- its own env: a shallow copy of `env` (the model and the MuJoCo env for resets shared), reset from the MuJoCo reset
  of its seed through a SimArm (`WorldModelEnv.reset`: the first frame encoded at batch one, as unbatched);
- its own policy instance and the one episode loop (`genba.policies.rollout.episode_loop`), which pauses after each
  `send`; the arm holds the action until every running episode has sent one, then a single `imagine_step` on the
  running rows advances them all and each arm takes its row (`WorldModelEnv.stepped`: observation, success rule,
  time limit), and the loops go on;
- its own random numbers: Python's, NumPy's and torch's global generators are seeded from its seed before its reset
  (as `genba eval`'s workers do) and swapped in around each of its steps, so a policy that draws from them (the noisy
  scripted expert at reset, a sampler) draws what it would alone. Only the CPU generators are swapped;
- an episode that ends (success or time limit) leaves the batch: its rows are dropped from the dream's KV caches and
  tensors, its outcome and length fixed at the step it ended.

A stateful policy (the scripted expert plans its episode) needs one instance per episode, so the policies are not
batched: each episode calls its own `infer`; at the tiny presets the world model's step is the cost. The batch
shares one frame index (every episode starts at frame 0 and steps together), which the KV caches and rotary
positions need. Differences from the unbatched env are float rounding of batched matrix products (a success
probability within ~1e-6 of the threshold can flip).
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from genba.errors import GenbaError
from genba.policies.rollout import Episode, episode_loop, episode_robot, seed_everything
from genba.sim.arm import SimArm

__all__ = ["EpisodeError", "Job", "merge_dreams", "run_batch", "select_dream"]


@dataclass
class Job:
    """One episode of a batch: its seed and policy instance, the reset options, an optional speaker (the episode's
    env -> text -> (T,) float32 speech, genba.policies.spoken_eval.speaker) and whether to record its frames."""

    seed: int
    policy: Any
    reset_options: dict | None = None
    speaker: Callable[[Any], Callable[[str], np.ndarray]] | None = None
    typed: bool = True
    record: bool = False


class EpisodeError(Exception):
    """An episode of a batch failed: `index` (its job) and `seed`; the cause is chained."""

    def __init__(self, index: int, seed: int, cause: BaseException) -> None:
        super().__init__(f"seed {seed}: {cause}")
        self.index, self.seed, self.cause = index, seed, cause


class _HeldArm(SimArm):
    """A SimArm whose `send` holds the action (checked and clipped: (A,) float32) for the batched step."""

    pending: np.ndarray | None = None

    def send(self, action: np.ndarray) -> None:
        self.pending = self.env.model_action(action)


def run_batch(env: Any, jobs: list[Job], *, n_action_steps: int | None = None, blend: int = 0) -> list[tuple]:
    """Run every job's episode in `env` (a WorldModelEnv) together; returns [(Episode, the episode's env)] in job
    order. A failure in an episode raises EpisodeError naming it."""
    import torch

    base = env.unwrapped
    arms = [_HeldArm(copy.copy(base)) for _ in jobs]
    loops: list[Generator[None, None, Episode] | None] = []
    rng: list[tuple] = []
    done: list[Episode | None] = [None] * len(jobs)
    for i, job in enumerate(jobs):
        seed_everything(job.seed)
        try:
            speak = job.speaker(arms[i].env) if job.speaker is not None else None
            robot = episode_robot(arms[i], job.seed, job.reset_options, speak, job.typed)
        except Exception as e:
            raise EpisodeError(i, job.seed, e) from e
        loops.append(episode_loop(robot, job.policy, n_action_steps=n_action_steps, blend=blend, record=job.record))
        _advance(i, job, loops, done)
        rng.append(_rng_state())
    active = [i for i in range(len(jobs)) if done[i] is None]
    dream = merge_dreams([arms[i].env._dream for i in active]) if active else None
    while active:
        actions = torch.from_numpy(np.stack([arms[i].pending for i in active]))  # (B, A)
        out = base.model.imagine_step(dream, actions)
        for row, i in enumerate(active):
            arms[i].took(arms[i].env.stepped(out, row))
            _set_rng(rng[i])
            _advance(i, jobs[i], loops, done)
            rng[i] = _rng_state()
        keep = [row for row, i in enumerate(active) if done[i] is None]
        if len(keep) < len(active):
            active = [active[row] for row in keep]
            dream = select_dream(dream, keep) if active else None
    for arm in arms:
        arm.env._dream = None  # the batch's caches, not the row's: no stepping a finished copy alone
    return [(episode, arm.env) for episode, arm in zip(done, arms, strict=True)]


def _advance(i: int, job: Job, loops: list, done: list) -> None:
    """Resume episode i's loop to its next send, or to its end (its Episode into done[i])."""
    try:
        next(loops[i])
    except StopIteration as end:
        done[i], loops[i] = end.value, None
    except Exception as e:
        raise EpisodeError(i, job.seed, e) from e


def _rng_state() -> tuple:
    import torch

    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _set_rng(state: tuple) -> None:
    import torch

    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


# ---- dreams of several episodes as one batch ---------------------------------------------------------------------


def merge_dreams(dreams: list[Any]) -> Any:
    """Dreams (genba.worldmodel.model.Dream) at the same frame -> one whose batch is theirs in order (B = sum)."""
    import torch

    from genba.kernels.decode import FrameKVCache

    frames = {d.frame for d in dreams}
    if len(frames) != 1:
        raise GenbaError(f"dreams at frames {sorted(frames)} cannot step together: a batch shares one frame index")
    caches = []
    for level in zip(*(d.caches for d in dreams), strict=True):  # one block's cache of every dream
        cache = FrameKVCache(level[0].tokens_per_frame, level[0].frame_window)
        if level[0].k is not None:
            cache.k, cache.v = torch.cat([c.k for c in level]), torch.cat([c.v for c in level])  # (B, H, L, D)
        cache.frames_seen = level[0].frames_seen
        caches.append(cache)
    return _rebuild(dreams[0], caches, lambda name: _cat([getattr(d, name) for d in dreams]))


def select_dream(dream: Any, rows: list[int]) -> Any:
    """The dream's batch rows `rows` (the episodes still running), caches included."""
    import torch

    from genba.kernels.decode import FrameKVCache

    index = torch.tensor(rows, dtype=torch.long, device=dream.s.device)
    caches = []
    for old in dream.caches:
        cache = FrameKVCache(old.tokens_per_frame, old.frame_window)
        if old.k is not None:
            cache.k, cache.v = old.k.index_select(0, index), old.v.index_select(0, index)
        cache.frames_seen = old.frames_seen
        caches.append(cache)

    def pick(name: str) -> Any:
        value = getattr(dream, name)
        return None if value is None else value.index_select(0, index)

    return _rebuild(dream, caches, pick)


def _rebuild(like: Any, caches: list, tensor: Callable[[str], Any]) -> Any:
    """A Dream of `like`'s type and frame with these caches and each tensor field from `tensor(name)`."""
    fields = {f.name: tensor(f.name) for f in dataclasses.fields(like) if f.name not in ("caches", "frame")}
    return type(like)(caches=caches, frame=like.frame, **fields)


def _cat(values: list) -> Any:
    import torch

    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise GenbaError("dreams differ in which tensors they hold (ViT tokens pending in some only)")
    return torch.cat(values)
