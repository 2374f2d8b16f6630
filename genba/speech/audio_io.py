"""Episode audio files: mono FLAC (lossless 16-bit PCM), written atomically, read back as float32."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from genba.io import atomic_write


def encode_flac(wave: np.ndarray, sample_rate: int) -> bytes:
    """float32 (T,) in [-1, 1] -> FLAC bytes (16-bit)."""
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, np.clip(np.asarray(wave, np.float32), -1, 1), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def write_flac(path: str | Path, wave: np.ndarray, sample_rate: int) -> Path:
    """Atomic and durable (fsync, rename): a reader sees the whole file or none."""
    return atomic_write(path, encode_flac(wave, sample_rate))


def read_flac(path: str | Path) -> tuple[np.ndarray, int]:
    """(float32 (T,), sample rate); a multi-channel file is averaged to mono."""
    import soundfile

    wave, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    return wave.mean(axis=1).astype(np.float32), int(sr)
