"""Speech-to-instruction retrieval (issue 13): `python benchmarks/spoken_retrieval.py [key=value ...]`.

Trains the backbone's audio encoder with its text encoder (genba.worldmodel.spoken) on the `task`'s instructions
spoken by the seen voices (several speeds and pitches each), then measures R@1 of speech against the task's
instructions, per language, for the seen voices at a prosody not trained on (speed 1, pitch 0) and for voices kept
out of training. Prints one JSON line; record it in benchmarks/README.md.

- `protocol=engine`: a held-out engine. Training hears espeak-ng and OpenJTalk only; the test is the neural
  Kokoro-82M voices `jm_kumo` and `jf_alpha`.
- `protocol=voice` (default): a held-out voice. Three of Kokoro's voices join training; `jf_alpha` is the validation
  voice (settings may be chosen on it) and `jm_kumo` the test voice (nothing is chosen on it).

Keys: task=reach protocol=voice steps=1500 batch=64 width=128 depth=2 lr=1e-3 seed=0 threads=1 out=outputs/spoken
cache=outputs/spoken/corpus (one file per voice and language, synthesized once) synth_only=0|1
voice_aug=0|1 (genba.worldmodel.spoken.perturb_voice on every training utterance: speed, equalizer, masks)
ctc=1|0 (default 1 since the twelfth session: the audio tokens also transcribe the instruction's characters, CTC,
weighted by ctc_weight=1.0; R@1 is then also reported by the transcription head's likelihood of each candidate,
`r1_*_transcription`)
low_voices=0|1 (protocol=voice: Kokoro's training voices also at 4 and 7 semitones lower, speed 1; Kokoro has no
native pitch, so the shift resamples and lowers the formants with the pitch, as a longer vocal tract does)
eval_only=<out>/run/last: measure a run already trained (with the options it was trained with) instead of training

The JSON line carries every utterance's hit (`hits`: split -> readout -> language -> voice -> 0/1 in corpus order), so
two runs compare per utterance (exact McNemar) on the same utterances.
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
from genba.train.checkpoint import load_model
from genba.train.loop import TrainConfig, train
from genba.worldmodel.backbone import BackboneConfig, alphabet
from genba.worldmodel.spoken import (
    SpokenBackbone,
    Utterance,
    batches,
    instructions,
    r1_of,
    retrieval_hits,
    speak_corpus,
)

SEEN = {
    "en": ["espeak:en-us", "espeak:en-us+m3", "espeak:en+f3", "espeak:en-gb-scotland+f4"],
    "ja": ["espeak:ja", "espeak:ja+m3", "espeak:ja+f3", "openjtalk:mei"],
}
PROSODY = [(0.9, -2.0), (0.9, 2.0), (1.1, -2.0), (1.1, 2.0)]  # (speed, pitch semitones) trained on
# protocol=voice: three of Kokoro's five voices (neural, both languages) join training at two prosodies (Kokoro is
# about 1 s an utterance on this CPU); jf_alpha is the validation voice that settings may be chosen on, and jm_kumo,
# the only male Kokoro voice, the test voice that nothing is chosen on.
KOKORO_TRAIN = ["kokoro:jf_gongitsune", "kokoro:jf_nezumi", "kokoro:jf_tebukuro"]
KOKORO_PROSODY = [(0.9, -2.0), (1.1, 2.0)]
KOKORO_LOW = [(1.0, -4.0), (1.0, -7.0)]  # low_voices=1: lowered female voices, about a male voice's range
PROTOCOLS = {
    # held-out engine: train on espeak-ng and OpenJTalk only, test on the neural engine
    "engine": {"held_out": ["kokoro:jm_kumo", "kokoro:jf_alpha"]},
    # held-out voice: Kokoro's other voices in training, a Kokoro voice never heard for testing
    "voice": {"validation": ["kokoro:jf_alpha"], "held_out": ["kokoro:jm_kumo"]},
}


def voice_corpus(task: str, lang: str, voice: Voice, cache: Path) -> list[Utterance]:
    """`task`'s instructions in `lang` spoken by `voice`, synthesized once and cached per voice."""
    path = cache / f"{task}-{lang}-{str(voice).replace(':', '_')}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            texts = json.loads(str(z["texts"]))
            return [Utterance(t, lang, str(voice), z[f"w{i}"]) for i, t in enumerate(texts)]
    out = speak_corpus(instructions(task, lang), lang, [voice])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, texts=np.array(json.dumps([u.text for u in out], ensure_ascii=False)),
             **{f"w{i}": u.wave for i, u in enumerate(out)})  # fmt: skip
    tmp.rename(path)
    return out


