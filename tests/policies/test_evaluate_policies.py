"""`genba eval`: seeds, env options from the policy and their overrides, parallel workers, paired comparisons,
shuffled instructions and the grounding gap, per-language rates, .rrd of chosen episodes, and the statistics."""

from __future__ import annotations

import math
import textwrap
from fractions import Fraction

import numpy as np
import pytest

from genba import keys
from genba.errors import GenbaError
from genba.policies import registry
from genba.policies.evaluate import EvalConfig, run_eval
from genba.policies.spec import ActionSpec, Feature, InputSpec
from genba.policies.stats import compare_paired, mcnemar_exact_p, newcombe_paired_interval, wilson_interval

REACH = {"task": "reach", "policy": "scripted"}


def _outcomes(summary: dict) -> list[tuple]:
    """What must not depend on how episodes were spread over processes (everything but wall time)."""
    return [(e["seed"], e["success"], e["steps"], e["task"], e["lang"], e["requests"]) for e in summary["per_episode"]]


# ------------------------------------------------------------------------------------------------ statistics
def test_wilson_interval_is_importable_from_evaluate_as_before():
    from genba.policies.evaluate import wilson_interval as old

    assert old is wilson_interval


def test_newcombe_interval_matches_the_published_example():
    # Cavo et al. (2012) as analysed by Fagerland, Lydersen & Laake (Statistical Analysis of Contingency Tables,
    # ch. 8): a=59, b=6, c=16, d=80; Newcombe's square-and-add (method 10): -0.0621 (95% CI -0.1186 to -0.0046)
    low, high = newcombe_paired_interval(59, 6, 16, 80)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)
    # the two orders of the same pairs are mirror images; the estimate lies inside
    assert newcombe_paired_interval(59, 16, 6, 80) == pytest.approx((-high, -low))
    for a, b, c, d in [(0, 0, 0, 12), (12, 0, 0, 0), (3, 9, 0, 0), (0, 0, 12, 0), (5, 4, 2, 1)]:
        low, high = newcombe_paired_interval(a, b, c, d)
        assert -1.0 <= low <= (b - c) / (a + b + c + d) <= high <= 1.0


def test_mcnemar_exact_p_is_the_two_sided_binomial_test():
    # Cavo et al.: exact conditional McNemar p = 0.052 (Fagerland et al. 2013)
    assert round(mcnemar_exact_p(6, 16), 3) == 0.052
    for b, c in [(0, 12), (12, 0), (3, 9), (5, 5), (1, 0), (0, 0), (17, 4)]:
        n = b + c
        # two-sided binomial test at 1/2: the probability of every outcome no likelier than the one observed
        pmf = [Fraction(math.comb(n, k), 2**n) for k in range(n + 1)]
        expected = sum((q for q in pmf if q <= pmf[b]), Fraction(0))
        assert mcnemar_exact_p(b, c) == pytest.approx(float(min(expected, Fraction(1))), rel=1e-12)


def test_compare_paired_counts_the_table():
    first = [True, True, True, False, False, True]
    second = [True, False, False, True, False, False]
    paired = compare_paired(first, second)
    assert (paired["both"], paired["first_only"], paired["second_only"], paired["neither"]) == (1, 3, 1, 1)
    assert paired["diff"] == pytest.approx(2 / 6)
    assert paired["p_value"] == pytest.approx(mcnemar_exact_p(3, 1))
    with pytest.raises(ValueError, match="same seeds"):
        compare_paired([True], [True, False])


