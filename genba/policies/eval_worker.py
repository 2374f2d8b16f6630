"""What each `genba eval` process runs: (run, episode index, seed) jobs through the one episode loop.

A spawned worker (or the evaluating process itself, when workers=1) keeps what it built: the policy of each run,
wrapped to time its `infer` calls, and an env per set of env options, built on first use so that a failure is an
episode's error, reported as one line naming the seed. Each episode seeds Python's, NumPy's and torch's generators
from its own seed, so an outcome depends on the seed alone, never on which episodes the process ran before.
A run whose instruction modality is `audio` or `both` hears each episode's instruction (as given: shuffled ones too)
spoken by the evaluation's voice for the episode's language (genba.speech), with its noise mixed in at its SNR, seeded
by the episode's seed (espeak-ng alone is not bit-exact from call to call; genba.speech.espeak).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from genba import keys
from genba.errors import GenbaError
from genba.policies.rollout import rollout, seed_everything

_STATE: dict[str, Any] = {}  # this process's: the evaluation's setup, the policies and envs built from it


def setup(config: dict, policies: dict | None = None) -> None:
    """Start a process on the evaluation described by `config` (policies: ones already built, by name)."""
    _STATE.clear()
    _STATE.update(setup=config, policies={k: _Timed(p) for k, p in (policies or {}).items()}, envs={})


def teardown() -> None:
    """Close the envs this process built."""
    for env in _STATE.get("envs", {}).values():
        env.close()
    _STATE.clear()


class _Timed:
    """A policy whose `infer` calls are timed (milliseconds, wall clock); everything else is the policy's."""

    def __init__(self, policy: Any) -> None:
        self.policy, self.ms = policy, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)

    @property
    def input_spec(self) -> Any:
        return self.policy.input_spec

    @property
    def action_spec(self) -> Any:
        return self.policy.action_spec

    def reset(self) -> None:
        self.policy.reset()

    def infer(self, obs: dict[str, Any]) -> dict:
        import time

        start = time.perf_counter()
        result = self.policy.infer(obs)
        self.ms.append((time.perf_counter() - start) * 1000.0)  # a call that produced a chunk (failures: `errors`)
        return result


def _policy(run: dict) -> _Timed:
    policies = _STATE["policies"]
    if run["policy"] not in policies:
        from genba.policies.registry import policy_factory

        policies[run["policy"]] = _Timed(policy_factory(run["policy"], **run["factory"])())
        if "torch" in sys.modules:  # N workers share the cores: no oversubscription
            sys.modules["torch"].set_num_threads(_STATE["setup"]["threads"])
    return policies[run["policy"]]


def _env(run: dict) -> Any:
    """The run's env: MuJoCo's, or the world model's (genba.worldmodel.env) when the evaluation's backend says."""
    setup = _STATE["setup"]
    key = repr(sorted(run["env"].items()))
    envs = _STATE["envs"]
    if key not in envs:
        if setup.get("backend") == "worldmodel":
            from genba.worldmodel import make_env

            envs[key] = make_env(
                setup["task"], run=setup["worldmodel"], threads=setup["threads"], **run["env"], **setup.get("judge", {})
            )
        else:
            from genba.sim import make

            envs[key] = make(setup["task"], **run["env"])
    return envs[key]


def run_job(job: tuple[int, int, int]) -> dict:
    """Run one (run, episode index, seed); any failure comes back as one GenbaError line naming the seed."""
    from genba.io import one_line

    r, index, seed = job
    run = _STATE["setup"]["runs"][r]
    try:
        return _run_episode(run, r, index, seed)
    except Exception as e:
        what = one_line(e) if isinstance(e, GenbaError) else f"{type(e).__name__}: {one_line(e)}"
        raise GenbaError(f"{run['policy']} on seed {seed} (episode {index}): {what}") from None


def _run_episode(run: dict, r: int, index: int, seed: int) -> dict:
    import time

    from genba.policies.spoken_eval import speaker

    setup = _STATE["setup"]
    policy, env = _policy(run), _env(run)
    record = r == 0 and index in setup["rrd_episodes"]
    seed_everything(seed)
    policy.ms.clear()
    started = time.perf_counter()
    modality = run.get("modality", "text")
    heard: dict = {}
    speak = speaker(setup["speech"], env, seed, heard) if modality != "text" else None
    episode = rollout(env, policy, seed, reset_options={"instruction": run["instruction"]}, speak=speak,
                      typed=modality != "audio", n_action_steps=setup["n_action_steps"], blend=setup["blend"],
                      record=record)  # fmt: skip
    seconds = round(time.perf_counter() - started, 4)  # the reset included: what the backend costs per episode
    spec = env.unwrapped.episode_spec()
    result = {**episode.summary(), "lang": spec["lang"], "latency_ms": list(policy.ms), "episode_seconds": seconds}
    result.update(heard)
    if run["instruction"] == "shuffled":
        result["original_instruction"] = spec["original_instruction"]
        result["instruction_names"] = spec["instruction_names"]
    if record:
        result["rrd_part"] = _write_episode_rrd(episode, spec, env, index, run["name"])
    return result


def _write_episode_rrd(episode: Any, spec: dict, env: Any, index: int, policy: str) -> str:
    """The recorded episode as one Rerun recording in the run's scratch folder; returns its path."""
    from genba.viz.data import episode_from_steps
    from genba.viz.episode import VizConfig, write_recording

    frames = episode.frames
    images = {c: frames[keys.image_key(c)] for c in keys.CAMERAS if keys.image_key(c) in frames}
    depth = {c: frames[keys.depth_key(c)][..., 0] for c in keys.CAMERAS if keys.depth_key(c) in frames}
    observations = [
        {
            keys.PIXELS: {c: v[t] for c, v in images.items()},
            keys.DEPTH: {c: v[t] for c, v in depth.items()},
            keys.AGENT_POS: frames[keys.OBS_STATE][t],
            keys.ENV_STATE: frames[keys.OBS_ENV_STATE][t],
        }
        for t in range(episode.steps)
    ]
    meta = {"spec": spec, "success": episode.success, "seed": episode.seed}
    ep = episode_from_steps(observations, frames[keys.ACTION], fps=env.unwrapped.fps, instruction=episode.task,
                            meta=meta)  # fmt: skip
    ep.source, ep.index = f"eval {policy} seed {episode.seed}", index
    path = Path(_STATE["setup"]["rrd_dir"]) / f"{index}.rrd"
    write_recording(ep, path, VizConfig())
    return str(path)


def run_pool(workers: int, config: dict, jobs: list, done: Any) -> None:
    """Run `jobs` in `workers` spawned processes, calling done(job, result) as each finishes (in the caller)."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from genba.io import one_line

    context = multiprocessing.get_context("spawn")  # no forked MuJoCo/EGL/torch state
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=setup, initargs=(config,))
    try:
        pending = {pool.submit(run_job, job): job for job in jobs}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in sorted(finished, key=lambda f: pending[f]):
                job = pending.pop(future)
                try:
                    done(job, future.result())
                except BrokenProcessPool as e:
                    raise GenbaError(f"a worker process died while running seed {job[2]} or another of its seeds "
                                     f"({one_line(e)})") from None  # fmt: skip
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
