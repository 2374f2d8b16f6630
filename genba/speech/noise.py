"""Synthesized factory noise (fans, motors) and mixing at a signal-to-noise ratio.

Nothing is recorded or downloaded: each noise is drawn from a seed, so an episode's noisy audio is reproducible.

- `fan`: airflow, a pink (1/f) broadband hiss, plus the blade-pass tone (80..200 Hz) and two harmonics, slowly
  amplitude-modulated as the blades beat against the housing.
- `motor`: mains hum (50 or 60 Hz and harmonics, the electrical part of an induction motor) and a drive whine
  (400..1500 Hz, frequency-modulated as the load varies) over a little white noise.
- `factory`: both at once.
"""

from __future__ import annotations

import math

import numpy as np

NOISE_KINDS = ("fan", "motor", "factory")


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(f), n)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def fan(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sample_rate
    blade = rng.uniform(80, 200)
    beat = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t + rng.uniform(0, 2 * np.pi))
    tones = sum(
        a * np.sin(2 * np.pi * k * blade * t + rng.uniform(0, 2 * np.pi)) for k, a in ((1, 1), (2, 0.5), (3, 0.25))
    )
    return _unit(_unit(_pink(n, rng)) + 0.7 * beat * _unit(tones))


def motor(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sample_rate
    mains = float(rng.choice([50.0, 60.0]))
    hum = sum(
        a * np.sin(2 * np.pi * k * mains * t + rng.uniform(0, 2 * np.pi)) for k, a in ((1, 1), (2, 0.6), (3, 0.3))
    )
    whine_hz = rng.uniform(400, 1500)
    wobble = 0.02 * whine_hz * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t)  # Hz of frequency deviation
    phase = 2 * np.pi * np.cumsum(whine_hz + wobble) / sample_rate
    return _unit(_unit(hum) + 0.5 * _unit(np.sin(phase)) + 0.3 * rng.standard_normal(n))


def factory_noise(kind: str, n: int, sample_rate: int, seed: int) -> np.ndarray:
    """(n,) float32 noise of unit RMS."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind {kind!r} is not one of {', '.join(NOISE_KINDS)}")
    rng = np.random.default_rng(seed)
    if kind == "fan":
        x = fan(n, sample_rate, rng)
    elif kind == "motor":
        x = motor(n, sample_rate, rng)
    else:
        x = fan(n, sample_rate, rng) + motor(n, sample_rate, rng)
    return _unit(x).astype(np.float32)


def add_noise(wave: np.ndarray, snr_db: float, kind: str = "factory", seed: int = 0, sample_rate: int = 16000):
    """`wave` (T,) with `kind` noise mixed in at `snr_db` (signal power / noise power in dB); float32 (T,), peak
    kept within [-1, 1] by scaling the mixture (which keeps the SNR)."""
    return mix(wave, factory_noise(kind, wave.size, sample_rate, seed), snr_db)


def mix(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`wave` (T,) plus `noise` (T,) scaled to `snr_db` below it; float32 (T,), peak kept within [-1, 1]."""
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db={snr_db!r} must be finite")
    signal_rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
    noise_rms = float(np.sqrt(np.mean(np.square(noise, dtype=np.float64)))) if noise.size else 0.0
    mixed = wave.astype(np.float64) + noise * (signal_rms / 10 ** (snr_db / 20) / max(noise_rms, 1e-12))
    peak = float(np.abs(mixed).max(initial=0))
    return (mixed / peak * 0.99 if peak > 0.99 else mixed).astype(np.float32)
