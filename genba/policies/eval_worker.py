"""What each `genba eval` process runs: (run, episode indices, seeds) jobs through the one episode loop; a job of
several seeds (env=worldmodel, `batch=`) steps its episodes together (genba.worldmodel.batched), each episode with
its own policy instance.

A spawned worker (or the evaluating process itself, when workers=1) keeps what it built: the policy of each run,
wrapped to time its `infer` calls, and an env per set of env options, built on first use so that a failure is an
episode's error, reported as one line naming the seed. Each episode seeds Python's, NumPy's and torch's generators
from its own seed, so an outcome depends on the seed alone, never on which episodes the process ran before.
Each process runs torch with the evaluation's `threads` (worker_threads: `threads=`, else OMP_NUM_THREADS, else the
cores divided among the workers), set when torch is loaded and, in a spawned worker, as its OMP_NUM_THREADS for what
loads torch (or OpenMP) later; each episode records the count torch ran it with (`torch_threads`).
A run whose instruction modality is `audio` or `both` hears each episode's instruction (as given: shuffled ones too)
spoken by the evaluation's voice for the episode's language (genba.speech), with its noise mixed in at its SNR, seeded
by the episode's seed (espeak-ng alone is not bit-exact from call to call; genba.speech.espeak).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genba import keys
from genba.errors import GenbaError
from genba.policies.rollout import rollout, seed_everything

_STATE: dict[str, Any] = {}  # this process's: the evaluation's setup, the policies and envs built from it
_KEPT: dict[int, Any] | None = None  # inside kept_pool(): worker count -> its process pool, reused


def worker_threads(threads: int, workers: int) -> int:
    """Torch CPU threads of each of `workers` evaluation processes: `threads` when > 0; else OMP_NUM_THREADS when it
    is set (the share of a busy CPU the caller gave: each worker inherits it); else the cores divided among them."""
    if threads > 0:
        return threads
    given = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()  # OpenMP's "4,2": the outer level's
    if given:
        if not given.isdigit() or int(given) < 1:
            raise GenbaError(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']!r} is not a thread count >= 1: fix "
                             "it, unset it, or give threads=")  # fmt: skip
        return int(given)
    return max(1, (os.cpu_count() or 1) // workers)


def setup(config: dict, policies: dict | None = None) -> None:
    """Start a process on the evaluation described by `config` (policies: ones already built, by name); torch, when
    loaded, runs with its `threads` until teardown()."""
    _STATE.clear()
    _STATE.update(setup=config, policies={k: [_Timed(p)] for k, p in (policies or {}).items()}, envs={})
    if "torch" in sys.modules:
        _STATE["threads_before"] = sys.modules["torch"].get_num_threads()
    _use_threads()


def teardown() -> None:
    """Close the envs this process built; torch's thread count back to what it was before setup()."""
    for env in _STATE.get("envs", {}).values():
        env.close()
    if "threads_before" in _STATE:
        sys.modules["torch"].set_num_threads(_STATE["threads_before"])
    _STATE.clear()


