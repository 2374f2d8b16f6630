"""Is reach control learnable from the demonstrations when the object's position is known? (issue 11)

An MLP maps the joint state and the named object's true position (environment-state slot 0: x, y and with
`dims=3` z) to a 16 x 6 action chunk (L1 on normalized actions), trained on a genba reach dataset in under a
minute. `genba eval` then runs it as a policy; `GENBA_PROBE_NOISE` (metres per axis) adds a position error drawn
once per episode, to ask how exact a localization head must be.

    python benchmarks/control_probe.py train data=<dataset> out=<probe.safetensors> [dims=2] [steps=4000] [seed=0]
    GENBA_PROBE=<probe.safetensors> [GENBA_PROBE_NOISE=0.01] PYTHONPATH=benchmarks \\
        genba eval task=reach policy=control_probe:ControlProbe episodes=100 seed=500000
"""

from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genba import keys
from genba.policies.spec import ActionSpec, Feature, InputSpec

H, S, A = 16, 6, 6  # horizon, state size, action size
HOLDOUT = 10  # last episodes, for the validation loss
STATS = ("x_mean", "x_std", "y_mean", "y_std")


def mlp(dims: int) -> nn.Module:
    return nn.Sequential(nn.Linear(S + dims, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                         nn.Linear(256, 256), nn.GELU(), nn.Linear(256, H * A))  # fmt: skip


def samples(root: str, dims: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every frame of the dataset -> inputs (N, S + dims), chunks (N, H, A) (the last action repeated past the
    episode's end), episode indices (N,)."""
    files = sorted(glob.glob(f"{root}/data/*/*.parquet"))
    if not files:
        raise SystemExit(f"{root}: no data/*/*.parquet (a genba dataset with {keys.OBS_ENV_STATE} is needed)")
    df = pd.concat([pd.read_parquet(f) for f in files]).sort_values([keys.EPISODE_INDEX, "frame_index"])
    xs, ys, eps = [], [], []
    for ep, g in df.groupby(keys.EPISODE_INDEX):
        state = np.stack(g[keys.OBS_STATE].to_numpy()).astype(np.float32)  # (T, S)
        where = np.stack(g[keys.OBS_ENV_STATE].to_numpy()).astype(np.float32)[:, :dims]  # (T, dims)
        act = np.stack(g[keys.ACTION].to_numpy()).astype(np.float32)  # (T, A)
        for t in range(len(g)):
            xs.append(np.concatenate([state[t], where[t]]))
            ys.append(act[np.minimum(np.arange(t, t + H), len(g) - 1)])
            eps.append(ep)
    return np.stack(xs), np.stack(ys), np.array(eps)


def train(data: str, out: str, dims: int = 2, steps: int = 4000, seed: int = 0) -> None:
    torch.manual_seed(seed)
    x, y, ep = samples(data, dims)
    held = np.isin(ep, np.unique(ep)[-HOLDOUT:])
    stats = {"x_mean": x[~held].mean(0), "x_std": x[~held].std(0) + 1e-6,
             "y_mean": y[~held].reshape(-1, A).mean(0), "y_std": y[~held].reshape(-1, A).std(0) + 1e-6}  # fmt: skip
    X = torch.tensor((x - stats["x_mean"]) / stats["x_std"])  # (N, S + dims)
    Y = torch.tensor((y - stats["y_mean"]) / stats["y_std"]).flatten(1)  # (N, H x A)
    model = mlp(dims)
    opt = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rows = torch.tensor(np.flatnonzero(~held))
    for _ in range(steps):
        b = rows[torch.randint(len(rows), (256,))]
        loss = (model(X[b]) - Y[b]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        l1 = {n: (model(X[m]) - Y[m]).abs().mean().item() for n, m in (("train_l1", ~held), ("val_l1", held))}
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file({**weights, **{k: torch.tensor(v) for k, v in stats.items()}}, out, metadata={"dims": str(dims)})
    print(json.dumps({"frames": len(x), "episodes": len(np.unique(ep)), **l1, "out": out}))


class ControlProbe:
    """The trained MLP as a genba policy: reads the state and the privileged environment state."""

    def __init__(self, n_action_steps: int = 8, **_: object) -> None:
        from safetensors import safe_open

        path = os.environ["GENBA_PROBE"]
        with safe_open(path, "pt") as f:
            self.dims = int(f.metadata()["dims"])
        weights = load_file(path)
        self.stats = {k: weights.pop(k).numpy() for k in STATS}
        self.model = mlp(self.dims).eval()
        self.model.load_state_dict(weights)
        self.sigma = float(os.environ.get("GENBA_PROBE_NOISE", "0"))
        self.name = "control_probe"
        self.input_spec = InputSpec({
            keys.OBS_STATE: Feature("float32", (S,), description="joint positions"),
            keys.OBS_ENV_STATE: Feature("float32", (35,), description="privileged object state"),
            keys.TASK: Feature("str", required=False, description="instruction (ignored)"),
        })  # fmt: skip
        self.action_spec = ActionSpec(horizon=int(n_action_steps), dim=A)
        self.reset()

    def reset(self) -> None:  # genba eval seeds NumPy from each episode's seed: the error is the episode's own
        self.error = np.random.normal(0.0, self.sigma, self.dims).astype(np.float32) if self.sigma else 0.0

    def infer(self, obs: dict) -> dict:
        s = self.stats
        x = np.concatenate([obs[keys.OBS_STATE], obs[keys.OBS_ENV_STATE][: self.dims] + self.error])
        with torch.no_grad():
            y = self.model(torch.tensor((x - s["x_mean"]) / s["x_std"], dtype=torch.float32)[None])  # (1, H x A)
        chunk = y.view(H, A).numpy() * s["y_std"] + s["y_mean"]
        return {keys.ACTIONS: chunk[: self.action_spec.horizon].astype(np.float32)}


def main(argv: list[str]) -> None:
    if not argv or argv[0] != "train":
        raise SystemExit(__doc__)
    opts = {"data": "", "out": "", "dims": "2", "steps": "4000", "seed": "0"}
    for a in argv[1:]:
        key, _, value = a.partition("=")
        if key not in opts:
            raise SystemExit(f"unknown option {key!r} (valid: {', '.join(opts)})")
        opts[key] = value
    if not opts["data"] or not opts["out"]:
        raise SystemExit("train needs data=<dataset> and out=<file.safetensors>")
    train(opts["data"], opts["out"], int(opts["dims"]), int(opts["steps"]), int(opts["seed"]))


if __name__ == "__main__":
    main(sys.argv[1:])
