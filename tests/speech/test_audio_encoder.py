"""The backbone's audio encoder: no audio parameters unless asked (earlier checkpoints load), padding does not change
an utterance's embedding, and co-training with the text encoder through genba.train's loop learns to tell spoken
instructions apart (loss falls, retrieval on what it heard beats chance); the transcription head (CTC over the
instruction's characters) learns to spell what it heard; the voice perturbation is seeded and stays within its
ranges."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genba.errors import GenbaError
from genba.speech import Voice
from genba.train.loop import TrainConfig, train
from genba.worldmodel.backbone import Backbone, BackboneConfig, alphabet, ctc_targets
from genba.worldmodel.spoken import (
    SR,
    SpokenBackbone,
    batches,
    instructions,
    pad,
    perturb_voice,
    retrieval_hits,
    retrieval_r1,
    speak_corpus,
)

TINY = dict(image_size=32, patch_size=16, width=32, depth=1, heads=2, text_width=32, text_depth=1, text_heads=2,
            embed_dim=32)  # fmt: skip


def test_no_audio_parameters_unless_asked() -> None:
    plain = Backbone(BackboneConfig(**TINY))
    assert not any(k.startswith("audio") for k in plain.state_dict())
    with pytest.raises(GenbaError, match="no audio encoder"):
        plain.encode_audio(torch.zeros(1, 1600), torch.tensor([1600]))
    with pytest.raises(GenbaError, match="audio_width=30 is not divisible"):
        BackboneConfig(**TINY, audio_width=30, audio_heads=4)


def test_padding_does_not_change_the_embedding() -> None:
    torch.manual_seed(0)
    model = SpokenBackbone(BackboneConfig(**TINY, audio_width=32, audio_heads=2)).eval()
    rng = np.random.default_rng(0)
    short, long = (rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 20000))
    alone = model.embed_audio(*pad([short]))
    waves, lengths = pad([short, long])  # short is zero-padded to 20000 samples here
    together = model.embed_audio(waves, lengths)
    assert together.shape == (2, 32) and torch.allclose(together.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-4)


@pytest.fixture
def one_thread():
    """Two threads on the shared 2-core machine made a step 20x slower from contention alone (benchmarks/README)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_co_training_learns_spoken_instructions(tmp_path, one_thread) -> None:
    torch.manual_seed(0)
    texts = instructions("reach", "en")[:: 42 // 6][:6]  # six different instructions
    corpus = speak_corpus(texts, "en", [Voice.parse(v) for v in ("espeak:en-us:0.9", "espeak:en-us+f3:1.1")])
    model = SpokenBackbone(BackboneConfig(**TINY, audio_width=32, audio_heads=2))
    cfg = TrainConfig(out=str(tmp_path / "run"), steps=80, lr=2e-3, min_lr=2e-4, warmup=8, device="cpu", progress=False)
    train(cfg, model, batches(corpus, batch_size=12))
    losses = [float(line.split('"loss": ')[1].split(",")[0]) for line in (tmp_path / "run/metrics.jsonl").open()
              if '"loss": ' in line]  # fmt: skip
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5]), losses
    r1 = retrieval_r1(model, corpus, {"en": texts})["en"]["all"]
    assert r1 > 2 / len(texts), r1  # chance is 1/6
    hits = retrieval_hits(model, corpus, {"en": texts})["en"]  # per utterance, in corpus order, per voice
    assert [len(h) for h in hits.values()] == [len(texts)] * 2 and set(hits) == {u.voice for u in corpus}
    assert np.mean([x for h in hits.values() for x in h]) == pytest.approx(r1, abs=1e-4)


def test_transcription_targets_and_config() -> None:
    assert alphabet(["Reach the red cube.", "赤いキューブ"]) == "".join(sorted(set("reachthedcube赤いキューブ")))
    assert ctc_targets("Cab!", "abc") == [4, 2, 3]  # 0 blank, 1 outside the alphabet, 2.. the alphabet
    assert ctc_targets("a z", "abc") == [2, 1]
    with pytest.raises(GenbaError, match="no letters to transcribe"):
        ctc_targets("...", "abc")
    with pytest.raises(GenbaError, match="audio_ctc needs an audio encoder"):
        BackboneConfig(**TINY, audio_ctc="abc")
    with pytest.raises(GenbaError, match="each character once"):
        BackboneConfig(**TINY, audio_width=32, audio_heads=2, audio_ctc="aab")
    plain = SpokenBackbone(BackboneConfig(**TINY, audio_width=32, audio_heads=2))
    assert not any(k.startswith("audio_ctc") for k in plain.state_dict())  # earlier checkpoints load strictly
    with pytest.raises(GenbaError, match="no transcription head"):
        plain.transcription_logp(torch.zeros(1, 4, 32), torch.ones(1, 4, dtype=torch.bool))


