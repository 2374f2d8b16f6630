"""`genba collect noise= clean_labels=true` (DART-style data): the arm executes the noisy actions, the dataset's
`action` is the expert's clean one. Checked against the same command without the option (real MuJoCo)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dataset_equality import columns

from genba import keys
from genba.cli import main
from genba.datasets.commit import read_all_episode_meta
from genba.sim.model import JOINT_LIMITS

pytestmark = pytest.mark.xdist_group("datasets_collect_clean_labels")

SIGMA = 0.1
BASE = ["task=reach", "episodes=3", "cameras=[]", "lang=en", "keep_failed=true", f"noise={SIGMA}"]


def collect(out: Path, *overrides: str) -> dict:
    assert main(["collect", *BASE, f"out={out}", *overrides]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("clean_labels")
    executed, clean = root / "executed", root / "clean"
    collect(executed)
    assert collect(clean, "clean_labels=true")["config"]["clean_labels"] is True
    return executed, clean


def test_same_states_and_the_noise_is_taken_out_of_the_labels(pair):
    executed, clean = pair
    a, b = columns(executed), columns(clean)
    for key in (keys.OBS_STATE, keys.OBS_ENV_STATE, "episode_index", "frame_index"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)  # the arm did the same thing
    noise = a[keys.ACTION] - b[keys.ACTION]  # (N, 6)
    np.testing.assert_array_equal(noise[:, 5], 0)  # the gripper carries no noise
    # The expert's noise generator is seeded by the episode's seed: one N(0, sigma^2) draw of 5 per step.
    draws = []
    for meta in read_all_episode_meta(clean):
        rng = np.random.default_rng(meta["seed"])
        draws += [rng.normal(0.0, SIGMA, 5) for _ in range(meta["length"])]
    arm, low, high = a[keys.ACTION][:, :5], JOINT_LIMITS[:5, 0], JOINT_LIMITS[:5, 1]
    inside = np.all((arm > low) & (arm < high), axis=1)  # rows the clip to the joint limits left alone
    assert inside.mean() > 0.5
    np.testing.assert_allclose(noise[inside, :5], np.stack(draws)[inside], atol=1e-5)
    assert [m.get("clean_labels") for m in read_all_episode_meta(clean)] == [True] * 3
    assert "clean_labels" not in read_all_episode_meta(executed)[0]


def test_other_labels_on_the_same_out_are_refused(pair, capsys):
    executed, _ = pair
    assert main(["collect", *BASE, f"out={executed}", "clean_labels=true"]) == 2
    assert "clean_labels" in capsys.readouterr().err


@pytest.mark.parametrize(
    "overrides",
    [["noise=0", "clean_labels=true"], ["noise=0", "policy=hold", "clean_labels=true"]],
)
def test_clean_labels_need_the_noisy_expert(tmp_path, capsys, overrides):
    argv = ["collect", "task=reach", f"out={tmp_path / 'x'}", *overrides]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "clean_labels=true needs the expert with noise > 0" in err, err
    assert not (tmp_path / "x").exists()
