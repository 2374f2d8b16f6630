"""Where a shard of `genba collect` runs: a Ray task (executor=ray) or a local process (executor=local shards=N).

A shard is a contiguous range of expert attempts [start, stop), simulated and written by one process into its own
LeRobotDataset v3 through genba's crash-safe writer (genba/datasets/writer.py), resumable from its last committed
episode. genba/datasets/distributed.py plans the shards, runs them through a runner of this module and merges them
with lerobot's merge. Both runners have the same interface (`run(cfg, out, ranges, bar, committed)`, `abort()`,
`close()`) and the same failure rule: a shard whose process raised or died is retried SHARD_RETRIES times, then
reported as failed (its error kept) while the other shards are kept.

Local processes are how one machine encodes in several processes: with executor=local and one writer, lerobot's
per-frame work in that one process (frames, statistics, parquet, streaming video encoding) caps collection at about
1 / 9.5 ms = 107 frames/s whatever the core count (benchmarks/README.md); with `shards=N`, `workers` spawned
processes each simulate and write whole shards, as datatrove's LocalPipelineExecutor runs `tasks` in `workers`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genba.datasets.commit import read_commit
from genba.errors import GenbaError
from genba.io import one_line

SHARD_RETRIES = 2  # a shard whose process died or raised is rerun this many times before it counts as failed


# ----------------------------------------------------------------- one shard (in a Ray task or a local process)
def collect_attempts(cfg: Any, root: str | Path, start: int, stop: int, fail_at: int | None = None) -> dict:
    """Simulate expert attempts [start, stop) in this process and write the ones to keep into the dataset at `root`
    (resumable: a rerun continues after the last committed attempt). Returns the counts, `resumed_from`: the
    attempts already committed when it started (not simulated again), and `new_episodes` / `new_frames` written now.

    fail_at: fault injection for the tests, the attempt at which to raise instead of writing.
    """
    from genba.datasets.collect import _keep, _probe_env, _simulate, dataset_features
    from genba.datasets.writer import open_writer

    fps, env_state_dim = _probe_env(cfg)
    identity = {**cfg.identity(), "attempts": [start, stop]}
    writer = open_writer(root, fps, dataset_features(cfg, env_state_dim), identity, video=cfg.video())
    n, resumed_from, before = stop - start, writer.attempts, (writer.episodes, writer.frames)
    results = _simulate(cfg, first=start + writer.attempts, stop=lambda: (writer.attempts >= n, n - writer.attempts),
                        workers=1)  # fmt: skip
    try:
        for result in results:
            if result["attempt"] == fail_at:
                raise RuntimeError(f"injected failure at attempt {fail_at} (GENBA_FAIL_AT)")
            _keep(cfg, writer, result)
    finally:
        results.close()
        writer.close()
    counts = {k: getattr(writer, k) for k in ("episodes", "frames", "attempts", "successes")}
    new = {"new_episodes": writer.episodes - before[0], "new_frames": writer.frames - before[1]}
    return counts | new | {"resumed_from": resumed_from}


def collect_shard(job: dict) -> dict:
    """One shard: job "config" (CollectConfig fields), "start", "stop", "root", "fail_at" (test fault injection, or
    None). Returns the shard's counts and its seconds. A top-level function of plain data (Ray and spawn pickle it)."""
    from genba.datasets.collect import CollectConfig

    started = time.perf_counter()
    cfg = CollectConfig(**job["config"])
    start, stop = job["start"], job["stop"]
    counts = collect_attempts(cfg, job["root"], start, stop, fail_at=job.get("fail_at"))
    return {**counts, "start": start, "stop": stop, "seconds": round(time.perf_counter() - started, 3),
            "host": socket.gethostname()}  # fmt: skip


def _jobs(cfg: Any, out: Path, ranges: list[tuple[int, int]]) -> dict[tuple[int, int], dict]:
    from genba.datasets.distributed import shard_root

    config = {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}
    fail_at = os.environ.get("GENBA_FAIL_AT")  # fault injection for the tests: the attempt that raises
    return {(a, b): {"config": config, "start": a, "stop": b, "root": str(shard_root(out, a, b)),
                     "fail_at": int(fail_at) if fail_at else None} for a, b in ranges}  # fmt: skip


def _failed(a: int, b: int, error: BaseException) -> dict:
    return {"start": a, "stop": b, "status": "failed", "error": one_line(error), "episodes": 0, "frames": 0,
            "attempts": 0, "successes": 0}  # fmt: skip


def _show_progress(bar: Any, out: Path, committed: int, results: dict, running: list[tuple[int, int]]) -> None:
    """One bar over every shard: episodes committed so far, read from the shards' commit records."""
    from genba.datasets.distributed import shard_root

    in_flight = sum(_committed(shard_root(out, a, b)) for a, b in running)
    finished = sum(r["episodes"] for r in results.values() if r["status"] != "failed")
    bar.n = min(committed + finished + in_flight, bar.total)
    bar.refresh()


def _committed(root: Path) -> int:
    try:
        commit = read_commit(root) if root.is_dir() else None
    except GenbaError:
        return 0
    return commit["episodes"] if commit else 0


# ----------------------------------------------------------------- local processes
_KEPT: dict[int, Any] = {}  # workers -> the pool that keep_processes() keeps for the collect runs inside it


def _new_pool(workers: int) -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from genba.datasets.collect import _exit_with_parent

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))  # fmt: skip


