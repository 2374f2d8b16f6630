"""The scene of each episode genba collected, as questions about it: one instruction per solid object.

A demonstration answers one question about its scene (where the named object is, or what to pick). Its scene
answers three or four: one per solid object, each asked in the episode's own template and language
(genba.sim.scene.rename_instruction). The VLA's localization loss (genba.policies.relabel, `w_locate`) asks where
each of them is. (Pairing a world model's frames with these instructions in its contrastive loss was tried on
2026-12-01 and did not generalize to new scenes: benchmarks/README.md, "Seventeenth session".)

    queries = scene_queries(dataset_root, "w_locate")    # per episode [(slot, instruction), ...], named object first
"""

from __future__ import annotations

from pathlib import Path

from genba.errors import GenbaError

NAMEABLE = ("object", "distractor")  # the roles an instruction's object slot can name in every task's templates


def scene_queries(root: str | Path, needed_by: str) -> list[list[tuple[int, str]]]:
    """Per episode of a dataset genba wrote: [(environment-state slot, instruction naming that object), ...], the
    episode's named object first. One line naming the option `needed_by` when the dataset has no scene records."""
    from genba.datasets.commit import read_all_episode_meta
    from genba.sim.scene import rename_instruction

    records = read_all_episode_meta(root)
    if records is None or any("spec" not in r for r in records):
        raise GenbaError(f"{needed_by} needs the scene of every episode (genba's meta/genba/episodes.jsonl), and "
                         f"{root} has none: collect it with `genba collect`, or train without {needed_by}")  # fmt: skip
    out = []
    for r in records:
        spec = r["spec"]
        objects = sorted((o for o in spec["objects"] if o["role"] in NAMEABLE), key=lambda o: o["role"] != "object")
        out.append([(int(o["slot"]), rename_instruction(spec, o)) for o in objects])
    return out
