"""Speaking an episode's instruction: the voice chosen from a set by the episode's seed and language, optional
factory noise, FLAC bytes and the metadata that goes with them. Used by `genba collect audio=true`."""

from __future__ import annotations

from genba import keys
from genba.errors import GenbaError
from genba.speech.noise import NOISE_KINDS, add_noise
from genba.speech.tts import DEFAULT_VOICES, Voice, synthesize

NO_NOISE = "none"


def parse_voices(specs: list[str] | tuple[str, ...], langs: tuple[str, ...]) -> list[Voice]:
    """The voices named (or DEFAULT_VOICES' for `langs` when none are); a GenbaError when a language in `langs`
    has no voice among them."""
    voices = [Voice.parse(s) for s in specs] if specs else [Voice.parse(DEFAULT_VOICES[lang]) for lang in langs]
    for lang in langs:
        if not any(lang in v.languages for v in voices):
            raise GenbaError(
                f"voices={[str(v) for v in voices]} has no voice that speaks {lang!r} (e.g. {DEFAULT_VOICES[lang]})"
            )
    return voices


def choose_voice(voices: list[Voice], lang: str, seed: int) -> Voice:
    """The voice of an episode: the seed-th (cyclically) of those that speak its language."""
    speaking = [v for v in voices if lang in v.languages]
    if not speaking:
        raise GenbaError(f"no voice among {[str(v) for v in voices]} speaks {lang!r}")
    return speaking[seed % len(speaking)]


def speak_instruction(
    text: str, lang: str, voices: list[Voice], seed: int, noise: str = NO_NOISE, snr_db: float = 20.0
) -> tuple[bytes, dict]:
    """(FLAC bytes, metadata) of `text` spoken by the episode's voice, with `noise` mixed in at `snr_db`."""
    from genba.speech.audio_io import encode_flac

    if noise != NO_NOISE and noise not in NOISE_KINDS:
        raise GenbaError(f"audio noise {noise!r} is not one of {NO_NOISE}, {', '.join(NOISE_KINDS)}")
    voice = choose_voice(voices, lang, seed)
    wave = synthesize(text, lang, voice)  # (T,) float32 at keys.AUDIO_SAMPLE_RATE
    if noise != NO_NOISE:
        wave = add_noise(wave, snr_db, noise, seed=seed, sample_rate=keys.AUDIO_SAMPLE_RATE)
    meta = {
        "voice": str(voice),
        "lang": lang,
        "sample_rate": keys.AUDIO_SAMPLE_RATE,
        "seconds": round(wave.size / keys.AUDIO_SAMPLE_RATE, 3),
        "noise": noise,
        "snr_db": None if noise == NO_NOISE else float(snr_db),
    }
    return encode_flac(wave, keys.AUDIO_SAMPLE_RATE), meta