@contextlib.contextmanager
def keep_processes(workers: int) -> Iterator[None]:
    """Keep the local shard processes alive across the collect runs inside (`genba bench collect`, a notebook), as a
    Ray instance keeps its workers: only the first run pays their start-up (importing lerobot, torch and MuJoCo,
    about 5 s of CPU per process). A `genba collect` command pays it once per run."""
    if workers in _KEPT:
        yield
        return
    _KEPT[workers] = _new_pool(workers)
    try:
        yield
    finally:
        pool = _KEPT.pop(workers, None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class ProcessRunner:
    """executor=local shards=N: shards run in `workers` spawned processes (created at the first shard, reused by
    later rounds; kept across runs inside keep_processes). A process that dies (killed, out of memory) breaks the
    pool: it is replaced and the shards it held are retried, each resuming from its last committed episode."""

    address = None

    def __init__(self, cfg: Any) -> None:
        self.workers = cfg.workers
        self._pool: Any = None

    def _get_pool(self) -> Any:
        if self._pool is None:
            self._pool = _KEPT.get(self.workers) or _new_pool(self.workers)
        return self._pool

    def _drop_pool(self, kill: bool = False) -> None:
        """Forget the pool (shut down unless keep_processes keeps it; a broken or killed one is never kept)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        kept = _KEPT.get(self.workers) is pool
        if kill:
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.kill()
        if kept and not kill:
            return
        if kept:
            del _KEPT[self.workers]
        pool.shutdown(wait=not kill, cancel_futures=True)

    def run(self, cfg: Any, out: Path, ranges: list[tuple[int, int]], bar: Any, committed: int) -> dict:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        jobs = _jobs(cfg, out, ranges)
        tries = dict.fromkeys(jobs, 0)
        running: dict[Any, tuple[tuple[int, int], Any]] = {}  # future -> (range, the pool it runs in)

        def submit(r: tuple[int, int]) -> None:
            tries[r] += 1
            pool = self._get_pool()
            running[pool.submit(collect_shard, jobs[r])] = (r, pool)

        for r in jobs:
            submit(r)
        results: dict[tuple[int, int], dict] = {}
        while running:
            done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                r, pool = running.pop(future)
                try:
                    results[r] = {**future.result(), "status": "ran"}
                except Exception as e:
                    if isinstance(e, BrokenProcessPool) and pool is self._pool:  # every shard in it fails so
                        self._drop_pool(kill=True)
                    if tries[r] <= SHARD_RETRIES:
                        submit(r)
                    else:
                        results[r] = _failed(*r, e)
            _show_progress(bar, out, committed, results, [r for r, _ in running.values()])
        return results

    def abort(self) -> None:
        """Stop now (Ctrl-C in the driver): the shard processes are killed; each shard keeps its committed
        episodes (the writer is crash-safe) and the next run resumes it."""
        self._drop_pool(kill=True)

    def close(self) -> None:
        self._drop_pool()


# ----------------------------------------------------------------- Ray
class RayRunner:
    """executor=ray: shards run as Ray tasks. Connects on first use (so a run with every shard done starts nothing)."""

    def __init__(self, cfg: Any) -> None:
        self.address = cfg.ray_address or "local"
        self._started_here = False
        self._connected = False

    def _connect(self, cfg: Any) -> None:
        try:
            import ray
        except ImportError:
            raise GenbaError("executor=ray needs the ray package (pip install 'ray>=2.60')") from None
        if ray.is_initialized():  # a caller (a test, a notebook) already chose the cluster
            self._connected = True
            return
        if cfg.ray_address:
            check_reachable(cfg.ray_address)
            try:
                ray.init(address=cfg.ray_address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                why = one_line(e)
                raise GenbaError(f"cannot connect to the Ray cluster at ray_address={cfg.ray_address}: {why}") from None
        else:
            ray.init(num_cpus=cfg.workers, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
            self._started_here = True
        self._connected = True

    def run(self, cfg: Any, out: Path, ranges: list[tuple[int, int]], bar: Any, committed: int) -> dict:
        if not ranges:
            return {}
        if not self._connected:
            self._connect(cfg)
        import ray
        from ray.exceptions import RayError, RayTaskError

        task = ray.remote(num_cpus=1, max_retries=SHARD_RETRIES, retry_exceptions=True)(collect_shard)
        refs = {task.remote(job): r for r, job in _jobs(cfg, out, ranges).items()}
        results: dict[tuple[int, int], dict] = {}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            for ref in ready:
                a, b = refs.pop(ref)
                try:
                    results[(a, b)] = {**ray.get(ref), "status": "ran"}
                except RayError as e:
                    cause = e.cause if isinstance(e, RayTaskError) and e.cause is not None else e
                    results[(a, b)] = _failed(a, b, cause)
            _show_progress(bar, out, committed, results, list(refs.values()))
        return results

    def abort(self) -> None:
        self.close()

    def close(self) -> None:
        if self._started_here:
            import ray

            ray.shutdown()
            self._started_here = False


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable head for minutes; a TCP connect says at once whether anything listens there."""
    if address == "auto":
        return  # ray.init resolves it (RAY_ADDRESS or this machine's `ray start`) and fails at once when absent
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise GenbaError(f"ray_address={address} is not auto, host:port or ray://host:port")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        why = e.strerror or one_line(e)
        raise GenbaError(f"cannot reach the Ray cluster at ray_address={address}: {why}") from None