# ------------------------------------------------------------------------------------------------ running
def test_seeds_lengths_latency_and_one_process_equals_two():
    one = run_eval(EvalConfig(**REACH, episodes=4, workers=1))
    two = run_eval(EvalConfig(**REACH, episodes=4, workers=2))
    assert one["seeds"] == [1_000_000, 1_000_001, 1_000_002, 1_000_003]
    assert [e["seed"] for e in one["per_episode"]] == one["seeds"]
    assert one["successes"] == 4 and one["success_rate"] == 1.0 and one["ci95"][1] == 1.0
    assert one["mean_length"] == pytest.approx(np.mean([e["steps"] for e in one["per_episode"]]))
    assert one["chunks"] == sum(e["requests"] for e in one["per_episode"])  # one timing per chunk asked for
    assert 0 < one["latency_ms_p50"] <= one["latency_ms_p99"]
    assert one["env"] == {"cameras": [], "randomize": True, "lang": "en"}  # the expert renders nothing
    assert two["workers"] == 2 and _outcomes(one) == _outcomes(two)
    for key in ("success_rate", "ci95", "seeds", "mean_length", "by_language"):
        assert one[key] == two[key], key


def test_compare_gives_a_paired_difference_on_the_same_seeds():
    summary = run_eval(EvalConfig(**REACH, episodes=12, compare="random", workers=2))
    other = summary["compare"]
    assert other["policy"] == "random" and other["episodes"] == 12
    assert [e["seed"] for e in other["per_episode"]] == summary["seeds"]
    assert [e["task"] for e in other["per_episode"]] == [e["task"] for e in summary["per_episode"]]  # same scenes
    pairs = zip(summary["per_episode"], other["per_episode"], strict=True)
    first_only = sum(a["success"] and not b["success"] for a, b in pairs)
    assert summary["discordant"]["first_only"] == first_only
    assert summary["paired_diff"] == pytest.approx(summary["success_rate"] - other["success_rate"])
    low, high = summary["paired_ci95"]
    assert 0 < low <= summary["paired_diff"] <= high  # the expert beats random joint targets, decisively
    assert summary["p_value"] < 0.05


def _grounded(task: str = "reach", seed: int = 0, **_):
    """A policy that reads the instruction: the expert when it names the scene's object, frozen otherwise. (It
    recognises the scene among the evaluated seeds' by where the object starts.)"""
    from genba.policies.scripted import ScriptedPolicy
    from genba.sim.scene import sample_spec

    specs = [sample_spec(task, s) for s in range(seed, seed + 8)]
    starts = np.array([next(o for o in sp["objects"] if o["role"] == "object")["pos"][:2] for sp in specs])

    class Grounded(ScriptedPolicy):
        def reset(self):
            super().reset()
            self.told = None

        def infer(self, obs):
            if self.told is None:  # the first step: the object is where the scene put it
                xy = obs[keys.OBS_ENV_STATE][:2]
                self.told = specs[int(np.argmin(np.linalg.norm(starts - xy, axis=1)))]["instruction"]
            if obs[keys.TASK] == self.told:
                return super().infer(obs)
            return {keys.ACTIONS: obs[keys.OBS_STATE][None].astype(np.float32)}

    def make():
        policy = Grounded(task, seed=seed)
        policy.name = "grounded"
        return policy

    return make


def test_shuffled_instructions_and_the_grounding_gap(monkeypatch):
    monkeypatch.setitem(registry.BUILTIN, "grounded", (_grounded, "reads the instruction (tests)"))
    summary = run_eval(EvalConfig(task="reach", policy="grounded", episodes=6, grounding=True, workers=1))
    shuffled = summary["shuffled"]
    assert shuffled["instruction"] == "shuffled" and shuffled["shuffled_unchanged"] == 0
    for as_is, other in zip(summary["per_episode"], shuffled["per_episode"], strict=True):
        assert other["original_instruction"] == as_is["task"] != other["task"]
        assert other["instruction_names"].startswith("distractor")
    assert summary["success_rate"] == 1.0 and shuffled["success_rate"] == 0.0
    assert summary["grounding_gap"] == 1.0 and summary["grounding_p_value"] == pytest.approx(2 / 2**6)
    assert summary["grounding_ci95"][0] > 0.4  # 6 of 6 pairs discordant: +44.8% to +100%
    # the expert never reads the instruction: no gap, and no evidence of one
    expert = run_eval(EvalConfig(**REACH, episodes=4, grounding=True, workers=1))
    assert expert["grounding_gap"] == 0.0 and expert["grounding_p_value"] == 1.0
    alone = run_eval(EvalConfig(**REACH, episodes=4, instruction="shuffled", workers=1))
    assert alone["instruction"] == "shuffled" and alone["shuffled_unchanged"] == 0
    assert _outcomes(alone) == _outcomes(expert["shuffled"])  # the summary reports the shuffled run


