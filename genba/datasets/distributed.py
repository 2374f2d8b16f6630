"""Sharded `genba collect`: episodes simulated and written in seed-disjoint shards, by Ray tasks (executor=ray) or by
local processes (executor=local shards=N), merged by LeRobot's own merge (lerobot.datasets.aggregate.
aggregate_datasets, what `lerobot-edit-dataset --operation.type=merge` runs).

    genba collect task=pick_place episodes=1000 out=data/pp workers=2 shards=2                     # local processes
    genba collect task=pick_place episodes=1000 out=data/pp executor=ray shards=16                 # local Ray
    genba collect task=pick_place episodes=1000 out=/shared/pp executor=ray shards=64 ray_address=auto   # a cluster

Shards. Expert attempt j has seed `seed + j`, as with executor=local. A shard is a contiguous range of attempts
[start, stop): one process (a Ray task of one CPU, or one of `workers` local processes: genba/datasets/shards.py)
simulates it and writes it with genba's crash-safe writer
(genba/datasets/writer.py) into its own LeRobotDataset v3, `<out's parent>/.<out's name>.genba-shards/
attempts-<start>-<stop>/`, keeping the same episodes that executor=local would keep from those attempts. So that
the result is the local one episode for episode, attempts are planned in rounds: a round covers as many new attempts
as episodes are still missing (at most one episode per attempt, so never more than asked), split into `shards`
ranges; with keep_failed=false and a failed attempt, the next round covers the shortfall. The merged dataset then
holds the successful attempts in attempt order, stopping at the same attempt as a local run (and, like it, giving up
after 10 x episodes + 10 attempts). The plan is `plan.json` in the shard folder.

Rerun. A shard is done when its commit record counts all its attempts; running the same command again after a lost
task, a failed shard or a killed driver reruns only the shards that are not done (a half-written one resumes from
its last committed episode), then merges. A shard that still fails after its retries is reported in the summary
(`failed_shards`: its attempts, seeds and error) and on stderr; the other shards are kept and nothing is merged.

Merge. The shards (after the existing dataset at `out`, when a run extends one) are merged by lerobot's
aggregate_datasets into `.<name>.genba-merging`, genba's per-episode metadata and a checkpointed commit record are
written beside it (so the merged folder is an ordinary genba dataset: `genba collect` can extend it with any
executor), and it is renamed into place; the shard folder is then deleted. Datasets with other fps, robot type or
features are refused with one line naming the difference, before lerobot is called.

Local processes. With executor=local and shards > 1, `workers` spawned processes each simulate and write whole
shards, so the video encoding and lerobot's per-frame bookkeeping run in several processes instead of one writer's.

Cluster. With `ray_address` empty, a local Ray instance with `workers` CPUs is started on loopback (and stopped at
the end); `auto` joins the cluster `ray start` runs on this machine (or RAY_ADDRESS); `host:port` joins that one.
Shards are written to and merged from the file system, so on several machines `out` must be on a file system every
node mounts at the same path (NFS, a cluster file system), and every node needs genba installed and MUJOCO_GL set.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import shutil
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genba.datasets.commit import EPISODES_FILE, read_commit, write_commit
from genba.datasets.shards import ProcessRunner, RayRunner
from genba.errors import GenbaError
from genba.io import atomic_write, dumps, one_line

PLAN_FILE = "plan.json"


def shard_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.genba-shards"


def shard_root(out: Path, start: int, stop: int) -> Path:
    return shard_dir(out) / f"attempts-{start:07d}-{stop:07d}"


def split_range(start: int, stop: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) as min(parts, stop - start) contiguous ranges whose sizes differ by at most one."""
    n = stop - start
    parts = max(1, min(parts, n))
    bounds = [start + (n * k) // parts for k in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def shard_done(root: Path, start: int, stop: int) -> dict | None:
    """The shard's commit record when it holds all its attempts, checkpointed (lerobot's files finalized), else None.
    A shard process killed after its last commit point but before its checkpoint is not done: its rerun replays the
    write-ahead log into lerobot's files without simulating anything again."""
    try:
        commit = read_commit(root) if root.is_dir() else None
    except GenbaError:
        return None
    if commit is None or commit["attempts"] < stop - start:
        return None
    return commit if commit["checkpoint"]["episodes"] == commit["episodes"] else None


# ----------------------------------------------------------------- the driver
def run_distributed(cfg: Any, fps: int, features: dict[str, dict]) -> dict:
    """executor=ray: plan, run and merge the shards; the summary of `genba collect`."""
    from tqdm import tqdm

    from genba.datasets.writer import open_writer

    started = time.perf_counter()
    out = Path(cfg.out)
    _finish_interrupted_swap(out)
    base = None
    if out.exists():  # extend a dataset (local or merged); recovered to its last commit and locked meanwhile
        try:
            base = open_writer(out, fps, features, cfg.identity(), video=cfg.video())
        except OSError as e:
            why = e.strerror or one_line(e)
            raise GenbaError(f"cannot write the dataset at out={out}: {why} ({e.filename})") from None
    try:
        base_eps, base_attempts = (base.episodes, base.attempts) if base else (0, 0)
        base_frames, base_successes = (base.frames, base.successes) if base else (0, 0)
        max_attempts = cfg.episodes if cfg.keep_failed else 10 * cfg.episodes + 10
        plan = _load_plan(out, cfg, base_attempts)
        shards: dict[tuple[int, int], dict] = {}
        where = "ray" if cfg.executor == "ray" else f"{cfg.shards} shards"
        bar = tqdm(total=cfg.episodes, initial=min(base_eps, cfg.episodes), desc=f"collect {cfg.task} ({where})",
                   unit="ep", file=sys.stderr)  # fmt: skip
        runner = RayRunner(cfg) if cfg.executor == "ray" else ProcessRunner(cfg)
        try:
            while True:
                todo = [(a, b) for rnd in plan["rounds"] for a, b in rnd if (a, b) not in shards]
                for a, b in todo:
                    done = shard_done(shard_root(out, a, b), a, b)
                    if done is not None:
                        shards[(a, b)] = {**_counts(done), "start": a, "stop": b, "status": "reused"}
                run = [(a, b) for a, b in todo if (a, b) not in shards]
                shards.update(runner.run(cfg, out, run, bar, base_eps + _episodes(shards)))
                if any(s["status"] == "failed" for s in shards.values()):
                    break
                attempts = base_attempts + sum(b - a for a, b in shards)
                missing = cfg.episodes - base_eps - _episodes(shards)
                if missing <= 0 or attempts >= max_attempts:
                    break
                new = split_range(attempts, attempts + min(missing, max_attempts - attempts), cfg.shards)
                plan["rounds"].append([list(r) for r in new])
                _save_plan(out, plan)
        except BaseException:
            runner.abort()  # Ctrl-C or an error: stop the shards now (each keeps its committed episodes)
            raise
        finally:
            runner.close()
            bar.close()
        failed = [s for s in shards.values() if s["status"] == "failed"]
        collect_s = time.perf_counter() - started
        merge_s = 0.0
        if not failed and shards:
            merge_started = time.perf_counter()
            commit = _merged_commit(cfg, fps, features, base, shards)
            new = [shard_root(out, a, b) for a, b in sorted(shards) if shards[(a, b)]["episodes"]]
            if not new:  # no episode to add (every attempt failed): only the attempts are counted
                base = base or open_writer(out, fps, features, cfg.identity(), video=cfg.video())
                base.commit.update(attempts=commit["attempts"], successes=commit["successes"])
                write_commit(out, base.commit)
            else:
                if base is not None:
                    base.close()  # the lock: the merge replaces the folder
                    base = None
                merge_into(([out] if base_eps else []) + new, out, commit)
            shutil.rmtree(shard_dir(out), ignore_errors=True)
            merge_s = time.perf_counter() - merge_started
    finally:
        if base is not None:
            base.close()
    failed = [_public(s, cfg.seed) for s in failed]
    for s in failed:
        print(f"genba collect: error: shard of attempts {s['start']}..{s['stop'] - 1} (seeds {s['seeds'][0]}.."
              f"{s['seeds'][1]}) failed: {s['error']}; the other shards are kept in {shard_dir(out)}: rerun the "
              "same command to redo only the missing ones", file=sys.stderr)  # fmt: skip
    seconds = time.perf_counter() - started
    new_eps = _episodes(shards)
    new_frames = sum(s["frames"] for s in shards.values())
    # the rate of this run: shards done before, and what a resumed shard had committed before, excluded
    ran = [s for s in shards.values() if s["status"] == "ran"]
    commit = read_commit(out) if out.is_dir() and not failed else None
    episodes = commit["episodes"] if commit else base_eps + new_eps
    attempts = commit["attempts"] if commit else base_attempts + sum(b - a for a, b in shards)
    successes = commit["successes"] if commit else base_successes + sum(s["successes"] for s in shards.values())
    if not failed and episodes < cfg.episodes:
        print(
            f"genba collect: warning: gave up after {attempts} attempts with {episodes} successful episodes of "
            f"{cfg.episodes} (keep_failed=false); the dataset is valid and can be extended",
            file=sys.stderr,
        )
    return {
        "episodes": episodes,
        "frames": commit["frames"] if commit else base_frames + new_frames,
        "expert_success_rate": round(successes / attempts, 4) if attempts else None,
        "seconds": round(seconds, 3),
        "frames_per_s": round(sum(s["new_frames"] for s in ran) / seconds, 2),
        "episodes_per_s": round(sum(s["new_episodes"] for s in ran) / seconds, 3),
        "dataset": str(out) if not failed else None,
        "complete": not failed,
        "new_episodes": new_eps,
        "new_frames": new_frames,
        "resumed_from_episode": base_eps,
        "attempts": attempts,
        "fps": fps,
        "executor": cfg.executor,
        "workers": cfg.workers,
        **({"ray_address": runner.address} if cfg.executor == "ray" else {}),
        "collect_seconds": round(collect_s, 3),
        "merge_seconds": round(merge_s, 3),
        "shards": [_public(shards[k], cfg.seed) for k in sorted(shards)],
        "failed_shards": failed,
    }


def _counts(commit: dict) -> dict:
    return {k: commit[k] for k in ("episodes", "frames", "attempts", "successes")}


def _episodes(shards: dict) -> int:
    return sum(s["episodes"] for s in shards.values() if s["status"] != "failed")


def _public(shard: dict, seed: int) -> dict:
    s = {**shard, "seeds": [seed + shard["start"], seed + shard["stop"] - 1]}
    s.setdefault("seconds", 0.0)
    return s


# ----------------------------------------------------------------- the plan
def _load_plan(out: Path, cfg: Any, base_attempts: int) -> dict:
    """The shard plan of this run: the saved one when it was made for the same content and starting point."""
    want = {"identity": json.loads(dumps(cfg.identity(), indent=None)), "base_attempts": base_attempts,
            "episodes": cfg.episodes, "shards": cfg.shards}  # fmt: skip
    path = shard_dir(out) / PLAN_FILE
    if path.is_file():
        try:
            plan = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            plan = {}
        if {k: plan.get(k) for k in want} == want:
            return plan
        shutil.rmtree(shard_dir(out))  # genba's own hidden folder, made for other options: its shards do not fit
    max_attempts = cfg.episodes if cfg.keep_failed else 10 * cfg.episodes + 10
    missing = cfg.episodes - (read_commit(out)["episodes"] if read_commit(out) else 0)
    plan = {**want, "rounds": []}
    if missing > 0 and base_attempts < max_attempts:
        first = split_range(base_attempts, base_attempts + min(missing, max_attempts - base_attempts), cfg.shards)
        plan["rounds"].append([list(r) for r in first])
    _save_plan(out, plan)
    return plan


def _save_plan(out: Path, plan: dict) -> None:
    shard_dir(out).mkdir(parents=True, exist_ok=True)
    atomic_write(shard_dir(out) / PLAN_FILE, dumps(plan, indent=1))


# ----------------------------------------------------------------- the merge
def check_mergeable(roots: list[Path]) -> None:
    """One line naming the first difference that LeRobot's merge would refuse (fps, robot type, features)."""
    infos = []
    for root in roots:
        try:
            infos.append(json.loads((Path(root) / "meta/info.json").read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            raise GenbaError(f"cannot merge {root}: it is not a LeRobotDataset ({one_line(e)})") from None
    first, a = infos[0], roots[0]
    for info, b in zip(infos[1:], roots[1:], strict=True):
        for key in ("fps", "robot_type"):
            if info.get(key) != first.get(key):
                raise GenbaError(f"cannot merge {a} and {b}: {key} {first.get(key)} vs {info.get(key)}")
        fa, fb = first["features"], info["features"]
        for name in sorted(set(fa) | set(fb)):
            if name not in fa or name not in fb:
                raise GenbaError(f"cannot merge {a} and {b}: feature {name} is only in {a if name in fa else b}")
            for part in ("dtype", "shape", "names"):
                x, y = fa[name].get(part), fb[name].get(part)
                if part == "shape":
                    x, y = list(x or []), list(y or [])
                if x != y:
                    raise GenbaError(f"cannot merge {a} and {b}: feature {name} has {part} {x} vs {y}")


@contextlib.contextmanager
def _quiet_tqdm(module: Any) -> Iterator[None]:
    """`module`'s own tqdm bars (it calls `tqdm.tqdm(...)`) disabled while inside; nothing else's."""
    import tqdm

    original = getattr(module, "tqdm", None)
    if original is not tqdm:  # lerobot changed how it imports tqdm: leave its bars alone
        yield
        return
    module.tqdm = types.SimpleNamespace(tqdm=functools.partial(tqdm.tqdm, disable=True))
    try:
        yield
    finally:
        module.tqdm = original


def merge_into(sources: list[Path], out: Path, commit: dict | None = None) -> None:
    """Merge LeRobotDatasets with lerobot's aggregate_datasets into `out` (replaced atomically when it exists).

    commit: genba's commit record of the result (counts and identity; its checkpoint is filled in here), written
    with the sources' per-episode metadata renumbered, so that the result is a genba dataset; None for a plain merge.
    """
    import av
    from lerobot.datasets import aggregate
    from lerobot.utils.utils import SuppressProgressBars

    from genba.datasets.writer import _commit_checkpoint, repo_id_for

    check_mergeable(sources)
    av.logging.set_libav_level(av.logging.ERROR)  # FFmpeg's note per mp4 rewritten ("moving the moov atom")
    staging = out.parent / f".{out.name}.genba-merging"
    shutil.rmtree(staging, ignore_errors=True)
    with SuppressProgressBars(), _quiet_tqdm(aggregate):  # its own bars would interleave with ours
        aggregate.aggregate_datasets(
            repo_ids=[repo_id_for(s) for s in sources], aggr_repo_id=repo_id_for(out), roots=list(sources),
            aggr_root=staging,
        )  # fmt: skip
    if commit is not None:
        lines, index = [], 0
        for src in sources:
            n = read_commit(src)["episodes"]
            for line in (src / EPISODES_FILE).read_text(encoding="utf-8").splitlines()[:n]:
                lines.append(dumps({**json.loads(line), "episode_index": index}, indent=None))
                index += 1
        atomic_write(staging / EPISODES_FILE, "".join(lines))
        _commit_checkpoint(staging, commit)
    old = out.parent / f".{out.name}.genba-old"
    if out.exists():
        os.rename(out, old)
    os.rename(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def _finish_interrupted_swap(out: Path) -> None:
    """A driver killed between the two renames of merge_into left the previous dataset aside: put it back."""
    old = out.parent / f".{out.name}.genba-old"
    if old.exists() and not out.exists():
        os.rename(old, out)
    elif old.exists():
        shutil.rmtree(old)


def _merged_commit(cfg: Any, fps: int, features: dict, base: Any, shards: dict) -> dict:
    from genba.datasets.commit import new_commit

    commit = new_commit(cfg.identity(), fps, features, {})
    parts = [base.commit] if base is not None else []
    parts += [_counts(read_commit(shard_root(Path(cfg.out), a, b))) for a, b in sorted(shards)]
    for key in ("episodes", "frames", "attempts", "successes"):
        commit[key] = sum(p[key] for p in parts)
    return commit