def _use_threads() -> None:
    """Torch (once loaded) on the evaluation's threads: N workers share the cores, no oversubscription."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(_STATE["setup"]["threads"])


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


def _policies(run: dict, n: int) -> list[_Timed]:
    """n instances of the run's policy (built on first need, kept): one per episode of a batch, since a policy may
    keep episode state (the scripted expert's plan)."""
    built = _STATE["policies"].setdefault(run["policy"], [])
    while len(built) < n:
        from genba.policies.registry import policy_factory

        built.append(_Timed(policy_factory(run["policy"], **run["factory"])()))
        _use_threads()  # a policy that loaded torch (or set its own threads) runs on the evaluation's
    return built[:n]


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


def run_job(job: tuple[int, tuple[int, ...], tuple[int, ...]]) -> list[dict]:
    """Run one (run, episode indices, seeds): one episode through `rollout`, or several stepped together in the world
    model (genba.worldmodel.batched); any failure comes back as one GenbaError line naming the seed."""
    from genba.io import one_line

    r, indices, seeds = job
    run = _STATE["setup"]["runs"][r]
    index, seed = indices[0], seeds[0]
    try:
        if len(seeds) == 1:
            return [_run_episode(run, r, index, seed)]
        return _run_batch(run, r, indices, seeds)
    except Exception as e:
        from genba.worldmodel.batched import EpisodeError

        if isinstance(e, EpisodeError):
            e, index, seed = e.cause, indices[e.index], e.seed
        what = one_line(e) if isinstance(e, GenbaError) else f"{type(e).__name__}: {one_line(e)}"
        raise GenbaError(f"{run['policy']} on seed {seed} (episode {index}): {what}") from None


def _run_episode(run: dict, r: int, index: int, seed: int) -> dict:
    import time

    from genba.policies.spoken_eval import speaker

    setup = _STATE["setup"]
    policy, env = _policies(run, 1)[0], _env(run)
    seed_everything(seed)
    policy.ms.clear()
    started = time.perf_counter()
    modality = run.get("modality", "text")
    heard: dict = {}
    speak = speaker(setup["speech"], env, seed, heard) if modality != "text" else None
    episode = rollout(env, policy, seed, reset_options={"instruction": run["instruction"]}, speak=speak,
                      typed=modality != "audio", n_action_steps=setup["n_action_steps"], blend=setup["blend"],
                      record=_recorded(r, index))  # fmt: skip
    seconds = round(time.perf_counter() - started, 4)  # the reset included: what the backend costs per episode
    return _result(run, index, episode, env, policy, heard, seconds)


def _run_batch(run: dict, r: int, indices: tuple[int, ...], seeds: tuple[int, ...]) -> list[dict]:
    """The seeds' episodes stepped together in the world model, each with its own policy instance; each episode's
    `episode_seconds` is its share of the batch's wall clock (resets included)."""
    import time

    from genba.policies.spoken_eval import speaker
    from genba.worldmodel.batched import Job, run_batch

    setup = _STATE["setup"]
    policies, env = _policies(run, len(seeds)), _env(run)
    modality = run.get("modality", "text")
    heard: list[dict] = [{} for _ in seeds]

    def spoken(seed: int, into: dict) -> Any:
        return lambda episode_env: speaker(setup["speech"], episode_env, seed, into)

    jobs = []
    for k, (index, seed) in enumerate(zip(indices, seeds, strict=True)):
        policies[k].ms.clear()
        jobs.append(Job(seed, policies[k], reset_options={"instruction": run["instruction"]},
                        speaker=spoken(seed, heard[k]) if modality != "text" else None, typed=modality != "audio",
                        record=_recorded(r, index)))  # fmt: skip
    started = time.perf_counter()
    done = run_batch(env, jobs, n_action_steps=setup["n_action_steps"], blend=setup["blend"])
    seconds = round((time.perf_counter() - started) / len(seeds), 4)
    return [_result(run, index, episode, episode_env, policies[k], heard[k], seconds)
            for k, (index, (episode, episode_env)) in enumerate(zip(indices, done, strict=True))]  # fmt: skip


def _recorded(r: int, index: int) -> bool:
    return r == 0 and index in _STATE["setup"]["rrd_episodes"]


def _result(run: dict, index: int, episode: Any, env: Any, policy: _Timed, heard: dict, seconds: float) -> dict:
    """What the evaluator keeps of one episode (and its Rerun recording when it is one of rrd_episodes)."""
    spec = env.unwrapped.episode_spec()
    result = {**episode.summary(), "lang": spec["lang"], "latency_ms": list(policy.ms), "episode_seconds": seconds}
    result["torch_threads"] = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    result.update(heard)
    if run["instruction"] == "shuffled":
        result["original_instruction"] = spec["original_instruction"]
        result["instruction_names"] = spec["instruction_names"]
    if episode.frames is not None:
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


def run_all(workers: int, batch: int, task: str, setup_: dict, seeds: list[int], built: dict) -> list[list[dict]]:
    """Every (run, seed) episode, in `workers` processes (this one when 1, with the policies already `built`), in
    jobs of `batch` consecutive seeds per run; results[run][i] is seed i's."""
    from tqdm import tqdm

    chunks = [range(lo, min(lo + batch, len(seeds))) for lo in range(0, len(seeds), batch)]
    jobs = [(r, tuple(c), tuple(seeds[i] for i in c)) for c in chunks for r in range(len(setup_["runs"]))]
    results: list[list[dict | None]] = [[None] * len(seeds) for _ in setup_["runs"]]
    bar = tqdm(total=len(seeds) * len(setup_["runs"]), desc=f"eval {task}", unit="ep", file=sys.stderr)
    wins = 0

    def done(job: tuple, finished: list[dict]) -> None:
        nonlocal wins
        for i, result in zip(job[1], finished, strict=True):
            results[job[0]][i] = result
        if job[0] == 0:
            wins += sum(bool(result["success"]) for result in finished)
            bar.set_postfix(success=f"{wins}/{sum(r is not None for r in results[0])}")
        bar.update(len(finished))

    try:
        if workers == 1:
            setup(setup_, built)
            try:
                for job in jobs:
                    done(job, run_job(job))
            finally:
                teardown()
        else:
            run_pool(workers, setup_, jobs, done)
    finally:
        bar.close()
    return results  # type: ignore[return-value]


@contextlib.contextmanager
def kept_pool() -> Iterator[None]:
    """Evaluations run inside share their worker processes, spawned once (each pays for importing torch and the
    model's modules once, not once per evaluation): eval-ranking's 2 x policies evaluations."""
    global _KEPT
    outer, _KEPT = _KEPT, {}
    try:
        yield
    finally:
        pools, _KEPT = _KEPT, outer
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)


def _run_configured(config: dict, job: tuple) -> list[dict]:
    """A job of the evaluation `config`, in a worker that may have run another evaluation's jobs before."""
    if _STATE.get("setup", {}).get("token") != config["token"]:
        teardown()
        os.environ["OMP_NUM_THREADS"] = str(config["threads"])  # this worker's: for what loads torch/OpenMP later
        setup(config)
    return run_job(job)


def run_pool(workers: int, config: dict, jobs: list, done: Any) -> None:
    """Run `jobs` in `workers` spawned processes (kept ones inside `kept_pool`), calling done(job, result) as each
    finishes (in the caller)."""
    import multiprocessing
    import uuid
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from genba.io import one_line

    config = {**config, "token": uuid.uuid4().hex}  # which evaluation a job belongs to
    pool = _KEPT.get(workers) if _KEPT is not None else None
    if pool is None:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))  # no forked MuJoCo/EGL
        if _KEPT is not None:
            _KEPT[workers] = pool
    failed = True
    try:
        pending = {pool.submit(_run_configured, config, job): job for job in jobs}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in sorted(finished, key=lambda f: pending[f]):
                job = pending.pop(future)
                try:
                    done(job, future.result())
                except BrokenProcessPool as e:
                    raise GenbaError(f"a worker process died while running seed {job[2][0]} or another of its seeds "
                                     f"({one_line(e)})") from None  # fmt: skip
        failed = False
    finally:
        if failed or _KEPT is None:  # a failed evaluation leaves no half-run jobs in a kept pool
            if _KEPT is not None:
                _KEPT.pop(workers, None)
            pool.shutdown(wait=True, cancel_futures=True)
