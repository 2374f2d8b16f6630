"""Perception against control in a VLA run with a locate token (issue 11).

`OracleVLA` is a trained run whose locate token holds the named object's true (x, y) (environment-state slot 0)
instead of its localization head's answer: success then measures the action expert alone. `HeadLog` is the run
unchanged that also writes its head's error at every chunk request; `summary` relates that error at the first
request to success.

    GENBA_RUN=<run>/last PYTHONPATH=benchmarks genba eval task=reach policy=vla_oracle:OracleVLA episodes=100 \\
        seed=500000 workers=1
    GENBA_RUN=<run>/last GENBA_LOG=<log.jsonl> PYTHONPATH=benchmarks genba eval task=reach \\
        policy=vla_oracle:HeadLog episodes=100 seed=500000 workers=1 out=<eval.json>
    python benchmarks/vla_oracle.py summary <log.jsonl> <eval.json>

Run HeadLog with workers=1: episodes are numbered in the order the policy is reset.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import sys
from typing import Any

import numpy as np
import torch

from genba import keys
from genba.policies.spec import Feature, InputSpec
from genba.policies.vla import LOCATE_SCALE
from genba.policies.vla_policy import VLAPolicy

BINS_CM = (0.0, 0.5, 1.0, 1.5, 2.0, float("inf"))


class _Privileged(VLAPolicy):
    """The run of GENBA_RUN, also reading the privileged environment state."""

    def __init__(self, n_action_steps: int | None = None, threads: int = 0, **_: object) -> None:
        super().__init__(os.environ["GENBA_RUN"], n_action_steps=n_action_steps, threads=threads)
        if not self.config.locate_token:
            raise SystemExit(f"{os.environ['GENBA_RUN']}: this run has no locate token")
        feats = dict(self.input_spec.features)
        feats[keys.OBS_ENV_STATE] = Feature("float32", (35,), description="privileged object state")
        self.input_spec = InputSpec(feats)

    @staticmethod
    def true_xy(batch: list[dict[str, Any]]) -> np.ndarray:
        """The named object's (x, y) in metres (B, 2)."""
        return np.stack([np.asarray(o[keys.OBS_ENV_STATE], np.float32)[:2] for o in batch])


class OracleVLA(_Privileged):
    def infer_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        prefix = self.model.prefix
        given = torch.from_numpy(self.true_xy(batch) / LOCATE_SCALE).to(self.device)  # (B, 2)
        self.model.prefix = functools.partial(prefix, true_xy=given, use_true=torch.ones(len(batch), dtype=torch.bool))
        try:
            return super().infer_batch(batch)
        finally:
            del self.model.prefix  # the bound method again


class HeadLog(_Privileged):
    def __init__(self, **kwargs: Any) -> None:
        self.episode, self.request = -2, 0  # the base class resets once while it is built
        super().__init__(**kwargs)

    def reset(self) -> None:
        super().reset()
        self.episode, self.request = self.episode + 1, 0

    def infer_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        m, cfg = self.model, self.config
        with torch.no_grad():
            images = {c: torch.from_numpy(np.stack([o[keys.image_key(c)] for o in batch])).permute(0, 3, 1, 2)
                      for c in cfg.cameras}  # fmt: skip
            tasks = [str(o[keys.TASK]) for o in batch]
            pooled = m.ngrams(tasks) if cfg.text_ngrams else m.backbone.text(m.backbone.text.tokenize(tasks, "cpu"))[1]
            points = torch.cat([m.keypoints[i](images[c], pooled) for i, c in enumerate(cfg.cameras)], dim=1)
            head = m.locate_out(points.flatten(1)).numpy() * LOCATE_SCALE  # (B, 2) metres
        with open(os.environ["GENBA_LOG"], "a") as f:
            for err in np.linalg.norm(head - self.true_xy(batch), axis=1):
                f.write(
                    json.dumps({"episode": self.episode, "request": self.request, "err_cm": 100 * float(err)}) + "\n"
                )
        self.request += 1
        return super().infer_batch(batch)


def summary(log_path: str, eval_path: str) -> dict:
    with open(log_path) as f:
        rows = [json.loads(line) for line in f]
    with open(eval_path) as f:
        success = np.array([bool(e["success"]) for e in json.load(f)["per_episode"]])
    first = np.array([r["err_cm"] for r in sorted(rows, key=lambda r: r["episode"]) if r["request"] == 0])
    later = np.array([r["err_cm"] for r in rows if r["request"] > 0])
    if len(first) != len(success):
        raise SystemExit(f"{log_path} has {len(first)} episodes, {eval_path} {len(success)}: one log per evaluation")
    bins = []
    for lo, hi in itertools.pairwise(BINS_CM):
        inside = (first >= lo) & (first < hi)
        bins.append(
            {
                "err_cm": [lo, hi if np.isfinite(hi) else None],
                "episodes": int(inside.sum()),
                "successes": int(success[inside].sum()),
            }
        )
    return {"first_request_median_cm": float(np.median(first)), "first_request_p90_cm": float(np.percentile(first, 90)),
            "later_requests_median_cm": float(np.median(later)) if len(later) else None,
            "success_rate": float(success.mean()), "by_first_error": bins}  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "summary":
        raise SystemExit(__doc__)
    print(json.dumps(summary(sys.argv[2], sys.argv[3])))
