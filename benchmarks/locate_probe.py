"""Can a small network locate the named object on the first frame of a new reach scene? (issue 11)

The VLA's keypoint network (genba.policies.vla.Keypoints: a small CNN, FiLM by the instruction, spatial softmax)
plus an MLP regresses the named object's (x, y) from one 64x64 front-camera frame and the instruction, trained on
the first frames of `scenes` reach scenes (seeds 0..) and measured on 200 new ones (seeds 1,000,000..). No actions:
this isolates the perception a reach policy needs (the tip must end within 1.5 cm of its aim).

    python benchmarks/locate_probe.py scenes=200 text=bytes queries=named shift=0
    python benchmarks/locate_probe.py scenes=200 text=ngrams queries=every shift=3

text: bytes (the backbone's byte transformer, mean-pooled), ngrams (genba.worldmodel.backbone.ByteNGrams) or words
(a bag of whitespace words, an English-only reference). queries: named (the episode's instruction only) or every
(each solid object of the scene, in the episode's template: genba.policies.relabel's relabelling).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import genba.sim
from genba.policies.vla import Keypoints, random_shift
from genba.sim.scene import rename_instruction, sample_spec
from genba.worldmodel.backbone import Backbone, BackboneConfig, ByteNGrams

EVAL_SEED = 1_000_000
WIDTH = 128


def scenes(start: int, n: int) -> dict:
    """First frames (N, 3, 64, 64) uint8, every solid object's [(instruction, (x, y))] per scene, named first."""
    env = genba.sim.make("reach", image_size=64, lang="en", cameras=["front"])
    frames, asked = [], []
    for seed in range(start, start + n):
        obs, _ = env.reset(seed=seed)
        frames.append(obs["pixels"]["front"])
        spec = sample_spec("reach", seed, "en")
        solids = sorted((o for o in spec["objects"] if o["role"] in ("object", "distractor")),
                        key=lambda o: o["role"] != "object")  # fmt: skip
        asked.append([(rename_instruction(spec, o), tuple(o["pos"][:2])) for o in solids])
    return {"frames": torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous(), "asked": asked}


class Words(nn.Module):
    def __init__(self, vocab: list[str]) -> None:
        super().__init__()
        self.vocab = {w: i for i, w in enumerate(vocab)}
        self.embed = nn.EmbeddingBag(len(vocab) + 1, WIDTH, mode="mean")

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = [[self.vocab.get(w, len(self.vocab)) for w in t.split()] for t in texts]
        offsets = torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)
        return self.embed(torch.tensor([i for row in ids for i in row]), offsets)  # (B, WIDTH)


class Locator(nn.Module):
    def __init__(self, text: str, vocab: list[str]) -> None:
        super().__init__()
        self.text = text
        if text == "bytes":
            self.encoder = Backbone(BackboneConfig(image_size=64, patch_size=16, width=WIDTH, depth=1, heads=4,
                                                   text_width=WIDTH, text_depth=2, text_heads=4)).text  # fmt: skip
        else:
            self.encoder = ByteNGrams(4096, WIDTH) if text == "ngrams" else Words(vocab)
        self.keypoints = Keypoints(8, WIDTH)
        self.head = nn.Sequential(nn.Linear(16, WIDTH), nn.GELU(), nn.Linear(WIDTH, 2))

    def forward(self, frames: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """frames (B, 3, 64, 64) uint8, texts -> (B, 2) normalized (x, y)."""
        pooled = self.encoder(self.encoder.tokenize(texts))[1] if self.text == "bytes" else self.encoder(texts)
        return self.head(self.keypoints(frames, pooled).flatten(1))


def main(argv: list[str]) -> None:
    opts = {"scenes": "200", "text": "ngrams", "queries": "every", "shift": "3", "steps": "1600", "seed": "0"}
    for a in argv:
        key, _, value = a.partition("=")
        if key not in opts:
            raise SystemExit(f"unknown option {key!r} (valid: {', '.join(opts)})")
        opts[key] = value
    torch.set_num_threads(1)
    torch.manual_seed(int(opts["seed"]))
    train, test = scenes(0, int(opts["scenes"])), scenes(EVAL_SEED, 200)
    xy = torch.tensor([p for a in train["asked"] for _, p in a])
    mu, sd = xy.mean(0), xy.std(0)
    vocab = sorted({w for a in train["asked"] for t, _ in a for w in t.split()})
    model = Locator(opts["text"], vocab)
    steps, shift = int(opts["steps"]), int(opts["shift"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.05)
    rng = np.random.default_rng(int(opts["seed"]))

    def error(data: dict) -> tuple[float, float]:
        """Median named-object error (cm) and the share within 1.5 cm, on the first 200 scenes of `data`."""
        model.eval()
        with torch.no_grad():
            texts = [a[0][0] for a in data["asked"][:200]]
            pred = model(data["frames"][:200], texts) * sd + mu
        model.train()
        target = torch.tensor([a[0][1] for a in data["asked"][:200]])
        d = (pred - target).norm(dim=1) * 100
        return d.median().item(), (d < 1.5).float().mean().item()

    started = time.perf_counter()
    for step in range(1, steps + 1):
        idx = rng.integers(0, len(train["asked"]), 32)
        asked = [train["asked"][i] for i in idx]
        pick = [a[0] if opts["queries"] == "named" else a[rng.integers(len(a))] for a in asked]
        target = (torch.tensor([p for _, p in pick]) - mu) / sd
        frames = random_shift(train["frames"][idx], shift)
        loss = F.mse_loss(model(frames, [t for t, _ in pick]), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % (steps // 4) == 0 or step == steps:
            (e0, f0), (e1, f1) = error(train), error(test)
            print(f"step {step} ({time.perf_counter() - started:.0f} s): training scenes {e0:.2f} cm ({f0:.0%} < 1.5), "
                  f"new scenes {e1:.2f} cm ({f1:.0%} < 1.5)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
