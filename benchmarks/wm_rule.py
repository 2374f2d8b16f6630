"""Which success rule should end imagined episodes? Chosen on calibration seeds, then judged on the evaluation seeds.
`python benchmarks/wm_rule.py <run> [out.json] [calibration episodes] [evaluation episodes]` (issue 12).

The world-model env ends an episode when its success head's probability stays above `success_threshold` for
`success_steps` consecutive steps. Ending an episode does not change what happened before it (the policy acts the
same), so one imagined run per policy and seed that never ends early (the task's full time limit) gives the outcome
under every rule: a rule "fires" at the first step that completes `steps` probabilities above `threshold`.

For the ranking's 9 policies (the scripted expert at 7 noise levels, `hold`, `random`), seeded as `genba eval`
seeds an episode: MuJoCo's outcome (no cameras: the policies read none, and the physics are the same) and the
imagined run's per-step probabilities. The rule with the best Spearman r (then Pearson r, then per-seed agreement)
on the calibration seeds (500,000 onwards: neither training's 0.. nor evaluation's 1,000,000..) is then reported on
the evaluation seeds, beside the env's default rule (0.5, 1 step). Prints a table; writes everything to out.json.
"""

from __future__ import annotations

import itertools
import json
import sys
import time

import numpy as np
import torch

from genba.policies.registry import policy_factory
from genba.policies.rollout import rollout, seed_everything
from genba.policies.stats import mmrv, pearson_r, spearman_r, wilson_interval
from genba.sim import make
from genba.worldmodel import make_env

POLICIES = ("scripted", "scripted:noise=0.1", "scripted:noise=0.15", "scripted:noise=0.2", "scripted:noise=0.25",
            "scripted:noise=0.3", "scripted:noise=0.4", "hold", "random")  # fmt: skip
THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
STEPS = (1, 2, 3, 5)
CALIBRATION, EVALUATION = 500_000, 1_000_000


def fires(probs: list[float], threshold: float, steps: int) -> bool:
    """Whether `steps` consecutive probabilities pass `threshold` anywhere in the episode."""
    run = 0
    for p in probs:
        run = run + 1 if p > threshold else 0
        if run >= steps:
            return True
    return False


def episodes(run: str, first: int, n: int) -> dict:
    """{policy: {"mujoco": [bool] * n, "probs": [[float] * T] * n}} for seeds first .. first + n - 1."""
    sim = make("reach", cameras=[])
    dream = make_env("reach", run=run, success_threshold=1 - 1e-9, threads=1)  # never ends early
    probs: list[float] = []
    step = dream.step

    def recorded(action):  # the env's own step, its probability kept
        out = step(action)
        probs.append(out[4]["success_prob"])
        return out

    dream.step = recorded
    out = {}
    for name in POLICIES:
        real, imagined = [], []
        for seed in range(first, first + n):
            seed_everything(seed)
            real.append(rollout(sim, policy_factory(name, task="reach")(), seed).success)
            probs.clear()
            seed_everything(seed)
            rollout(dream, policy_factory(name, task="reach")(), seed)
            imagined.append(list(probs))
        out[name] = {"mujoco": real, "probs": imagined}
        print(f"  {name:22s} seeds {first}..: MuJoCo {sum(real)}/{n}", flush=True)
    sim.close()
    dream.close()
    return out


def judge(data: dict, threshold: float, steps: int) -> dict:
    """Both success rates per policy under a rule, and the ranking metrics between them."""
    rows, agree, total = [], 0, 0
    for name, d in data.items():
        wm = [fires(p, threshold, steps) for p in d["probs"]]
        agree += sum(a == b for a, b in zip(d["mujoco"], wm, strict=True))
        total += len(wm)
        n = len(wm)
        rows.append({"policy": name, "mujoco": sum(d["mujoco"]) / n, "worldmodel": sum(wm) / n,
                     "mujoco_ci95": wilson_interval(sum(d["mujoco"]), n),
                     "worldmodel_ci95": wilson_interval(sum(wm), n)})  # fmt: skip
    real, imagined = [r["mujoco"] for r in rows], [r["worldmodel"] for r in rows]
    return {"threshold": threshold, "steps": steps, "spearman_r": spearman_r(real, imagined),
            "pearson_r": pearson_r(real, imagined), "mmrv": mmrv(real, imagined), "agreement": agree / total,
            "checkpoints": rows}  # fmt: skip


def key(result: dict) -> tuple:
    nan_low = -2.0  # a constant success rate has no correlation: rank it last
    return (result["spearman_r"] if result["spearman_r"] is not None else nan_low,
            result["pearson_r"] if result["pearson_r"] is not None else nan_low, result["agreement"])  # fmt: skip


def main(run: str, out: str = "wm_rule.json", n_cal: int = 20, n_eval: int = 50) -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    print(f"calibration seeds {CALIBRATION}..{CALIBRATION + n_cal - 1}", flush=True)
    cal = episodes(run, CALIBRATION, n_cal)
    rules = [judge(cal, t, k) for t, k in itertools.product(THRESHOLDS, STEPS)]
    best = max(rules, key=key)
    print(f"evaluation seeds {EVALUATION}..{EVALUATION + n_eval - 1}", flush=True)
    ev = episodes(run, EVALUATION, n_eval)
    chosen, default = judge(ev, best["threshold"], best["steps"]), judge(ev, 0.5, 1)
    for name, r in (("default (0.5, 1 step)", default), (f"chosen ({best['threshold']}, {best['steps']})", chosen)):
        print(f"{name}: Spearman {r['spearman_r']}, Pearson {r['pearson_r']}, MMRV {r['mmrv']:.3f}, "
              f"agreement {r['agreement']:.3f}")  # fmt: skip
        for row in r["checkpoints"]:
            print(f"  {row['policy']:22s} MuJoCo {row['mujoco']:.2f}  world model {row['worldmodel']:.2f}")
    summary = {"run": run, "calibration_seeds": [CALIBRATION, CALIBRATION + n_cal - 1],
               "evaluation_seeds": [EVALUATION, EVALUATION + n_eval - 1], "calibration": rules,
               "chosen": chosen, "default": default, "seconds": round(time.perf_counter() - started, 1),
               "probs_evaluation": {k: v["probs"] for k, v in ev.items()},
               "mujoco_evaluation": {k: v["mujoco"] for k, v in ev.items()}}  # fmt: skip
    with open(out, "w") as f:
        json.dump(summary, f, indent=1, default=lambda x: float(x) if isinstance(x, np.floating) else str(x))
    print(out)


if __name__ == "__main__":
    main(sys.argv[1], *sys.argv[2:3], *(int(a) for a in sys.argv[3:5]))
