"""`genba merge data=[<dir>,<dir>,...] out=<dir>`: several LeRobotDatasets v3 as one, by LeRobot's own merge.

    genba merge "data=[data/reach,data/reach-imagined]" out=data/reach-plus-imagined

The datasets are merged in the order given by lerobot's aggregate_datasets (what `lerobot-edit-dataset
--operation.type=merge` runs), through genba.datasets.distributed.merge_into: into a hidden sibling folder, renamed
into place at the end, so `out` is never half-written. When every source was written by `genba collect`, genba's
per-episode records (scene, seed, success, `synthetic`, ...) are carried over, renumbered, with a commit record whose
identity lists the sources' identities; so tools that read the records (the VLA's `tiny-locate` relabelling, `genba
viz`) work on the result, and `genba collect` refuses to extend it (its identity is no collect command's). A source
lerobot cannot merge (other fps, robot type or features) is one line naming the difference, before any work.

Summary: `episodes`, `frames`, `sources` (path, episodes, frames each), `genba_records` (whether the records came
along).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genba.errors import GenbaError


@dataclass
class MergeConfig:
    data: list[str] = field(default_factory=list, metadata={"help": "the datasets to merge, in order"})
    out: str = field(default="", metadata={"help": "the merged dataset's folder (new or empty)"})

    def __post_init__(self) -> None:
        self.data = [str(d) for d in self.data]
        if len(self.data) < 2:
            raise ValueError(f"data={self.data}: give at least two datasets to merge")
        if not self.out:
            raise ValueError("out= is required: the merged dataset's folder")
        if len({Path(d).resolve() for d in self.data}) != len(self.data):
            raise ValueError("data= names a dataset more than once")

    def summary_path(self) -> str:
        return str(Path(self.out).parent / f"{Path(self.out).name}.merge.json")


def run_merge(cfg: MergeConfig) -> dict[str, Any]:
    from genba.datasets.commit import read_commit
    from genba.datasets.distributed import check_mergeable, merge_into

    sources = [Path(d) for d in cfg.data]
    out = Path(cfg.out)
    for src in sources:
        if not (src / "meta" / "info.json").is_file():
            raise GenbaError(f"data={src} is not a LeRobotDataset (no meta/info.json)")
        if src.resolve() == out.resolve():
            raise GenbaError(f"out={out} is one of the sources; merge into a new folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GenbaError(f"out={out} exists and is not an empty folder; merge into a new one")
    commits = [read_commit(src) for src in sources]
    for src, c in zip(sources, commits, strict=True):
        if c is not None and c["checkpoint"]["episodes"] != c["episodes"]:  # lerobot's files lack the logged tail
            n = c["episodes"] - c["checkpoint"]["episodes"]
            raise GenbaError(f"data={src}: its last genba collect logged {n} episode(s) it did not finalize; run "
                             "that command again (it recovers them), then merge")  # fmt: skip
    check_mergeable(sources)  # before the empty `out` is removed for the rename
    counts = [_counts(src) for src in sources]
    commit = None
    if all(c is not None for c in commits):
        commit = _merged_commit(commits, sources)
    if out.is_dir():
        out.rmdir()
    merge_into(sources, out, commit)
    return {
        "episodes": sum(c["episodes"] for c in counts),
        "frames": sum(c["frames"] for c in counts),
        "sources": [{"data": str(s), **c} for s, c in zip(sources, counts, strict=True)],
        "genba_records": commit is not None,
        "out": str(out),
    }


def _counts(root: Path) -> dict[str, int]:
    info = json.loads((root / "meta" / "info.json").read_text(encoding="utf-8"))
    return {"episodes": int(info["total_episodes"]), "frames": int(info["total_frames"])}


def _merged_commit(commits: list[dict], sources: list[Path]) -> dict:
    """A commit record of the merge: counts summed, the sources' identities listed (no collect command's)."""
    from genba.datasets.commit import new_commit

    first = commits[0]
    identity = {"merged": [{"data": str(s), **c["identity"]} for s, c in zip(sources, commits, strict=True)]}
    commit = new_commit(identity, first["fps"], {}, {})
    commit["features"] = first["features"]
    for key in ("episodes", "frames", "attempts", "successes"):
        commit[key] = sum(c[key] for c in commits)
    return commit
