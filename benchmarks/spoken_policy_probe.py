"""What a spoken VLA's speech encoder learned (issue 13): `python benchmarks/spoken_policy_probe.py run=<VLA run>`.

Loads the run's backbone (co-trained by `genba train-policy instruction_modality=audio|both` with the speech-text
loss) and measures speech-to-instruction R@1 against the training data's own instructions, per language: each
instruction spoken by a seen voice (the default ones of `genba collect audio=true`, at speed 1 and pitch 0) and by
the held-out neural Kokoro voice. Prints one JSON line.

Keys: run=<VLA run folder> data=<dataset> per_lang=40 (instructions per language, the first in the data's order)
voices_en=espeak:en-us voices_ja=openjtalk:mei held_out=kokoro:jm_kumo threads=1
"""

from __future__ import annotations

import json
import sys
import time

import torch

from genba.speech import Voice
from genba.worldmodel.spoken import SpokenBackbone, retrieval_r1, speak_corpus


def main(argv: list[str]) -> dict:
    opts = {"run": "", "data": "", "per_lang": "40", "voices_en": "espeak:en-us", "voices_ja": "openjtalk:mei",
            "held_out": "kokoro:jm_kumo", "threads": "1"}  # fmt: skip
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        raise SystemExit(0)
    given = dict(arg.partition("=")[::2] for arg in argv)
    if set(given) - set(opts):
        raise SystemExit(f"unknown keys {sorted(set(given) - set(opts))} (keys: {', '.join(opts)})")
    opts |= given
    torch.set_num_threads(int(opts["threads"]))
    import genba.policies.vla  # noqa: F401  (registers the kind)
    from genba.datasets import frames as fr
    from genba.policies.vla_policy import checkpoint_folder, has_ema
    from genba.train.checkpoint import load_model

    folder = checkpoint_folder(opts["run"])
    vla, cfg = load_model(folder, kind="vla", ema=has_ema(folder))
    probe = SpokenBackbone(cfg.backbone)
    probe.load_state_dict(vla.backbone.state_dict())
    meta = fr.load_metadata(fr.resolve_root(opts["data"], None))
    tasks = [str(meta.tasks.iloc[i].name) for i in range(len(meta.tasks))]
    by_lang = {"ja": [t for t in tasks if not t.isascii()], "en": [t for t in tasks if t.isascii()]}
    by_lang = {lang: texts[: int(opts["per_lang"])] for lang, texts in by_lang.items() if texts}
    started = time.perf_counter()
    out: dict = {"run": opts["run"], "candidates": {k: len(v) for k, v in by_lang.items()}}
    for name, voices in (("seen", {"en": opts["voices_en"], "ja": opts["voices_ja"]}),
                         ("held_out", {"en": opts["held_out"], "ja": opts["held_out"]})):  # fmt: skip
        corpus = [u for lang, texts in by_lang.items() for u in speak_corpus(texts, lang, [Voice.parse(voices[lang])])]
        out[name] = retrieval_r1(probe, corpus, by_lang)
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, ensure_ascii=False))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