def corpora(task: str, protocol: str, cache: Path, low_voices: bool = False) -> dict[str, list[Utterance]]:
    """{"train", "seen", "held_out"[, "validation"]}: utterances for training, the training voices at an untrained
    prosody (speed 1, pitch 0), and the voices kept out of training."""
    train_voices = {lang: [(v, PROSODY) for v in names] for lang, names in SEEN.items()}
    if protocol == "voice":
        prosody = KOKORO_PROSODY + (KOKORO_LOW if low_voices else [])
        for lang in train_voices:
            train_voices[lang] += [(v, prosody) for v in KOKORO_TRAIN]
    out: dict[str, list[Utterance]] = {"train": [], "seen": []}
    for lang, voices in train_voices.items():
        for name, prosody in voices:
            base = Voice.parse(name)
            for s, p in prosody:
                out["train"] += voice_corpus(task, lang, Voice(base.engine, base.name, s, p), cache)
            out["seen"] += voice_corpus(task, lang, base, cache)
    for split, names in PROTOCOLS[protocol].items():
        out[split] = [u for lang in SEEN for v in names for u in voice_corpus(task, lang, Voice.parse(v), cache)]
    return out


def main(argv: list[str]) -> dict:
    opts = {"task": "reach", "steps": "1500", "batch": "64", "width": "128", "depth": "2", "lr": "1e-3", "seed": "0",
            "out": "outputs/spoken", "cache": "outputs/spoken/corpus", "threads": "1", "protocol": "voice",
            "synth_only": "0", "voice_aug": "0", "ctc": "1", "ctc_weight": "1.0", "low_voices": "0",
            "eval_only": ""}  # fmt: skip
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        raise SystemExit(0)
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
    if opts["protocol"] not in PROTOCOLS:
        raise SystemExit(f"protocol={opts['protocol']!r}: valid are {', '.join(PROTOCOLS)}")
    data = corpora(opts["task"], opts["protocol"], Path(opts["cache"]), low_voices=opts["low_voices"] == "1")
    synth_s = time.perf_counter() - started
    if opts["synth_only"] == "1":
        print(json.dumps({k: len(v) for k, v in data.items()} | {"synth_s": round(synth_s, 1)}))
        return {}
    w = int(opts["width"])
    chars = alphabet([u.text for u in data["train"]]) if opts["ctc"] == "1" else ""
    cfg = BackboneConfig(image_size=32, patch_size=16, width=32, depth=1, heads=2, text_width=w, text_depth=2,
                         embed_dim=w, audio_width=w, audio_depth=int(opts["depth"]), audio_heads=4,
                         audio_ctc=chars, audio_ctc_weight=float(opts["ctc_weight"]))  # fmt: skip
    steps = int(opts["steps"])
    t0 = time.perf_counter()
    if opts["eval_only"]:
        model, loaded = load_model(opts["eval_only"], kind="spoken_backbone")
        if loaded != cfg:
            raise SystemExit(f"eval_only={opts['eval_only']}: trained with another backbone than these options give")
        summary: dict = {}
    else:
        model = SpokenBackbone(cfg)
        tcfg = TrainConfig(out=f"{opts['out']}/run", steps=steps, lr=float(opts["lr"]), min_lr=float(opts["lr"]) / 20,
                           warmup=min(100, steps // 10), weight_decay=0.05, seed=int(opts["seed"]), log_every=50,
                           device="cpu", progress=True)  # fmt: skip
        train_data = batches(data["train"], int(opts["batch"]), seed=int(opts["seed"]), voice=opts["voice_aug"] == "1")
        summary = train(tcfg, model, train_data)
    train_s = time.perf_counter() - t0
    candidates = {lang: instructions(opts["task"], lang) for lang in SEEN}
    readouts = ["embedding"] + (["transcription"] if cfg.audio_ctc else [])
    splits = [s for s in ("seen", "validation", "held_out") if s in data]
    hits = {s: {by: retrieval_hits(model, data[s], candidates, by) for by in readouts} for s in splits}
    r1 = {f"r1_{s}" + ("" if by == "embedding" else f"_{by}"): r1_of(hits[s][by]) for s in splits for by in readouts}
    result = {
        "task": opts["task"],
        "candidates_per_language": {k: len(v) for k, v in candidates.items()},
        "train_utterances": len(data["train"]),
        **r1,
        "final_loss": summary.get("final_loss", summary.get("loss")),
        "steps": steps,
        "train_s": round(train_s, 1),
        "synth_s": round(synth_s, 1),
        "params": sum(p.numel() for n, p in model.named_parameters() if not n.startswith("vision")),
        "device": f"cpu ({torch.get_num_threads()} threads), {platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d"),
        "options": opts,
        "hits": {
            s: {
                by: {lang: {v: [int(x) for x in h] for v, h in voices.items()} for lang, voices in per.items()}
                for by, per in hits[s].items()
            }
            for s in splits
        },
    }
    print(json.dumps(result, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
