"""Train/validation split by episode: disjoint and complete, seeded, recorded and reused, never silently changed."""

from __future__ import annotations

import json

import pytest

from genba.datasets.split import load_or_make_split, make_split, read_split
from genba.errors import GenbaError


@pytest.mark.parametrize("n,frac", [(1, 0.1), (2, 0.1), (10, 0.2), (50, 0.1), (7, 0.0), (100, 0.5)])
def test_split_is_disjoint_and_complete(n, frac):
    s = make_split(n, frac, seed=3)
    train, val = set(s["train"]), set(s["val"])
    assert not train & val and train | val == set(range(n))
    assert len(train) >= 1
    if frac > 0 and n >= 2:
        assert len(val) >= 1
    if frac == 0:
        assert not val


def test_split_is_seeded():
    assert make_split(40, 0.25, seed=1) == make_split(40, 0.25, seed=1)
    assert make_split(40, 0.25, seed=1)["val"] != make_split(40, 0.25, seed=2)["val"]
    assert len(make_split(40, 0.25, seed=1)["val"]) == 10


def test_split_is_recorded_and_reused(tmp_path):
    path = tmp_path / "run" / "split.json"
    first = load_or_make_split(path, dataset="d", num_episodes=20, val_fraction=0.2, seed=5)
    on_disk = json.loads(path.read_text())
    assert on_disk["val"] == first["val"] and on_disk["dataset"] == "d" and on_disk["seed"] == 5
    # a recorded split wins over what make_split would now give (a hand-edited file is respected)
    on_disk["val"], on_disk["train"] = [0, 1, 2, 3], list(range(4, 20))
    path.write_text(json.dumps(on_disk))
    again = load_or_make_split(path, dataset="d", num_episodes=20, val_fraction=0.2, seed=5)
    assert again["val"] == [0, 1, 2, 3]


def test_split_mismatch_and_bad_files_are_errors(tmp_path):
    path = tmp_path / "split.json"
    load_or_make_split(path, dataset="d", num_episodes=20, val_fraction=0.2, seed=5)
    with pytest.raises(GenbaError, match="seed=5"):
        load_or_make_split(path, dataset="d", num_episodes=20, val_fraction=0.2, seed=6)
    with pytest.raises(GenbaError, match="num_episodes=20"):
        load_or_make_split(path, dataset="d", num_episodes=21, val_fraction=0.2, seed=5)
    path.write_text("{not json")
    with pytest.raises(GenbaError, match="cannot read split file"):
        read_split(path)
    path.write_text(json.dumps({"train": [0, 1], "val": [1], "num_episodes": 2}))
    with pytest.raises(GenbaError, match="in train and val"):
        read_split(path)
    with pytest.raises(GenbaError, match="val_fraction"):
        make_split(10, 1.0)
