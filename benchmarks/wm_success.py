"""The world model's success head on a run's held-out episodes: `python benchmarks/wm_success.py <run> [out.json]`.

Two views, both on the episodes of `<run>/split.json`'s "val" list:

- frames, teacher-forced: every window of `clip_frames` real frames; the head's next.success probability at each
  frame against the label (1 only on a successful episode's last frame). Reports accuracy, the true-positive rate
  and the true-negative rate at 0.5, and the ROC AUC.
- episodes, imagined as the world-model env does: from the episode's first real frame, the episode's own actions fed
  one by one to `imagine_step`; the episode counts as a success when the probability passes 0.5 at any step (the
  env would end it there). Reports agreement with the real outcome, per outcome, for real successes how many steps
  before or after the real end the head fired, and the threshold-free AUC of each episode's highest probability.

Prints one JSON summary (and writes it to out.json when given). Record the figures in benchmarks/README.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genba import keys
from genba.datasets.commit import read_all_episode_meta
from genba.datasets.split import read_split
from genba.worldmodel.data import ClipBatches, clip_dataset, success_labels
from genba.worldmodel.env import load_worldmodel


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC by the rank-sum (Mann-Whitney) statistic; None with one class."""
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    if not len(pos) or not len(neg):
        return None
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]))) + 1.0
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@torch.no_grad()
def frame_view(model, cfg, ds, labels) -> dict:
    probs, truth = [], []
    for batch in ClipBatches(ds, batch_size=16, shuffle=False, labels=labels)(0):
        frames = torch.stack([torch.cat([batch[keys.image_key(c)], batch[keys.future_image_key(c)]], 1)
                              for c in cfg.cameras], 2)  # fmt: skip
        x = frames.float() / 255.0  # (B, T, C, 3, H, W)
        s = model.norm(torch.cat([batch[cfg.state_key], batch[keys.FUTURE_STATE]], 1), "state")
        a = model.norm(batch[cfg.action_key][:, : s.shape[1]], "action")
        _, text = model.backbone.encode_text(list(batch[keys.TASK]))
        h = model._run(model._tokens(model.encode(x), model.features(x), s, a, text), 0)
        probs.append(torch.sigmoid(model._success(h)).flatten().numpy())
        truth.append(batch[keys.NEXT_SUCCESS].flatten().numpy())
    p, y = np.concatenate(probs), np.concatenate(truth)
    hit = (p > 0.5) == (y > 0.5)
    return {"frames": len(y), "positives": int(y.sum()), "accuracy": round(float(hit.mean()), 4),
            "tpr": round(float(hit[y > 0.5].mean()), 4) if y.sum() else None,
            "tnr": round(float(hit[y <= 0.5].mean()), 4), "auc": auc(p, y)}  # fmt: skip


@torch.no_grad()
def episode_view(model, cfg, ds, episodes: list[int], records: list[dict]) -> dict:
    rows = []
    for e in episodes:
        start, end = int(ds.ep_from[e]), int(ds.ep_to[e])
        first = ds[list(ds.rows).index(start)]
        images = {c: first[keys.image_key(c)][:1] for c in cfg.cameras}  # (1, 3, H, W)
        dream = model.imagine(images, first[cfg.state_key][:1], [first[keys.TASK]])
        actions = torch.from_numpy(ds.columns[cfg.action_key][start:end]).float()  # (T, A)
        probs = [float(model.imagine_step(dream, actions[t : t + 1])["success"][0]) for t in range(end - start)]
        fired = next((t for t, p in enumerate(probs) if p > 0.5), None)
        real = bool(records[e]["success"])
        rows.append({"episode": e, "real": real, "imagined": fired is not None, "max_prob": max(probs),
                     "fired_minus_end": None if fired is None else fired - (end - start - 1)})  # fmt: skip
    agree = [r["real"] == r["imagined"] for r in rows]
    won = [r for r in rows if r["real"]]
    lost = [r for r in rows if not r["real"]]
    offsets = [r["fired_minus_end"] for r in won if r["imagined"]]
    return {"episodes": len(rows), "real_successes": len(won), "agreement": round(float(np.mean(agree)), 4),
            "successes_recognised": f"{sum(r['imagined'] for r in won)}/{len(won)}",
            "failures_recognised": f"{sum(not r['imagined'] for r in lost)}/{len(lost)}",
            "fired_minus_end_median": float(np.median(offsets)) if offsets else None,
            "auc_of_max_prob": auc(np.array([r["max_prob"] for r in rows]), np.array([r["real"] for r in rows])),
            "max_prob_median": {"successes": float(np.median([r["max_prob"] for r in won])) if won else None,
                                "failures": float(np.median([r["max_prob"] for r in lost])) if lost else None},
            "imagined_success_rate": round(float(np.mean([r["imagined"] for r in rows])), 4),
            "real_success_rate": round(len(won) / len(rows), 4)}  # fmt: skip


def main(run: str, out: str = "") -> dict:
    torch.set_num_threads(1)
    started = time.perf_counter()
    model, cfg, folder = load_worldmodel(run)
    split = read_split(Path(run) / "split.json")
    val = sorted(split["val"])
    ds = clip_dataset(split["dataset"], cfg.clip_frames, image_size=cfg.image_size, episodes=val, progress=False)
    labels = success_labels(ds)
    records = {r["episode_index"]: r for r in read_all_episode_meta(ds.root)}
    summary = {"run": str(folder), "held_out_episodes": val, "frame": frame_view(model, cfg, ds, labels),
               "episode": episode_view(model, cfg, ds, val, records),
               "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    text = json.dumps(summary, indent=1)
    print(text)
    if out:
        Path(out).write_text(text)
    return summary


if __name__ == "__main__":
    main(*sys.argv[1:3])
