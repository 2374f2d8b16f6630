"""Speech synthesis behind one small interface: a `Voice` (engine, voice name, speed, pitch) speaks a text in a
language and returns a float32 waveform at `keys.AUDIO_SAMPLE_RATE` (16 kHz mono).

    from genba.speech import Voice, synthesize
    wave = synthesize("赤い立方体を拾って", "ja", Voice.parse("openjtalk:mei:1.2:-2"))  # (T,) float32, 16 kHz

A voice is written `engine:name[:speed[:pitch]]` (speed: 1 = the engine's normal rate; pitch: semitones), e.g.
`espeak:en-us+f3`, `kokoro:jm_kumo:0.9`, `openjtalk:mei:1:3`. Every waveform is trimmed of leading and trailing
silence and scaled to the same loudness (RMS), so that neither is a cue that tells engines apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from genba import keys
from genba.errors import GenbaError
from genba.speech import engines

TARGET_RMS = 0.1  # -20 dBFS
PEAK = 0.99
SILENCE = 0.02  # of the peak: the trim threshold
PAD_S = 0.05  # silence kept at each end
# The voices a collect run uses when none are named: one per language.
DEFAULT_VOICES = {"en": "espeak:en-us", "ja": "openjtalk:mei"}


@dataclass(frozen=True)
class Voice:
    engine: str
    name: str
    speed: float = 1.0
    pitch: float = 0.0  # semitones

    def __post_init__(self) -> None:
        if self.engine not in engines.ENGINES:
            raise GenbaError(f"unknown TTS engine {self.engine!r} (valid: {', '.join(engines.ENGINES)})")
        if not (math.isfinite(self.speed) and 0.25 <= self.speed <= 4):
            raise GenbaError(f"voice {self}: speed must be in [0.25, 4]")
        if not (math.isfinite(self.pitch) and abs(self.pitch) <= 12):
            raise GenbaError(f"voice {self}: pitch must be in [-12, 12] semitones")
        engines.languages(self.engine, self.name)  # an unknown voice name fails here, before any work

    @classmethod
    def parse(cls, spec: str) -> Voice:
        parts = str(spec).split(":")
        if len(parts) < 2 or len(parts) > 4 or not all(parts[:2]):
            raise GenbaError(f"voice {spec!r} is not engine:name[:speed[:pitch]] (e.g. espeak:en-us+f3:1.1:2)")
        try:
            numbers = [float(p) for p in parts[2:]]
        except ValueError:
            raise GenbaError(f"voice {spec!r}: speed and pitch must be numbers") from None
        return cls(parts[0], parts[1], *numbers)

    def __str__(self) -> str:
        extra = f":{self.speed:g}:{self.pitch:g}" if self.pitch else (f":{self.speed:g}" if self.speed != 1 else "")
        return f"{self.engine}:{self.name}{extra}"

    @property
    def languages(self) -> tuple[str, ...]:
        return engines.languages(self.engine, self.name)


def synthesize(text: str, lang: str, voice: Voice, sample_rate: int = keys.AUDIO_SAMPLE_RATE) -> np.ndarray:
    """`text` in `lang` spoken by `voice`: float32 (T,) mono at `sample_rate`, trimmed and loudness-normalized."""
    if lang not in voice.languages:
        raise GenbaError(f"voice {voice} does not speak {lang!r} (it speaks {', '.join(voice.languages)})")
    native = engines.ENGINES[voice.engine].native_pitch
    shift = 1.0 if native else 2.0 ** (voice.pitch / 12)
    # Without a native control, pitch is raised by playing faster (resampling) after asking the engine for a
    # proportionally slower voice, so that the duration is the one `speed` asks for.
    wave, sr = engines.speak(voice.engine, text, lang, voice.name, voice.speed / shift, voice.pitch if native else 0)
    wave = resample(wave, sr * shift, sample_rate)
    wave = _trim(wave, sample_rate)
    if wave.size == 0 or not np.any(wave):
        raise GenbaError(f"voice {voice} produced no sound for {text!r}")
    return _normalize(wave)


def resample(wave: np.ndarray, rate_in: float, rate_out: int) -> np.ndarray:
    """float32 (T,) from `rate_in` to `rate_out` Hz, by FFmpeg's resampler (libswresample, through PyAV)."""
    import av

    if abs(rate_in - rate_out) < 1e-6 or wave.size == 0:
        return wave.astype(np.float32)
    # libswresample takes integer rates and only their ratio matters: both are scaled so that a fractional input rate
    # (a pitch shift) keeps its ratio to 1e-2 Hz.
    scale = 1 if float(rate_in).is_integer() else 100
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave, np.float32)[None], format="flt", layout="mono")
    frame.sample_rate = round(rate_in * scale)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate_out * scale)
    out = [f.to_ndarray()[0] for f in resampler.resample(frame) + resampler.resample(None)]
    return (np.concatenate(out) if out else np.zeros(0, np.float32)).astype(np.float32)


def _trim(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    loud = np.flatnonzero(np.abs(wave) > SILENCE * (np.abs(wave).max(initial=0) or 1))
    if loud.size == 0:
        return wave[:0]
    pad = int(PAD_S * sample_rate)
    return wave[max(0, loud[0] - pad) : loud[-1] + pad + 1]


def _normalize(wave: np.ndarray) -> np.ndarray:
    wave = wave * (TARGET_RMS / max(float(np.sqrt(np.mean(wave**2))), 1e-8))
    peak = float(np.abs(wave).max())
    return (wave * (PEAK / peak) if peak > PEAK else wave).astype(np.float32)
