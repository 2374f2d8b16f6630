"""How a policy hears its instruction in `genba eval` (issue 13): typed, spoken or both.

    mode = instruction_modality(policy, cfg)       # text | audio | both, checked against the policy's input spec
    speech = check_speech(cfg, lang)               # voices for every language, their engines installed
    speak = speaker(speech, env, seed, heard)      # text -> float32 (T,) 16 kHz, for rollout(..., speak=speak)

Used by genba.policies.evaluate (before any episode) and genba.policies.eval_worker (per episode).
"""

from __future__ import annotations

from typing import Any

from genba import keys
from genba.errors import GenbaError

MODALITIES = ("text", "audio", "both")


def instruction_modality(policy: Any, cfg: Any, asked: str | None = None) -> str:
    """How the instruction reaches `policy` (`asked`, else cfg's, else its own); a one-line GenbaError when its
    input spec cannot take it."""
    from genba.policies.contract import policy_name

    feats = policy.input_spec.features
    own = getattr(policy, "instruction_modality", None)
    mode = asked or cfg.instruction_modality or (own if own in MODALITIES else "text")
    if keys.TASK not in feats and keys.OBS_AUDIO not in feats:
        return "text"  # it reads no instruction (scripted, hold, ...): nothing to speak
    if mode != "text" and keys.OBS_AUDIO not in feats:
        raise GenbaError(f"{policy_name(policy)} reads no {keys.OBS_AUDIO}: instruction_modality={mode} needs a "
                         "policy that takes speech (a VLA trained with audio or both)")  # fmt: skip
    if mode != "audio" and keys.TASK not in feats:
        raise GenbaError(f"{policy_name(policy)} takes its instruction only spoken: use instruction_modality=audio")
    if mode == "audio" and feats.get(keys.TASK) is not None and feats[keys.TASK].required:
        raise GenbaError(f"{policy_name(policy)} requires the typed instruction ({keys.TASK}): use "
                         "instruction_modality=both or text")  # fmt: skip
    return mode


def check_speech(cfg: Any, lang: str) -> dict:
    """The voices, noise and SNR of spoken runs, checked before any episode (a voice for each language, its engine
    installed)."""
    from genba.speech.engines import require
    from genba.speech.instruction import parse_voices

    langs = ("en", "ja") if lang == "mixed" else (lang,)
    voices = parse_voices([cfg.voice] if cfg.voice else [], langs)
    for voice in voices:
        require(voice.engine)
    return {"voices": [str(v) for v in voices], "noise": cfg.audio_noise, "snr": float(cfg.audio_snr)}


def speaker(speech: dict, env: Any, seed: int, heard: dict) -> Any:
    """text -> the episode's spoken instruction (float32 (T,) at 16 kHz), in the episode's language (read at the first
    observation, after the reset); what was heard goes into `heard` (voice, seconds) for the episode's record."""

    def speak(text: str) -> Any:
        from genba.speech import add_noise, synthesize
        from genba.speech.instruction import NO_NOISE, choose_voice, parse_voices

        lang = env.unwrapped.episode_spec()["lang"]
        voice = choose_voice(parse_voices(speech["voices"], (lang,)), lang, seed)
        wave = synthesize(text, lang, voice)
        if speech["noise"] != NO_NOISE:
            wave = add_noise(wave, speech["snr"], speech["noise"], seed=seed, sample_rate=keys.AUDIO_SAMPLE_RATE)
        heard.update(voice=str(voice), audio_seconds=round(wave.size / keys.AUDIO_SAMPLE_RATE, 3))
        return wave

    return speak
