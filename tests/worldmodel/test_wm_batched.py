"""Batched imagination (genba.worldmodel.batched): episodes stepped together in one `imagine_step` per step give,
seed for seed, the unbatched env's outcomes, lengths, frames and states; `genba eval env=worldmodel batch=` reports
the same episodes as batch=1, also in a pool of workers kept across evaluations (as eval-ranking runs them)."""

import numpy as np
import pytest

import genba.worldmodel
from genba import keys
from genba.policies.evaluate import EvalConfig, run_eval
from genba.policies.registry import policy_factory
from genba.policies.rollout import rollout, seed_everything
from genba.worldmodel.batched import Job, run_batch

pytestmark = pytest.mark.xdist_group("worldmodel")

SEEDS = list(range(1_000_000, 1_000_006))
POLICY = "scripted:noise=0.3"  # keeps a plan and draws its noise from NumPy's global generator at reset


class Jittery:
    """The noisy scripted expert plus noise from NumPy's and torch's global generators at every chunk: what a batch
    must swap per episode so that each draws what it would alone."""

    def __init__(self) -> None:
        self.inner = policy_factory(POLICY, task="reach")()
        self.input_spec, self.action_spec = self.inner.input_spec, self.inner.action_spec

    def reset(self) -> None:
        self.inner.reset()

    def infer(self, obs: dict) -> dict:
        import torch

        actions = self.inner.infer(obs)[keys.ACTIONS]  # (H, A)
        noise = 0.03 * np.random.standard_normal(actions.shape) + 0.03 * torch.randn(actions.shape).numpy()
        return {keys.ACTIONS: (actions + noise).astype(np.float32)}


def _threshold(probs: np.ndarray) -> float:
    """A success threshold among the high probabilities, at least 2e-5 from every one of them (batched products
    round differently by ~1e-7, which must not move a verdict): the middle of the widest gap between neighbours."""
    p = np.sort(probs.ravel())
    lo, hi = int(len(p) * 0.75), int(len(p) * 0.98)
    gaps = np.diff(p[lo:hi])
    k = int(np.argmax(gaps))
    assert gaps[k] > 4e-5, "the probabilities leave no clear gap to put a threshold in"
    return float(p[lo + k] + gaps[k] / 2)


def test_batched_episodes_equal_the_unbatched_env_per_seed(reach_wm_run):
    run = str(reach_wm_run["run"])
    make = Jittery
    never = genba.worldmodel.make_env("reach", run=run, success_threshold=1 - 1e-9)
    alone, probs = [], []
    for seed in SEEDS:  # each episode alone, to the time limit; its success probabilities replayed step by step
        seed_everything(seed)
        episode = rollout(never, make(), seed, record=True)
        never.reset(seed=seed)
        probs.append([never.step(a)[4]["success_prob"] for a in episode.frames[keys.ACTION]])
        alone.append(episode)
    probs = np.asarray(probs)  # (seeds, 40)
    threshold = _threshold(probs)
    above = probs > threshold
    expected = [(True, int(np.argmax(row)) + 1) if row.any() else (False, probs.shape[1]) for row in above]
    assert len({steps for _, steps in expected}) > 2, expected  # episodes leave the batch at different steps

    env = genba.worldmodel.make_env("reach", run=run, success_threshold=threshold)
    done = run_batch(env, [Job(seed, make(), record=True) for seed in SEEDS])
    assert [(e.success, e.steps) for e, _ in done] == expected
    for (episode, episode_env), whole, seed in zip(done, alone, SEEDS, strict=True):
        assert episode.seed == seed and episode_env.episode_spec()["seed"] == seed
        assert episode.truncation_reason == (None if episode.success else "time_limit")
        n = episode.steps
        for key, frames in episode.frames.items():  # the unbatched episode's first n frames and actions
            if frames.dtype == np.uint8:
                diff = np.abs(frames.astype(int) - whole.frames[key][:n].astype(int))
                assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (seed, key)  # a rounding edge, rarely
            else:
                np.testing.assert_allclose(frames, whole.frames[key][:n], atol=1e-4, err_msg=f"{seed} {key}")
    seed_everything(SEEDS[0])  # and the unbatched env at that threshold ends where the batch did
    single = rollout(env, make(), SEEDS[0])
    assert (single.success, single.steps) == expected[0]


def test_eval_batches_report_the_same_episodes_as_one_at_a_time_in_a_kept_pool(reach_wm_run):
    from genba.policies import eval_worker

    common = dict(task="reach", policy=POLICY, episodes=4, workers=2, env="worldmodel",
                  worldmodel=str(reach_wm_run["run"]))  # fmt: skip
    with eval_worker.kept_pool():  # as eval-ranking runs its evaluations: one pool of workers for all
        one = run_eval(EvalConfig(**common, batch=1))
        pool = eval_worker._KEPT[2]
        batched = run_eval(EvalConfig(**common))
        real = run_eval(EvalConfig(task="reach", policy="hold", episodes=2, workers=2))  # MuJoCo, the same workers
        kept = dict(eval_worker._KEPT)
    assert kept == {2: pool}
    assert eval_worker._KEPT is None
    assert (one["batch"], batched["batch"], real["backend"]) == (1, 2, "mujoco")
    assert set(one) == set(batched)
    fields = ("seed", "success", "steps", "task", "truncation_reason", "requests")
    rows = [[[e[k] for k in fields] for e in summary["per_episode"]] for summary in (one, batched)]
    assert rows[0] == rows[1]
    shares = [e["episode_seconds"] for e in batched["per_episode"]]
    assert shares[0] == shares[1] and shares[2] == shares[3] and 0 < sum(shares) < 2 * batched["seconds"]
    with pytest.raises(ValueError, match="batch= are the world model's: they need env=worldmodel"):
        EvalConfig(task="reach", policy="hold", batch=4)
    with pytest.raises(ValueError, match=r"batch=0 must be an integer >= 1"):
        EvalConfig(**common, batch=0)
