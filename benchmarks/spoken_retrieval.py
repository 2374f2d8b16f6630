"""Speech-to-instruction retrieval (issue 13): `python benchmarks/spoken_retrieval.py [key=value ...]`.

Trains the backbone's audio encoder with its text encoder (genba.worldmodel.spoken) on the `task`'s instructions
spoken by the seen voices (several speeds and pitches each), then measures R@1 of speech against the task's
instructions, per language, for the seen voices at a prosody not trained on (speed 1, pitch 0) and for the held-out
neural voices (Kokoro-82M). Prints one JSON line; record it in benchmarks/README.md.

Keys: task=reach steps=1500 batch=64 width=128 depth=2 lr=1e-3 seed=0 threads=1 out=outputs/spoken
cache=<out>/corpus-<task>.npz (the synthesized corpus, reused when it exists)
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genba.speech import Voice
from genba.train.loop import TrainConfig, train
from genba.worldmodel.backbone import BackboneConfig
from genba.worldmodel.spoken import SpokenBackbone, Utterance, batches, instructions, retrieval_r1, speak_corpus

SEEN = {
    "en": ["espeak:en-us", "espeak:en-us+m3", "espeak:en+f3", "espeak:en-gb-scotland+f4"],
    "ja": ["espeak:ja", "espeak:ja+m3", "espeak:ja+f3", "openjtalk:mei"],
}
PROSODY = [(0.9, -2.0), (0.9, 2.0), (1.1, -2.0), (1.1, 2.0)]  # (speed, pitch semitones) trained on
HELD_OUT = ["kokoro:jm_kumo", "kokoro:jf_alpha"]  # a neural voice: another engine entirely


def corpora(task: str, cache: Path) -> dict[str, list[Utterance]]:
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return {name: [Utterance(*m, z[f"{name}{i}"]) for i, m in enumerate(rows)] for name, rows in meta.items()}
    out: dict[str, list[Utterance]] = {"train": [], "seen": [], "held_out": []}
    for lang, names in SEEN.items():
        texts = instructions(task, lang)
        for name in names:
            base = Voice.parse(name)
            prosodic = [Voice(base.engine, base.name, s, p) for s, p in PROSODY]
            out["train"] += speak_corpus(texts, lang, prosodic)
            out["seen"] += speak_corpus(texts, lang, [base])
        out["held_out"] += speak_corpus(texts, lang, [Voice.parse(v) for v in HELD_OUT])
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{name}{i}": u.wave for name, us in out.items() for i, u in enumerate(us)}
    meta = {name: [(u.text, u.lang, u.voice) for u in us] for name, us in out.items()}
    np.savez(cache, meta=np.array(json.dumps(meta, ensure_ascii=False)), **arrays)
    return out


def main(argv: list[str]) -> dict:
    opts = {"task": "reach", "steps": "1500", "batch": "64", "width": "128", "depth": "2", "lr": "1e-3", "seed": "0",
            "out": "outputs/spoken", "cache": "", "threads": "1"}  # fmt: skip
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in opts:
            raise SystemExit(f"unknown key {key!r} (valid: {', '.join(opts)})")
        opts[key] = value
    torch.manual_seed(int(opts["seed"]))
    # One thread: on the shared 2-core machine two threads made a step 20x slower (4.1 s against 0.2 s, measured
    # with other jobs running), from contention alone.
    torch.set_num_threads(int(opts["threads"]))
    started = time.perf_counter()
    data = corpora(opts["task"], Path(opts["cache"] or f"{opts['out']}/corpus-{opts['task']}.npz"))
    synth_s = time.perf_counter() - started
    w = int(opts["width"])
    cfg = BackboneConfig(image_size=32, patch_size=16, width=32, depth=1, heads=2, text_width=w, text_depth=2,
                         embed_dim=w, audio_width=w, audio_depth=int(opts["depth"]), audio_heads=4)  # fmt: skip
    model = SpokenBackbone(cfg)
    steps = int(opts["steps"])
    tcfg = TrainConfig(out=f"{opts['out']}/run", steps=steps, lr=float(opts["lr"]), min_lr=float(opts["lr"]) / 20,
                       warmup=min(100, steps // 10), weight_decay=0.05, seed=int(opts["seed"]), log_every=50,
                       device="cpu", progress=True)  # fmt: skip
    t0 = time.perf_counter()
    summary = train(tcfg, model, batches(data["train"], int(opts["batch"]), seed=int(opts["seed"])))
    train_s = time.perf_counter() - t0
    candidates = {lang: instructions(opts["task"], lang) for lang in SEEN}
    result = {
        "task": opts["task"],
        "candidates_per_language": {k: len(v) for k, v in candidates.items()},
        "train_utterances": len(data["train"]),
        "r1_seen": retrieval_r1(model, data["seen"], candidates),
        "r1_held_out": retrieval_r1(model, data["held_out"], candidates),
        "final_loss": summary.get("final_loss", summary.get("loss")),
        "steps": steps,
        "train_s": round(train_s, 1),
        "synth_s": round(synth_s, 1),
        "params": sum(p.numel() for n, p in model.named_parameters() if not n.startswith("vision")),
        "device": f"cpu ({torch.get_num_threads()} threads), {platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d"),
        "options": opts,
    }
    print(json.dumps(result, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
