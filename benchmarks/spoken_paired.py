"""Two speech encoders compared on the same utterances (issue 13): `python benchmarks/spoken_paired.py <first.json>
<second.json>`.

Each file holds the JSON line that benchmarks/spoken_retrieval.py printed (its last line; a log whose last line is
that JSON works too), with per-utterance `hits`. For every split (seen, validation, held out), readout (embedding,
transcription) and language, prints both R@1, their difference (first - second) with Newcombe's paired 95% interval
and the exact McNemar p-value, as one JSON line. The two runs must have heard the same utterances in the same order
(same corpus and protocol); anything else is refused in one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from genba.policies.stats import compare_paired


def read_run(path: str) -> dict:
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"{path}: no JSON line from spoken_retrieval.py")
    run = json.loads(lines[-1])
    if "hits" not in run:
        raise SystemExit(f"{path}: no per-utterance hits (written since the thirteenth session; rerun with eval_only=)")
    return run


def paired(first: dict, second: dict) -> dict:
    """{split: {readout: {lang: {"r1": [first, second], "diff", "ci95", "p_value", "n"}}}} over the readouts both
    runs have."""
    out: dict = {}
    for split, readouts in first["hits"].items():
        for by, langs in readouts.items():
            other = second["hits"].get(split, {}).get(by)
            if other is None:
                continue
            for lang, voices in langs.items():
                a = [x for v in sorted(voices) for x in voices[v]]
                b = [x for v in sorted(other.get(lang, {})) for x in other[lang][v]]
                if sorted(voices) != sorted(other.get(lang, {})) or len(a) != len(b):
                    raise SystemExit(f"{split}/{by}/{lang}: the two runs heard different utterances")
                c = compare_paired([bool(x) for x in a], [bool(x) for x in b])
                out.setdefault(split, {}).setdefault(by, {})[lang] = {
                    "r1": [round(sum(a) / len(a), 4), round(sum(b) / len(b), 4)],
                    "diff": round(c["diff"], 4),
                    "ci95": [round(x, 4) for x in c["ci95"]],
                    "p_value": round(c["p_value"], 4),
                    "first_only": c["first_only"],
                    "second_only": c["second_only"],
                    "n": len(a),
                }
    return out


def main(argv: list[str]) -> dict:
    if {"-h", "--help"} & set(argv) or len(argv) != 2:
        print(__doc__)
        raise SystemExit(0 if {"-h", "--help"} & set(argv) else 2)
    result = paired(read_run(argv[0]), read_run(argv[1]))
    print(json.dumps(result, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
