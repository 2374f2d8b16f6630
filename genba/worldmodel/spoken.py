"""Speech and text in one space: the backbone's audio encoder co-trained with its text encoder by the SigLIP loss
on instructions spoken by the offline TTS voices (genba.speech), and speech-to-instruction retrieval R@1.

    corpus = speak_corpus(instructions("reach", "en"), "en", [Voice.parse("espeak:en-us")])
    model = SpokenBackbone(BackboneConfig(audio_width=128, ...))
    train(TrainConfig(out=..., steps=...), model, batches(corpus, batch_size=64))
    retrieval_r1(model, test_corpus, {"en": instructions("reach", "en")})

A model supplies `loss(batch)` to genba.train's one loop; it is a Backbone (checkpoint kind `spoken_backbone`),
so its audio, text and image weights load into any model built on the same BackboneConfig. Augmentation, drawn
per epoch from a seeded generator: random gain, up to 0.25 s of leading silence, and half of the utterances mixed
with synthesized factory noise at 5..30 dB; optionally (`voice=True`) speed perturbation, a random equalizer and
SpecAugment-style masks, which vary what tells one voice from another. With `audio_ctc` in the config the loss adds
the backbone's transcription loss (CTC over the instruction's characters), weighted by `audio_ctc_weight`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from genba.speech import NOISE_KINDS, Voice, factory_noise, synthesize
from genba.speech.noise import mix
from genba.train.checkpoint import register_model
from genba.worldmodel.backbone import Backbone, BackboneConfig, same_text

KIND = "spoken_backbone"
SR = 16000


@dataclass
class Utterance:
    text: str
    lang: str
    voice: str
    wave: np.ndarray  # (T,) float32 at 16 kHz


def instructions(task: str, lang: str) -> list[str]:
    """Every instruction the task can give in `lang`: each template with each colour and object shape."""
    from genba.sim.scene import COLORS, phrase
    from genba.sim.tasks import get_task

    t = get_task(task)
    out = []
    for template, color, shape in itertools.product(t.templates[lang], COLORS, t.object_shapes):
        goal = phrase("blue", "bin", lang)  # tasks with a goal name it too; retrieval is over the object
        out.append(template.format(obj=phrase(color, shape, lang), goal=goal))
    return list(dict.fromkeys(out))


def speak_corpus(texts: list[str], lang: str, voices: list[Voice]) -> list[Utterance]:
    return [Utterance(t, lang, str(v), synthesize(t, lang, v)) for v in voices for t in texts]


class SpokenBackbone(Backbone):
    """The backbone with its audio-text loss as the training loss."""

    @property
    def config(self) -> BackboneConfig:
        return self.cfg

    def embed_audio(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """waves (B, T), lengths (B,) -> (B, embed_dim) unit vectors."""
        return self.audio_embedding(self.encode_audio(waves, lengths)[1])

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """texts -> (B, embed_dim) unit vectors."""
        return self.text_embedding(self.encode_text(texts)[1])

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        tokens, pooled, valid = self.encode_audio(batch["waves"], batch["lengths"])  # (B, L, w), (B, w), (B, L)
        aud = self.audio_embedding(pooled)  # (B, E)
        txt = self.embed_text(batch["texts"])  # (B, E)
        same = same_text(batch["texts"]).to(aud.device)  # (B, B)
        loss = self.audio_text_loss(aud, txt, same)
        metrics = {"speech_text": loss.detach()}
        if self.cfg.audio_ctc:
            ctc = self.transcription_loss(tokens, valid, batch["texts"])
            loss = loss + self.cfg.audio_ctc_weight * ctc
            metrics["ctc"] = ctc.detach()
        with torch.no_grad():
            metrics["batch_r1"] = same[torch.arange(len(same)), (aud @ txt.T).argmax(1)].float().mean()
        return loss, metrics


register_model(KIND, SpokenBackbone, BackboneConfig)


def pad(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """list of (T_i,) -> (B, max T) zero-padded float32, lengths (B,) int64."""
    lengths = torch.tensor([w.size for w in waves], dtype=torch.long)
    out = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        out[i, : w.size] = torch.from_numpy(w)
    return out, lengths


def noise_bank(seed: int, clips: int = 16, seconds: float = 10.0) -> list[np.ndarray]:
    """Factory noise clips (fan, motor, both) to cut augmentation noise from: synthesizing per utterance would cost
    about a third of a training step on the 2-core CPU."""
    kinds = [NOISE_KINDS[i % len(NOISE_KINDS)] for i in range(clips)]
    return [factory_noise(k, int(seconds * SR), SR, seed * 1000 + i) for i, k in enumerate(kinds)]


def augment(wave: np.ndarray, rng: np.random.Generator, bank: list[np.ndarray], voice: bool = False) -> np.ndarray:
    """(T,) float32 -> (T',) float32: leading silence, factory noise for half, random gain; with `voice`, first
    `perturb_voice` (another speaker's rate, vocal tract and channel)."""
    if voice:
        wave = perturb_voice(wave, rng)
    wave = np.concatenate([np.zeros(int(rng.integers(0, SR // 4)), np.float32), wave])
    if rng.random() < 0.5:
        clip = bank[int(rng.integers(len(bank)))]
        start = int(rng.integers(0, max(1, clip.size - wave.size)))
        noise = np.resize(clip[start : start + wave.size], wave.size)  # repeats when the utterance is longer
        wave = mix(wave, noise, float(rng.uniform(5, 30)))
    return (wave * rng.uniform(0.3, 1.5)).astype(np.float32)


def perturb_voice(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(T,) -> (T',): what changes from one speaker or engine to the next, drawn at random.
    - speed perturbation (Ko et al. 2015): resampled by a factor in [0.85, 1.15], which moves tempo, pitch and
      formants together, like a longer or shorter vocal tract;
    - a random smooth equalizer (+-6 dB at 8 log-spaced frequencies), a channel and timbre;
    - SpecAugment's masks (Park et al. 2019) on the waveform: one frequency band (up to 1/8 of the spectrum) removed
      with probability 1/2, and up to two stretches of up to 0.1 s silenced."""
    factor = float(rng.uniform(0.85, 1.15))
    n = max(2, round(wave.size / factor))
    wave = np.interp(np.linspace(0, wave.size - 1, n), np.arange(wave.size), wave).astype(np.float32)
    spec = np.fft.rfft(wave)  # (n // 2 + 1,)
    freqs = np.fft.rfftfreq(n, 1 / SR)
    anchors = np.geomspace(100, SR / 2, 8)
    gain_db = np.interp(np.log(np.maximum(freqs, 100)), np.log(anchors), rng.uniform(-6, 6, anchors.size))
    spec *= 10 ** (gain_db / 20)
    if rng.random() < 0.5:
        width = int(rng.integers(1, spec.size // 8 + 2))
        lo = int(rng.integers(0, spec.size - width))
        spec[lo : lo + width] = 0
    wave = np.fft.irfft(spec, n).astype(np.float32)
    for _ in range(int(rng.integers(0, 3))):
        length = int(rng.integers(0, SR // 10))
        start = int(rng.integers(0, max(1, wave.size - length)))
        wave[start : start + length] = 0
    return wave


def batches(
    corpus: list[Utterance], batch_size: int, seed: int = 0, voice: bool = False
) -> Callable[[int], Iterator[dict]]:
    """data(epoch) for genba.train: the corpus shuffled and augmented from (seed, epoch), in full batches; `voice`
    adds `perturb_voice`."""

    bank = noise_bank(seed)

    def data(epoch: int) -> Iterator[dict]:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(corpus))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            chosen = [corpus[i] for i in order[start : start + batch_size]]
            waves, lengths = pad([augment(u.wave, rng, bank, voice) for u in chosen])
            yield {"waves": waves, "lengths": lengths, "texts": [u.text for u in chosen]}

    return data


@torch.no_grad()
def retrieval_hits(
    model: SpokenBackbone, corpus: list[Utterance], candidates: dict[str, list[str]], by: str = "embedding"
) -> dict[str, dict[str, list[bool]]]:
    """Whether each utterance retrieves its own instruction among its language's candidates: {lang: {voice: [hit,
    ...]}} in corpus order, for paired comparisons of two encoders on the same utterances. `by="embedding"`: the
    nearest instruction in the shared space; `by="transcription"`: the instruction whose characters the transcription
    head (audio_ctc) finds likeliest."""
    if by not in ("embedding", "transcription"):
        raise ValueError(f"by={by!r}: valid are embedding, transcription")
    model.eval()
    device = next(model.parameters()).device
    out: dict[str, dict[str, list[bool]]] = {}
    for lang, texts in candidates.items():
        txt = model.embed_text(texts)  # (C, E)
        utts = [u for u in corpus if u.lang == lang]
        hits: dict[str, list[bool]] = {}
        for start in range(0, len(utts), 64):
            chunk = utts[start : start + 64]
            waves, lengths = pad([u.wave for u in chunk])
            tokens, pooled, valid = model.encode_audio(waves.to(device), lengths.to(device))
            if by == "embedding":
                scores = model.audio_embedding(pooled) @ txt.T  # (b, C)
            else:
                scores = model.transcription_scores(tokens, valid, texts)  # (b, C)
            best = scores.argmax(1).tolist()
            for u, b in zip(chunk, best, strict=True):
                hits.setdefault(u.voice, []).append(texts[b] == u.text)
        out[lang] = hits
    return out


def retrieval_r1(
    model: SpokenBackbone, corpus: list[Utterance], candidates: dict[str, list[str]], by: str = "embedding"
) -> dict:
    """R@1 of each utterance against its language's candidate instructions: {lang: {voice: r1, "all": r1}}
    (retrieval_hits, averaged by r1_of)."""
    return r1_of(retrieval_hits(model, corpus, candidates, by))


def r1_of(hits: dict[str, dict[str, list[bool]]]) -> dict[str, dict[str, float]]:
    """retrieval_hits averaged: {lang: {voice: r1, "all": r1 over the language's utterances}}."""
    out: dict[str, dict[str, float]] = {}
    for lang, voices in hits.items():
        out[lang] = {v: round(float(np.mean(h)), 4) for v, h in voices.items()}
        out[lang]["all"] = round(float(np.mean([x for h in voices.values() for x in h])), 4) if voices else float("nan")
    return out
