"""Spoken instructions: offline text-to-speech (genba.speech.tts, engines), synthesized factory noise (noise),
log-mel features (features) and episode audio files (audio_io). A leaf package: numpy, torch and the engines'
wheels; nothing else of genba beyond keys, errors and io."""

from genba.speech.noise import NOISE_KINDS, add_noise, factory_noise
from genba.speech.tts import DEFAULT_VOICES, Voice, synthesize

__all__ = ["DEFAULT_VOICES", "NOISE_KINDS", "Voice", "add_noise", "factory_noise", "synthesize"]