def test_a_shuffled_instruction_keeps_the_scene():
    import genba.sim

    env = genba.sim.make("pick_place", cameras=[], lang="ja")
    try:
        env.reset(seed=1_000_003)
        spec, told = env.episode_spec(), env.task_description
        env.reset(seed=1_000_003, options={"instruction": "shuffled"})
        shuffled = env.episode_spec()
        assert shuffled["objects"] == spec["objects"] and shuffled["physics"] == spec["physics"]
        assert shuffled["cameras"] == spec["cameras"] and shuffled["init_qpos"] == spec["init_qpos"]
        assert env.task_description == shuffled["instruction"] != told == shuffled["original_instruction"]
        named = next(o for o in spec["objects"] if o["name"] == shuffled["instruction_names"])
        from genba.sim.scene import phrase

        assert phrase(named["color"], named["shape"], "ja") in env.task_description  # in the episode's language
        env.reset(seed=1_000_003, options={"instruction": "shuffled"})
        assert env.task_description == shuffled["instruction"]  # the same every time
        with pytest.raises(ValueError, match="instruction='nope'"):
            env.reset(seed=1, options={"instruction": "nope"})
    finally:
        env.close()


def test_a_scene_with_no_other_solid_keeps_its_instruction():
    from genba.sim.scene import sample_spec, shuffle_instruction

    spec = sample_spec("pick_place", 5)
    spec["objects"] = [o for o in spec["objects"] if o["role"] != "distractor"]  # only the object and the bin
    told = spec["instruction"]
    assert shuffle_instruction(spec) is False
    assert spec["instruction"] == told and spec["instruction_names"] is None


def test_by_language_with_mixed_instructions():
    summary = run_eval(EvalConfig(**REACH, episodes=8, lang="mixed", workers=1))
    by = summary["by_language"]
    assert set(by) == {"en", "ja"}  # seeds 1,000,000.. draw both
    assert sum(v["episodes"] for v in by.values()) == 8
    for lang, rate in by.items():
        mine = [e for e in summary["per_episode"] if e["lang"] == lang]
        assert rate["episodes"] == len(mine) and rate["successes"] == sum(e["success"] for e in mine)
        assert all(e["task"].isascii() == (lang == "en") for e in mine)
        assert rate["ci95"] == [round(x, 4) for x in wilson_interval(rate["successes"], rate["episodes"])]


def test_chosen_episodes_are_written_to_one_rrd(tmp_path):
    from genba.viz.log import entity
    from genba.viz.readback import count_recordings, read_rrd

    out = tmp_path / "eval.rrd"
    cfg = EvalConfig(**REACH, episodes=3, cameras=["front"], image_size=32, rrd=str(out), rrd_episodes=[2, 0])
    summary = run_eval(cfg)
    assert summary["rrd"] == str(out) and summary["rrd_seeds"] == [1_000_000, 1_000_002]
    assert summary["env"]["cameras"] == ["front"] and summary["env"]["image_size"] == 32
    assert count_recordings(out) == 2
    seen = {}
    for k in range(2):
        rrd = read_rrd(out, recording=k)
        frames, _ = rrd.series(entity("cameras", "front"), "EncodedImage:blob")
        (instruction,) = rrd.series("instruction", "TextDocument:text")[1]
        seen[instruction[0]] = len(frames)
    episodes = {e["task"]: e["steps"] for e in summary["per_episode"][::2]}
    assert seen == episodes  # each chosen episode, every step, with the instruction it was given
    assert not list(tmp_path.glob(".eval-rrd-*"))  # the scratch folder is gone


