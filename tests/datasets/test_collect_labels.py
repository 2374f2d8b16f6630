"""`genba collect policy= after_success=`: weak policies' episodes and per-frame success labels for a world model's
success head, checked against the env's own predicate and the expert's episodes without the option."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genba import keys
from genba.cli import main
from genba.datasets.commit import read_all_episode_meta
from genba.datasets.writer import repo_id_for
from genba.sim import make

pytestmark = pytest.mark.xdist_group("datasets_collect_labels")

BASE = ["task=reach", "episodes=3", "image_size=32", "cameras=[front]", "lang=en", "keep_failed=true"]
K = 4


def collect(out: Path, *overrides: str) -> dict:
    assert main(["collect", *BASE, f"out={out}", *overrides]) == 0
    return json.loads((out / "summary.json").read_text())


def columns(root: Path) -> dict[str, np.ndarray]:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    hf = LeRobotDataset(repo_id_for(root), root=root).hf_dataset.with_format("numpy")
    return {k: np.stack(hf[k]) for k in hf.column_names}


def per_episode(cols: dict[str, np.ndarray], key: str) -> list[np.ndarray]:
    ep = cols["episode_index"]
    return [cols[key][ep == e] for e in np.unique(ep)]


@pytest.fixture(scope="module")
def expert(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("labels")
    plain, labelled = root / "plain", root / "labelled"
    collect(plain)
    collect(labelled, f"after_success={K}")
    return plain, labelled


def test_labels_start_where_the_plain_episode_ends_and_hold_after(expert):
    plain, labelled = expert
    a, b = columns(plain), columns(labelled)
    assert keys.NEXT_SUCCESS not in a  # no option, no column: datasets as before
    lengths = [len(x) for x in per_episode(a, keys.ACTION)]
    for e, (label, action) in enumerate(
        zip(per_episode(b, keys.NEXT_SUCCESS), per_episode(b, keys.ACTION), strict=True)
    ):
        label = label.reshape(-1).astype(bool)
        n = lengths[e]
        assert not label[: n - 1].any() and label[n - 1], (e, label)  # first success where the plain episode stopped
        assert len(label) == n + K  # then K more steps (the reach expert holds at the target)
        assert label[n - 1 :].all(), label
        np.testing.assert_array_equal(action[:n], per_episode(a, keys.ACTION)[e])  # same seeds, same expert
    records = read_all_episode_meta(labelled)
    assert [r["success"] for r in records] == [True] * 3 and [r["length"] for r in records] == [n + K for n in lengths]


@pytest.mark.parametrize("after", [0, K])
def test_labels_are_the_env_predicate(after):
    """The env judges every step after the first success too (success_trace, the rewards) and terminates K later."""
    from genba.policies.scripted import ScriptedPolicy
    from genba.sim.arm import policy_observation

    env = make("reach", cameras=[], after_success=after)
    obs, _ = env.reset(seed=0)
    policy = ScriptedPolicy("reach", seed=0, fps=10)
    policy.reset()
    rewards, done = [], False
    while not done:
        chunk = policy.infer(policy_observation(obs, env.unwrapped.task_description))["actions"]  # (H, 6)
        for action in chunk:
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            done = terminated or truncated
            if done:
                break
    trace = env.unwrapped.success_trace
    assert terminated and trace == [bool(r) for r in rewards]
    first = trace.index(True)
    assert len(trace) == first + 1 + after and all(trace[first:])
    env.close()


def test_weak_policy_is_seeded_and_recorded(tmp_path):
    first, second = tmp_path / "r1", tmp_path / "r2"
    summary = collect(first, "policy=random", f"after_success={K}")
    collect(second, "policy=random", f"after_success={K}")
    a, b = columns(first), columns(second)
    np.testing.assert_array_equal(a[keys.ACTION], b[keys.ACTION])  # seeded per attempt: the same run twice
    actions = per_episode(a, keys.ACTION)
    assert not np.allclose(actions[0][: len(actions[1])], actions[1][: len(actions[0])])  # but not per dataset
    assert summary["episodes"] == 3 and summary["expert_success_rate"] == 0.0
    assert [r["policy"] for r in read_all_episode_meta(first)] == ["random"] * 3
    assert not a[keys.NEXT_SUCCESS].any()


def test_a_mixture_of_policies_takes_turns(tmp_path):
    out = tmp_path / "mix"
    collect(out, "episodes=4", "policy=[scripted,hold]", f"after_success={K}")
    records = read_all_episode_meta(out)
    assert [r["policy"] for r in records] == ["scripted", "hold"] * 2
    assert [r["success"] for r in records] == [True, False] * 2  # reach: the arm at rest never touches the target
    labels = per_episode(columns(out), keys.NEXT_SUCCESS)
    assert [int(x.sum()) for x in labels][1::2] == [0, 0] and all(x.sum() == K + 1 for x in labels[::2])


def test_a_vla_collects_its_own_episodes_seeded(tiny_vla_run, tmp_path):
    """policy=<VLA run folder>: its episodes through the same writer (what an improvement loop learns from), its
    flow-matching noise seeded per attempt: the same command twice gives the same actions."""
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        argv = [
            "task=reach",
            "episodes=2",
            "image_size=64",
            "lang=en",
            "keep_failed=true",
            f"policy={tiny_vla_run['run']}",
        ]
        assert main(["collect", *argv, f"out={out}", "workers=1"]) == 0
        runs.append(columns(out))
    np.testing.assert_array_equal(runs[0][keys.ACTION], runs[1][keys.ACTION])
    assert [r["policy"] for r in read_all_episode_meta(tmp_path / "a")] == [str(tiny_vla_run["run"])] * 2
    first, second = per_episode(runs[0], keys.ACTION)
    assert not np.allclose(first[:1], second[:1])  # two scenes, two different first actions


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["policy=teleop"], "policy='teleop' is neither a built-in policy"),
        (["policy=[hold,'vla:x']"], "policy='vla:x' is neither a built-in policy"),
        (["policy=[]"], "must be a policy name or a non-empty list of them"),
        (["policy=hold", "noise=0.2"], "with policy=hold give it as policy=scripted:noise=<rad>"),
        (["after_success=-1"], "after_success=-1 must be an integer in [0, 1000]"),
        (["backend=worldmodel", "worldmodel=/nowhere", "after_success=3"], "after_success= needs backend=mujoco"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, overrides, message):
    assert main(["collect", f"out={tmp_path / 'x'}", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x").exists()


def test_other_labels_on_the_same_out_are_refused(expert, capsys):
    _, labelled = expert
    assert main(["collect", *BASE, f"out={labelled}", "after_success=2"]) == 2
    assert "after_success" in capsys.readouterr().err
