"""Hindsight relabelled "where is it" queries for the VLA's localization loss (`w_locate`, genba.policies.vla).

A reach demonstration answers one question about its scene: where the named object is. Its scene answers three or
four: where each of its solid objects is. Every training sample therefore also carries an instruction that names
one object of its scene, drawn at random (the named one included), in the episode's own template and language
(genba.sim.scene.rename_instruction), and that object's environment-state slot; the VLA's instruction-conditioned
keypoints must then locate it. Measured on first frames of reach scenes (benchmarks/README.md, "The VLA (issue 11)"):
a keypoint localizer trained on 200 scenes memorizes them (a median 8 cm off on new scenes, the spread of the object
positions) when asked only for the named object, and generalizes (1.2 cm) when asked for every object.

    queries = scene_queries(dataset_root)          # per episode [(slot, instruction), ...]; None: not genba's data
    data = MappedBatches(batches, lambda b, rng: with_queries(b, queries, rng), seed)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genba import keys
from genba.errors import GenbaError

NAMEABLE = ("object", "distractor")  # the roles an instruction's object slot can name in every task's templates


def scene_queries(root: str | Path) -> list[list[tuple[int, str]]]:
    """Per episode of a dataset genba wrote: [(environment-state slot, instruction naming that object), ...], the
    episode's named object first. One line when the dataset has no scene records (not collected by genba)."""
    from genba.datasets.commit import read_all_episode_meta
    from genba.sim.scene import rename_instruction

    records = read_all_episode_meta(root)
    if records is None or any("spec" not in r for r in records):
        raise GenbaError(f"w_locate needs the scene of every episode (genba's meta/genba/episodes.jsonl), and {root} "
                         "has none: collect it with `genba collect`, or train with w_locate=0")  # fmt: skip
    out = []
    for r in records:
        spec = r["spec"]
        objects = sorted((o for o in spec["objects"] if o["role"] in NAMEABLE), key=lambda o: o["role"] != "object")
        out.append([(int(o["slot"]), rename_instruction(spec, o)) for o in objects])
    return out


def with_queries(batch: dict, queries: list[list[tuple[int, str]]], rng: np.random.Generator) -> dict:
    """The batch with one query per sample, drawn from its episode's: LOCATE_TASK (B,) instructions and LOCATE_SLOT
    (B,) int64 slots of the environment state."""
    picked = []
    for e in batch["episode_index"].tolist():
        options = queries[int(e)]
        picked.append(options[int(rng.integers(len(options)))])
    slots = torch.tensor([s for s, _ in picked], dtype=torch.long)  # (B,)
    return {**batch, keys.LOCATE_TASK: [t for _, t in picked], keys.LOCATE_SLOT: slots}