# ------------------------------------------------------------------------------------------------ bad input
class _Fixed:
    """A policy with a fixed 32x32 front camera."""

    name = "fixed"
    input_spec = InputSpec({keys.OBS_STATE: Feature("float32", (6,)),
                            keys.image_key("front"): Feature("uint8", (32, 32, 3))})  # fmt: skip
    action_spec = ActionSpec(horizon=1, dim=6)

    def reset(self):
        pass

    def infer(self, obs):
        return {keys.ACTIONS: obs[keys.OBS_STATE][None]}


class _Broken(_Fixed):
    input_spec = InputSpec({keys.OBS_STATE: Feature("float32", (6,))})

    def reset(self):  # (a failing infer is the loop's to retry and count; a failing reset ends the evaluation)
        raise RuntimeError("out of cheese\nsecond line")


class _Failing(_Broken):
    def reset(self):
        pass

    def infer(self, obs):
        raise RuntimeError("out of cheese")


@pytest.mark.parametrize(
    ("override", "message"),
    [("policy=juggler", "unknown policy 'juggler'"), ("episodes=0", "episodes=0 must be an integer >= 1"),
     ("workers=0", "workers=0 must be an integer >= 1"), ("instruction=backwards", "instruction='backwards' is not"),
     ("rrd_episodes=[5]", "rrd_episodes=[5]"), ("cameras=[top]", "cameras=['top']"),
     ("image_size=64", "fixed reads 32x32 images (its input spec is fixed); image_size=64"),
     ("cameras=[wrist]", "fixed requires observation.images.front; cameras=['wrist'] does not render front"),
     ("compare=juggler", "unknown policy 'juggler'")],
)  # fmt: skip
def test_bad_input_is_one_line_before_any_episode(monkeypatch, capsys, tmp_path, override, message):
    from genba.cli import main

    monkeypatch.setitem(registry.BUILTIN, "fixed", (lambda **_: _Fixed, "fixed 32x32 front camera (tests)"))
    argv = ["eval", "task=reach", "policy=fixed", "episodes=2", f"rrd={tmp_path / 'e.rrd'}", override]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "e.rrd").exists()


def test_an_episode_error_is_one_line_naming_the_seed(monkeypatch):
    monkeypatch.setitem(registry.BUILTIN, "broken", (lambda **_: _Broken, "raises (tests)"))
    with pytest.raises(GenbaError, match=r"^broken on seed 1000000 \(episode 0\): RuntimeError: out of cheese") as e:
        run_eval(EvalConfig(task="reach", policy="broken", episodes=2, workers=1))
    assert "\n" not in str(e.value)


def test_failed_requests_are_counted(monkeypatch, capsys):
    monkeypatch.setitem(registry.BUILTIN, "failing", (lambda **_: _Failing, "infer raises (tests)"))
    summary = run_eval(EvalConfig(task="reach", policy="failing", episodes=2, workers=1))
    assert summary["success_rate"] == 0.0 and summary["failed_requests"] > 0
    assert summary["chunks"] == 0 and summary["latency_ms_p50"] is None  # no call produced a chunk
    assert "RuntimeError: out of cheese" in capsys.readouterr().err


def test_a_worker_error_is_one_line_naming_the_seed(tmp_path, monkeypatch):
    (tmp_path / "eval_broken_policy.py").write_text(
        textwrap.dedent("""
            from genba import keys
            from genba.policies.spec import ActionSpec, Feature, InputSpec

            class Broken:
                input_spec = InputSpec({keys.OBS_STATE: Feature("float32", (6,))})
                action_spec = ActionSpec(horizon=1, dim=6)

                def reset(self):
                    raise RuntimeError("out of cheese")

                def infer(self, obs):
                    return {keys.ACTIONS: obs[keys.OBS_STATE][None]}
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit the path
    with pytest.raises(GenbaError, match=r"eval_broken_policy:Broken on seed 100000[01] \(episode [01]\): Runtime"):
        run_eval(EvalConfig(task="reach", policy="eval_broken_policy:Broken", episodes=2, workers=2))
