"""genba.speech noise and features: the mixture has the SNR asked for, noises are reproducible and different,
and log-mel puts a tone's energy in the mel band that holds its frequency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genba import keys
from genba.speech import NOISE_KINDS, Voice, add_noise, factory_noise, synthesize
from genba.speech.features import HOP, N_MELS, _hz_to_mel, log_mel, mel_filterbank

SR = keys.AUDIO_SAMPLE_RATE


@pytest.mark.parametrize("kind", NOISE_KINDS)
@pytest.mark.parametrize("snr", [20.0, 10.0, 0.0])
def test_snr_is_the_one_asked(kind: str, snr: float) -> None:
    speech = synthesize("pick up the red cube", "en", Voice.parse("espeak:en-us"))
    mixed = add_noise(speech, snr, kind, seed=3)
    scale = 1.0
    if np.abs(mixed).max() >= 0.99 - 1e-6:  # the mixture was scaled down as a whole; undo it to measure
        scale = np.dot(mixed, speech) / np.dot(speech, speech)  # noise is uncorrelated with speech: least squares
    noise = mixed / scale - speech
    measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert measured == pytest.approx(snr, abs=0.3)


def test_noises_are_seeded_and_distinct() -> None:
    a = factory_noise("fan", SR, SR, seed=1)
    assert np.array_equal(a, factory_noise("fan", SR, SR, seed=1))
    assert not np.allclose(a, factory_noise("fan", SR, SR, seed=2))
    spectra = {k: np.abs(np.fft.rfft(factory_noise(k, SR, SR, seed=0))) for k in NOISE_KINDS}
    low = {k: s[:300].sum() / s.sum() for k, s in spectra.items()}  # share below 300 Hz (1 Hz bins)
    assert low["fan"] > low["motor"]  # fans are low-frequency hiss and blade tones; motors whine higher
    with pytest.raises(ValueError, match="not one of"):
        factory_noise("jackhammer", 10, SR, 0)


def test_log_mel_shape_and_tone_band() -> None:
    t = torch.arange(SR) / SR
    wave = torch.stack([torch.sin(2 * torch.pi * 1000 * t), torch.sin(2 * torch.pi * 3000 * t)])  # (2, T)
    feats = log_mel(wave)
    assert feats.shape == (2, 1 + SR // HOP, N_MELS)
    centres = _hz_to_mel(torch.tensor([1000.0, 3000.0])) / (_hz_to_mel(torch.tensor(SR / 2)) / (N_MELS + 1)) - 1
    peaks = feats.mean(1).argmax(-1)  # (2,) loudest band
    assert torch.all((peaks.float() - centres).abs() <= 1), (peaks, centres)
    assert log_mel(wave[0]).shape == feats.shape[1:]
    assert torch.isfinite(log_mel(torch.zeros(10))).all()  # silence and clips shorter than a window
    fb = mel_filterbank()
    assert fb.shape == (201, N_MELS) and torch.all(fb.max(0).values > 0.3)  # no band falls between FFT bins