def test_the_transcription_head_learns_to_spell_what_it_heard(tmp_path, one_thread) -> None:
    torch.manual_seed(0)
    texts = instructions("reach", "en")[:: 42 // 6][:6]
    corpus = speak_corpus(texts, "en", [Voice.parse(v) for v in ("espeak:en-us:0.9", "espeak:en-us+f3:1.1")])
    model = SpokenBackbone(BackboneConfig(**TINY, audio_width=32, audio_heads=2, audio_ctc=alphabet(texts)))
    # CTC first learns to emit blanks: at 120 steps retrieval by spelling was 0.25 here, at 200 steps 0.92
    cfg = TrainConfig(
        out=str(tmp_path / "run"), steps=200, lr=3e-3, min_lr=3e-4, warmup=8, device="cpu", progress=False
    )
    train(cfg, model, batches(corpus, batch_size=12))
    ctc = [json.loads(line)["metrics"]["ctc"] for line in (tmp_path / "run/metrics.jsonl").open()
           if '"ctc": ' in line]  # fmt: skip
    assert np.mean(ctc[-10:]) < 0.5 * np.mean(ctc[:5]), ctc
    r1 = retrieval_r1(model, corpus, {"en": texts}, by="transcription")["en"]["all"]
    assert r1 >= 0.5, r1  # chance is 1/6
    tokens, _, valid = model.encode_audio(*pad([corpus[0].wave]))
    scores = model.transcription_scores(tokens, valid, [texts[0], texts[0] * 20])  # (1, 2)
    assert scores[0, 1] == -float("inf") and torch.isfinite(scores[0, 0])  # too long to spell in the outputs


def test_the_tokens_marked_valid_stop_where_the_encoder_stops_reading() -> None:
    torch.manual_seed(0)
    model = Backbone(BackboneConfig(**TINY, audio_width=32, audio_heads=2, audio_max_seconds=1.0)).eval()
    rate = 16000
    waves = torch.randn(3, int(1.3 * rate)) * 0.1
    lengths = torch.tensor([int(1.3 * rate), rate, rate // 2])  # past the 1 s limit, at it, inside it
    tokens, _, valid = model.encode_audio(waves, lengths)
    assert valid.shape == tokens.shape[:2] and valid.dtype == torch.bool
    counts = valid.sum(1).tolist()
    assert counts[0] == counts[1] > counts[2] >= 1  # what lies past the limit is never read, so never valid


def test_voice_perturbation_is_seeded_and_bounded() -> None:
    t = np.arange(SR) / SR
    wave = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # 1 s at 440 Hz
    outs = [perturb_voice(wave, np.random.default_rng(seed)) for seed in (0, 0, 1)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    peaks = []
    for out in outs:
        assert out.dtype == np.float32 and np.isfinite(out).all()
        assert SR / 1.15 - 1 <= out.size <= SR / 0.85 + 1  # speed factor in [0.85, 1.15]
        spectrum = np.abs(np.fft.rfft(out))
        peaks.append(np.argmax(spectrum) * SR / out.size)  # the tone moves with the speed factor
    assert all(440 * 0.85 - 5 <= p <= 440 * 1.15 + 5 for p in peaks), peaks
    assert len({round(p) for p in peaks[1:]}) == 2, peaks  # two seeds, two speeds
    corpus = speak_corpus(["pick"], "en", [Voice.parse("espeak:en-us")]) * 2  # one synthesis: espeak-ng has state
    again = next(batches(corpus, 2, seed=3)(0))
    torch.testing.assert_close(next(batches(corpus, 2, seed=3)(0))["waves"], again["waves"])
    assert not torch.equal(next(batches(corpus, 2, seed=3, voice=True)(0))["lengths"], again["lengths"])
