"""MappedBatches (genba.worldmodel.data): per-batch extensions seeded by (seed, epoch, batch index)."""

import numpy as np

from genba.worldmodel.data import MappedBatches


class Source:
    """A data(epoch) source of 3 batches whose content names the epoch."""

    def __len__(self) -> int:
        return 3

    def __call__(self, epoch: int) -> list[dict]:
        return [{"epoch": epoch, "i": i} for i in range(3)]


def draw(batch: dict, rng: np.random.Generator) -> dict:
    return {**batch, "draw": float(rng.random())}


def test_each_batch_is_extended_the_same_way_on_every_run_and_differently_per_batch_and_epoch():
    data = MappedBatches(Source(), draw, seed=7)
    first = list(data(0))
    assert len(data) == 3 and [b["i"] for b in first] == [0, 1, 2] and all(b["epoch"] == 0 for b in first)
    assert first == list(MappedBatches(Source(), draw, seed=7)(0))  # a rerun, a resume: the same draws
    assert data(0)[2] == first[2]  # indexed lazily, as the training loop and torchrun's shards read it
    draws = {b["draw"] for b in first} | {b["draw"] for b in data(1)} | {MappedBatches(Source(), draw, 8)(0)[0]["draw"]}
    assert len(draws) == 7
    twice = MappedBatches(MappedBatches(Source(), draw, seed=7), lambda b, r: {**b, "second": True}, seed=1)
    assert twice(0)[1] == {**first[1], "second": True}  # they compose: speech, then queries
