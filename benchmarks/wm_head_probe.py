"""Does a world model's success head judge real frames as it judges imagined ones?
`python benchmarks/wm_head_probe.py <run> [episodes] [policy ...]` (issue 12, the ranking's diagnosis).

For each policy (default: the scripted expert clean and at noise 0.3, `hold`, `random`; or those named, e.g. a VLA
run folder) and seeds 1,000,000 onwards (seeded as
`genba eval` seeds an episode): the MuJoCo episode, its real frames fed teacher-forced to the head (windows of the
model's clip_frames ending at each frame; the head "fires" when a frame's probability passes 0.5), and the same seed
run in the world-model env (fires = the env ends it as a success). Prints one line per policy: where the head fires
on the real frames of real successes and of real failures, and how often the imagined outcome is MuJoCo's.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from genba import keys
from genba.policies.registry import policy_factory
from genba.policies.rollout import rollout, seed_everything
from genba.sim import make
from genba.worldmodel import make_env
from genba.worldmodel.env import load_worldmodel

POLICIES = ("scripted", "scripted:noise=0.3", "hold", "random")


@torch.no_grad()
def teacher_forced(model, cfg, episode) -> list[float]:
    """The head's probability at each real frame, from the window of up to clip_frames frames ending there."""
    images = torch.stack([torch.from_numpy(episode.frames[keys.image_key(c)]).permute(0, 3, 1, 2)
                          for c in cfg.cameras], 1)  # (T, C, 3, H, W) uint8  # fmt: skip
    state = torch.from_numpy(episode.frames[keys.OBS_STATE]).float()
    action = torch.from_numpy(episode.frames[keys.ACTION]).float()
    _, text = model.backbone.encode_text([episode.task])
    probs = []
    for t in range(episode.steps):
        lo = max(0, t - cfg.clip_frames + 1)
        x = images[lo : t + 1][None].float() / 255.0
        s, a = model.norm(state[lo : t + 1][None], "state"), model.norm(action[lo : t + 1][None], "action")
        h = model._run(model._tokens(model.encode(x), model.features(x), s, a, text), 0)
        probs.append(float(torch.sigmoid(model._success(h)).flatten()[-1]))
    return probs


def main(run: str, episodes: int = 10, policies: tuple[str, ...] = POLICIES) -> None:
    torch.set_num_threads(1)
    model, cfg, _ = load_worldmodel(run)
    sim, dream = make("reach", cameras=list(cfg.cameras), image_size=cfg.image_size), make_env("reach", run=run)
    for name in policies:
        peaks, outcomes = [], []  # outcomes: (real, imagined) per seed
        for seed in range(1_000_000, 1_000_000 + episodes):
            seed_everything(seed)
            episode = rollout(sim, policy_factory(name, task="reach")(), seed, record=True)
            peaks.append(max(teacher_forced(model, cfg, episode)))
            seed_everything(seed)
            outcomes.append((episode.success, rollout(dream, policy_factory(name, task="reach")(), seed).success))
        real, imagined = sum(o[0] for o in outcomes), sum(o[1] for o in outcomes)
        fired = [p > 0.5 for p in peaks]
        on_won = sum(f for f, o in zip(fired, outcomes, strict=True) if o[0])
        on_lost = sum(f for f, o in zip(fired, outcomes, strict=True) if not o[0])
        agree = sum(o[0] == o[1] for o in outcomes)
        print(f"{name:20s} MuJoCo successes {real}/{episodes}; head fires on real frames in {sum(fired)}/{episodes} "
              f"(median peak {np.median(peaks):.2f}; on {on_won}/{real} real successes, {on_lost}/{episodes - real} "
              f"real failures); imagined successes {imagined}/{episodes}; agreement {agree}/{episodes}")  # fmt: skip
    sim.close()
    dream.close()


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:3]), *([tuple(sys.argv[3:])] if sys.argv[3:] else []))
