"""`genba eval-ranking`: the ranking statistics against NumPy, SciPy's documented values and hand-worked ones,
built-in policy options (`scripted:noise=0.3`), and the command end to end at tiny scale on a real world-model run."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from genba.errors import GenbaError
from genba.policies.registry import builtin_options, policy_factory
from genba.policies.stats import mmrv, pearson_r, ranks, spearman_r

# the world-model fixtures (a real reach run with a success head) live in tests/worldmodel/conftest.py
_spec = importlib.util.spec_from_file_location("wm_fixtures", Path(__file__).parents[1] / "worldmodel" / "conftest.py")
_wm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_wm)
reach_wm_run = _wm.reach_wm_run


# ------------------------------------------------------------------ statistics
@pytest.mark.parametrize("seed", range(5))
def test_pearson_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 11, 9) / 10  # success rates of 9 policies, with ties
    y = np.clip(x + rng.normal(0, 0.2, 9), 0, 1).round(1)
    assert pearson_r(list(x), list(y)) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)


def test_spearman_and_ranks_by_hand():
    assert ranks([0.5, 0.1, 0.5, 0.9]) == [2.5, 1.0, 2.5, 4.0]  # ties share their mean rank
    # scipy.stats.spearmanr's documented example (a tie in y): 0.82078268166812329
    assert spearman_r([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.82078268166812329, abs=1e-12)
    # no ties: 1 - 6 sum d^2 / (n (n^2 - 1)); d = (0, -1, 1, 0) -> 1 - 12 / 60 = 0.8
    assert spearman_r([0.1, 0.4, 0.6, 0.9], [0.0, 0.7, 0.5, 1.0]) == pytest.approx(0.8)


def test_correlations_of_a_constant_side_are_undefined():
    assert pearson_r([0.1, 0.5, 0.9], [1.0, 1.0, 1.0]) is None
    assert spearman_r([0.0, 0.0], [0.2, 0.4]) is None
    assert pearson_r([0.5], [0.5]) is None
    assert spearman_r([0.1, 0.2, 0.3], [0.9, 0.5, 0.1]) == pytest.approx(-1.0)


def test_mmrv_by_hand():
    real = [0.9, 0.6, 0.5, 0.1]
    assert mmrv(real, [0.8, 0.7, 0.3, 0.0]) == 0.0  # the same order, other values: no violation
    # the world model swaps the two middle policies (0.6 vs 0.5 in MuJoCo): each of them costs 0.1, the others 0
    assert mmrv(real, [0.8, 0.3, 0.7, 0.0]) == pytest.approx((0 + 0.1 + 0.1 + 0) / 4)
    # reversed: policy 0's worst violation is against policy 3 (0.8), policy 1's against 3 (0.5), 2's against 0 (0.4)
    assert mmrv(real, [0.0, 0.3, 0.7, 0.8]) == pytest.approx((0.8 + 0.5 + 0.4 + 0.8) / 4)
    # a tie in the world model where MuJoCo tells them apart is a violation, counted for the better policy only
    # (SIMPLER's strict comparisons: 0.8 > 0.2 but not 0.5 > 0.5): (0 + 0.6) / 2
    assert mmrv([0.2, 0.8], [0.5, 0.5]) == pytest.approx(0.3)
    assert mmrv([0.5, 0.5], [0.2, 0.8]) == 0.0  # ... and the reverse costs nothing: MuJoCo sees no difference


def test_mmrv_matches_the_simpler_reference_implementation():
    def reference(sim, real):  # simpler_env.utils.metrics.mean_maximum_rank_violation, as published
        sim, real = np.array(sim), np.array(real)
        worst = []
        for i in range(len(sim)):
            v = 0.0
            for j in range(len(sim)):
                if (sim[i] > sim[j]) != (real[i] > real[j]):
                    v = max(v, abs(real[i] - real[j]))
            worst.append(v)
        return float(np.mean(worst))

    rng = np.random.default_rng(0)
    for _ in range(20):
        real, imagined = rng.integers(0, 6, 8) / 5, rng.integers(0, 6, 8) / 5
        assert mmrv(list(real), list(imagined)) == pytest.approx(reference(imagined, real))


# ------------------------------------------------------------------ built-in options
def test_builtin_options_are_parsed_and_checked():
    assert builtin_options("hold") == ("hold", {})
    assert builtin_options("scripted:noise=0.3") == ("scripted", {"noise": 0.3})
    assert builtin_options("linear:seed=3,horizon=4") == ("linear", {"seed": 3, "horizon": 4})
    assert builtin_options("scripted:Policy") is None  # module scripted's class Policy, not an option
    assert builtin_options("my_lab.policies:Grasper") is None
    with pytest.raises(GenbaError, match=r"scripted takes no option 'nois' \(valid: task, fps, seed, noise\)"):
        policy_factory("scripted:nois=0.3", task="reach")
    with pytest.raises(GenbaError, match="options are key=value separated by commas"):
        policy_factory("scripted:noise=0.3,", task="reach")
    with pytest.raises(GenbaError, match="noise must be a finite number >= 0"):
        policy_factory("scripted:noise=-1", task="reach")


def test_a_noisy_expert_is_weaker_and_its_outcomes_depend_on_the_seed_alone():
    import genba.sim as sim
    from genba.policies.rollout import rollout

    env = sim.make("reach", cameras=[])

    def outcomes(policy, seeds):
        out = {}
        for seed in seeds:
            np.random.seed(seed)  # as genba eval seeds each episode
            out[seed] = rollout(env, policy, seed).success
        return out

    noisy = policy_factory("scripted:noise=0.4", task="reach", seed=0)()
    assert noisy.name == "scripted:reach:noise=0.4"
    seeds = list(range(1_000_000, 1_000_012))
    forward, backward = outcomes(noisy, seeds), outcomes(noisy, seeds[::-1])
    clean = outcomes(policy_factory("scripted", task="reach")(), seeds)
    env.close()
    assert forward == backward  # the order the episodes ran in changes nothing
    assert sum(clean.values()) == len(seeds) and sum(forward.values()) < len(seeds) / 2


# ------------------------------------------------------------------ the command
@pytest.mark.xdist_group("worldmodel")
def test_eval_ranking_end_to_end(reach_wm_run, tmp_path, capsys):
    from genba.cli import main

    out, rrd = tmp_path / "ranking.json", tmp_path / "side.rrd"
    argv = ["eval-ranking", "task=reach", f"worldmodel={reach_wm_run['run']}", "episodes=2", "workers=1",
            "policies=[scripted,'scripted:noise=0.5',hold]", "cameras=[front]", f"rrd={rrd}", f"out={out}"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert printed.out.strip().splitlines()[-1] == str(out)
    summary = json.loads(out.read_text())
    for key in ("pearson_r", "spearman_r", "mmrv", "checkpoints", "seconds_mujoco", "seconds_worldmodel"):
        assert key in summary
    assert [c["policy"] for c in summary["checkpoints"]] == ["scripted", "scripted:noise=0.5", "hold"]
    for c in summary["checkpoints"]:
        for backend in ("mujoco", "worldmodel"):
            run = c[backend]
            assert run["episodes"] == 2 and len(run["outcomes"]) == 2
            assert run["success_rate"] == sum(run["outcomes"]) / 2
            assert 0 <= run["ci95"][0] <= run["success_rate"] <= run["ci95"][1] <= 1
        same = [a == b for a, b in zip(c["mujoco"]["outcomes"], c["worldmodel"]["outcomes"], strict=True)]
        assert c["agreement"] == sum(same) / 2
    by = {c["policy"]: c for c in summary["checkpoints"]}
    assert by["scripted"]["mujoco"]["success_rate"] == 1.0 and by["hold"]["mujoco"]["success_rate"] == 0.0
    real = [c["mujoco"]["success_rate"] for c in summary["checkpoints"]]
    imagined = [c["worldmodel"]["success_rate"] for c in summary["checkpoints"]]
    assert summary["mmrv"] == pytest.approx(mmrv(real, imagined), abs=1e-4)
    assert summary["spearman_r"] == (None if spearman_r(real, imagined) is None else
                                     pytest.approx(spearman_r(real, imagined), abs=1e-4))  # fmt: skip
    assert summary["seconds_mujoco"] > 0 and summary["seconds_worldmodel"] > 0
    assert "Spearman r" in printed.err and "issue 12's ranking asks for at least 8 x 50" in printed.err
    # the side-by-side recording: both backends' cameras and joints in one recording
    assert summary["rrd"]["path"] == str(rrd) and rrd.stat().st_size > 0
    assert summary["rrd"]["mujoco"]["success"] is True
    from genba import keys
    from genba.viz.log import entity
    from genba.viz.readback import read_rrd

    contents = read_rrd(rrd)
    steps = max(summary["rrd"]["mujoco"]["steps"], summary["rrd"]["worldmodel"]["steps"])
    for path in (entity("cameras", "front"), entity("cameras", "front (imagined)")):
        assert len(contents.series(path, "EncodedImage:blob")[0]) == steps, (path, contents.entities())
    joint = keys.JOINTS[0]
    frames, imagined = contents.series(entity("state", f"imagined {joint}"), "Scalars:scalars")
    assert len(frames) == steps
    assert contents.series(entity("state", joint), "Scalars:scalars")[1] != imagined  # two different rollouts
    told = contents.static("episode", "TextDocument:text")
    assert f"MuJoCo success in {summary['rrd']['mujoco']['steps']} steps" in str(told), told


@pytest.mark.parametrize(
    ("override", "message"),
    [("policies=[scripted]", "a ranking needs at least 2 policies"),
     ("policies=[hold,hold]", "names 'hold' more than once"),
     ("policies=[scripted,juggler]", "unknown policy 'juggler'"),
     ("worldmodel=", "worldmodel= is required")],
)  # fmt: skip
def test_bad_input_is_one_line_before_any_episode(override, message, capsys, tmp_path):
    from genba.cli import main

    argv = ["eval-ranking", f"worldmodel={tmp_path}", "policies=[scripted,hold]", override]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
