"""Train/validation split by episode: seeded, written to a JSON file, and reused, so evaluation never sees training
episodes (frames of one episode are near-duplicates: a split by frame would leak).

    split = load_or_make_split("runs/a/split.json", dataset="data/pick_place", num_episodes=50, val_fraction=0.1)
    train = ClipDataset(cfg, episodes=split["train"])

The file records the dataset, its episode count, the seed and the fraction. Asking for a split that disagrees with
the recorded one (other seed, fraction, or a dataset with another episode count) is an error, never a silent
re-split: a run resumed with other options must not see its validation episodes in training.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from genba.errors import GenbaError
from genba.io import write_json

SPLIT_VERSION = 1


def make_split(num_episodes: int, val_fraction: float = 0.1, seed: int = 0) -> dict:
    """{"train": [...], "val": [...]} of episode indices 0..num_episodes-1; at least one of each when possible."""
    if num_episodes < 1:
        raise GenbaError(f"cannot split {num_episodes} episodes")
    if not 0.0 <= val_fraction < 1.0:
        raise GenbaError(f"val_fraction={val_fraction} must be in [0, 1)")
    order = list(range(num_episodes))
    random.Random(seed).shuffle(order)  # stdlib's Mersenne Twister: the same split on every platform and version
    n_val = round(num_episodes * val_fraction)
    if val_fraction > 0 and num_episodes >= 2:
        n_val = min(max(n_val, 1), num_episodes - 1)
    return {
        "version": SPLIT_VERSION,
        "num_episodes": num_episodes,
        "val_fraction": val_fraction,
        "seed": seed,
        "train": sorted(order[n_val:]),
        "val": sorted(order[:n_val]),
    }


def load_or_make_split(
    path: str | Path, *, dataset: str, num_episodes: int, val_fraction: float = 0.1, seed: int = 0
) -> dict:
    """The split recorded at `path`, checked against the request; made and written (atomically) if absent."""
    path = Path(path)
    if path.exists():
        split = read_split(path)
        asked = {"num_episodes": num_episodes, "val_fraction": val_fraction, "seed": seed}
        for key, value in asked.items():
            if split.get(key) != value:
                raise GenbaError(
                    f"{path} records {key}={split.get(key)!r} but {key}={value!r} was asked; "
                    "use another split file or the recorded options"
                )
        return split
    split = {**make_split(num_episodes, val_fraction, seed), "dataset": str(dataset)}
    write_json(path, split)
    return split


def read_split(path: str | Path) -> dict:
    path = Path(path)
    try:
        split = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GenbaError(f"cannot read split file {path}: {e}") from None
    if not isinstance(split, dict) or not {"train", "val", "num_episodes"} <= set(split):
        raise GenbaError(f"{path} is not a split file (needs train, val, num_episodes)")
    if set(split["train"]) & set(split["val"]):
        raise GenbaError(f"{path}: episodes {sorted(set(split['train']) & set(split['val']))} are in train and val")
    return split
