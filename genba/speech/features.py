"""Log-mel features with torch's own STFT (no torchaudio): what the audio encoder reads.

Defaults are the usual speech front end at 16 kHz: 25 ms Hann windows (400 samples) every 10 ms (160), 64 mel
bands from 0 to 8 kHz (HTK's mel scale, triangular filters), natural log with a floor.
"""

from __future__ import annotations

import functools

import torch

from genba import keys

N_FFT = 400
HOP = 160
N_MELS = 64
LOG_FLOOR = 1e-6


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10 ** (mel / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_fft: int = N_FFT, n_mels: int = N_MELS, sample_rate: int = keys.AUDIO_SAMPLE_RATE) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters, peak 1, on the HTK mel scale from 0 Hz to Nyquist."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mels = torch.linspace(0, float(_hz_to_mel(torch.tensor(sample_rate / 2.0))), n_mels + 2, dtype=torch.float64)
    edges = _mel_to_hz(mels)  # (n_mels + 2,) lower edge, centre, upper edge of each filter
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lo) / (mid - lo)
    down = (hi - freqs[:, None]) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0).float()


def log_mel(
    wave: torch.Tensor,
    sample_rate: int = keys.AUDIO_SAMPLE_RATE,
    n_mels: int = N_MELS,
    n_fft: int = N_FFT,
    hop: int = HOP,
) -> torch.Tensor:
    """wave (B, T) or (T,) float -> (B, frames, n_mels) or (frames, n_mels) log-mel energies, frames = 1 + T // hop."""
    single = wave.dim() == 1
    x = wave[None] if single else wave  # (B, T)
    if x.shape[-1] < n_fft // 2 + 1:  # reflect padding needs a few samples; shorter clips are padded with silence
        x = torch.nn.functional.pad(x, (0, n_fft // 2 + 1 - x.shape[-1]))
    spec = torch.stft(
        x.float(), n_fft, hop_length=hop, window=torch.hann_window(n_fft, device=x.device), return_complex=True
    )  # (B, n_fft // 2 + 1, frames)
    power = spec.real**2 + spec.imag**2
    mel = torch.einsum("bft,fm->btm", power, mel_filterbank(n_fft, n_mels, sample_rate).to(x.device))
    out = torch.log(mel + LOG_FLOOR)  # (B, frames, n_mels)
    return out[0] if single else out
