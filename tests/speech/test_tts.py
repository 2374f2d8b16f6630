"""genba.speech: every engine really speaks (English and Japanese), speed and pitch do what they say, voices
differ, bad voices and missing engines are one line, and episode audio survives a FLAC round trip."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from genba import keys
from genba.errors import GenbaError
from genba.speech import Voice, synthesize
from genba.speech.audio_io import read_flac, write_flac
from genba.speech.tts import TARGET_RMS

SR = keys.AUDIO_SAMPLE_RATE
EN = "pick up the red cube"
JA = "赤い立方体を拾って"
VOICES = [("espeak:en-us", "en"), ("espeak:ja", "ja"), ("openjtalk:mei", "ja"), ("kokoro:jf_alpha", "ja"),
          ("kokoro:jm_kumo", "en")]  # fmt: skip


def f0(wave: np.ndarray, lo: float = 60, hi: float = 400) -> float:
    """Median fundamental frequency (Hz) of the voiced 40 ms frames, by autocorrelation."""
    n, out = int(0.04 * SR), []
    rms = np.sqrt(np.mean(wave**2))
    for start in range(0, wave.size - n, n // 2):
        x = wave[start : start + n] - wave[start : start + n].mean()
        if np.sqrt(np.mean(x**2)) < rms:  # voiced speech is the loud part
            continue
        ac = np.correlate(x, x, "full")[n - 1 :]
        lag = np.argmax(ac[int(SR / hi) : int(SR / lo)]) + int(SR / hi)
        out.append(SR / lag)
    return float(np.median(out))


@pytest.mark.parametrize(("spec", "lang"), VOICES)
def test_every_engine_speaks(spec: str, lang: str) -> None:
    wave = synthesize(EN if lang == "en" else JA, lang, Voice.parse(spec))
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert 0.4 < wave.size / SR < 4, wave.size / SR  # a short instruction, trimmed of silence
    assert np.isfinite(wave).all() and np.abs(wave).max() <= 1
    assert np.sqrt(np.mean(wave**2)) == pytest.approx(TARGET_RMS, rel=0.05)
    assert 60 < f0(wave) < 400  # a voice, not noise


def test_voices_and_texts_differ() -> None:
    a = synthesize(EN, "en", Voice.parse("espeak:en-us"))
    b = synthesize(EN, "en", Voice.parse("espeak:en-us+f3"))
    c = synthesize("push the blue sphere", "en", Voice.parse("espeak:en-us"))
    again = synthesize(EN, "en", Voice.parse("espeak:en-us"))  # espeak-ng carries wave-generator state between
    assert abs(again.size - a.size) < 0.02 * a.size  # utterances: the same text again differs by a few samples
    assert f0(b) > 1.2 * f0(a)  # the female variant speaks higher
    assert a.size != c.size or not np.allclose(a, c)


@pytest.mark.parametrize("engine", ["espeak:en-us", "kokoro:jm_kumo"])
def test_speed_and_pitch(engine: str) -> None:
    base = synthesize(EN, "en", Voice.parse(engine))
    fast = synthesize(EN, "en", Voice.parse(f"{engine}:1.6"))
    assert fast.size < 0.8 * base.size
    high = synthesize(EN, "en", Voice.parse(f"{engine}:1:5"))
    assert 1.15 < f0(high) / f0(base) < 1.6  # 5 semitones = x1.33
    assert 0.75 < high.size / base.size < 1.3  # pitch without changing the duration


def test_openjtalk_native_pitch() -> None:
    base = synthesize(JA, "ja", Voice.parse("openjtalk:mei"))
    low = synthesize(JA, "ja", Voice.parse("openjtalk:mei:1:-5"))
    assert 0.62 < f0(low) / f0(base) < 0.87


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("espeak", "engine:name"),
        ("festival:kal", "unknown TTS engine 'festival'"),
        ("kokoro:af_bella", "not one of jf_alpha"),
        ("openjtalk:takumi", "bundled voice is 'mei'"),
        ("espeak:fr", "English"),
        ("espeak:en-us:fast", "numbers"),
        ("espeak:en-us:9", "speed must be"),
        ("espeak:en-us:1:30", "pitch must be"),
    ],
)
def test_bad_voices_are_one_line(spec: str, message: str) -> None:
    with pytest.raises(GenbaError, match=message) as e:
        Voice.parse(spec)
    assert "\n" not in str(e.value)


def test_wrong_language_and_unknown_espeak_voice() -> None:
    with pytest.raises(GenbaError, match="does not speak 'en'"):
        synthesize(EN, "en", Voice.parse("openjtalk:mei"))
    with pytest.raises(GenbaError, match="no voice 'en-nowhere'"):
        Voice.parse("espeak:en-nowhere")  # checked against the bundled data, before any synthesis
    with pytest.raises(GenbaError, match="no voice 'en-us\\+f9'"):
        Voice.parse("espeak:en-us+f9")
    assert Voice.parse("espeak:EN-GB-X-RP+F2").languages == ("en",)  # espeak-ng ignores case


def test_missing_engine_names_package_and_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyopenjtalk", None)  # what an uninstalled package looks like to import
    with pytest.raises(GenbaError) as e:
        synthesize(JA, "ja", Voice.parse("openjtalk:mei"))
    msg = str(e.value)
    assert "pyopenjtalk-plus" in msg and "uv pip install pyopenjtalk-plus" in msg and "\n" not in msg


def test_voice_round_trips_as_text() -> None:
    for spec in ("espeak:en-us+f3", "kokoro:jm_kumo:0.9", "openjtalk:mei:1.2:-2"):
        assert str(Voice.parse(spec)) == spec


def test_flac_round_trip(tmp_path) -> None:
    wave = synthesize(EN, "en", Voice.parse("espeak:en-us"))
    path = write_flac(tmp_path / "a.flac", wave, SR)
    back, sr = read_flac(path)
    assert sr == SR and back.shape == wave.shape
    assert np.abs(back - wave).max() < 1e-4  # 16-bit PCM
    assert path.stat().st_size < wave.nbytes / 2  # compressed
