"""Hindsight relabelled "where is it" queries for the VLA's localization loss (`w_locate`, genba.policies.vla).

A reach demonstration answers one question about its scene: where the named object is. Its scene answers three or
four: where each of its solid objects is. Every training sample therefore also carries an instruction that names
one object of its scene, drawn at random (the named one included), in the episode's own template and language
(genba.sim.scene.rename_instruction), and that object's environment-state slot; the VLA's instruction-conditioned
keypoints must then locate it. Measured on first frames of reach scenes (benchmarks/README.md, "The VLA (issue 11)"):
a keypoint localizer trained on 200 scenes memorizes them (a median 8 cm off on new scenes, the spread of the object
positions) when asked only for the named object, and generalizes (1.2 cm) when asked for every object.

    queries = scene_queries(dataset_root, "w_locate")  # genba.datasets.scenes: per episode [(slot, instruction)]
    data = MappedBatches(batches, lambda b, rng: with_queries(b, queries, rng), seed)
"""

from __future__ import annotations

import numpy as np
import torch

from genba import keys


def with_queries(batch: dict, queries: list[list[tuple[int, str]]], rng: np.random.Generator) -> dict:
    """The batch with one query per sample, drawn from its episode's: LOCATE_TASK (B,) instructions and LOCATE_SLOT
    (B,) int64 slots of the environment state."""
    picked = []
    for e in batch[keys.EPISODE_INDEX].tolist():
        options = queries[int(e)]
        picked.append(options[int(rng.integers(len(options)))])
    slots = torch.tensor([s for s, _ in picked], dtype=torch.long)  # (B,)
    return {**batch, keys.LOCATE_TASK: [t for _, t in picked], keys.LOCATE_SLOT: slots}
