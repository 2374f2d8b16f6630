"""Spoken instructions on the policy side (issue 13): `genba train-policy instruction_modality=audio|both` on a dataset
collected with audio=true, the VLA run hearing `observation.audio`, `genba eval instruction_modality=audio voice=...`
speaking each episode's instruction (shuffled ones too) through the one loop with real TTS, and the run served."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genba import keys
from genba.errors import GenbaError
from genba.policies.evaluate import EvalConfig, run_eval
from genba.policies.spec import SpecError
from genba.policies.train_command import TrainPolicyConfig, build, run_train_policy
from genba.policies.vla_policy import VLAPolicy
from genba.speech import Voice, synthesize


@pytest.fixture(scope="module")
def spoken_runs(tmp_path_factory) -> dict:
    """reach, 4 episodes at 32x32 (front camera), English and Japanese, each instruction spoken (espeak-ng for
    English, OpenJTalk for Japanese); a VLA trained 2 steps with instruction_modality=audio and one with both."""
    import torch

    from genba.datasets.collect import CollectConfig, run_collect

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("spoken")
    data = root / "reach"
    run_collect(CollectConfig(task="reach", episodes=4, image_size=32, cameras=["front"], lang="mixed", audio=True,
                              out=str(data)))  # fmt: skip
    runs = {}
    for modality in ("audio", "both"):
        cfg = TrainPolicyConfig(data=str(data), out=str(root / modality), steps=2, batch_size=4, val_fraction=0.25,
                                instruction_modality=modality, threads=1, progress=False)  # fmt: skip
        runs[modality] = run_train_policy(cfg)
    return {"data": data, "root": root, "summaries": runs}


def _obs(policy: VLAPolicy, rng: np.random.Generator) -> dict:
    spec = policy.input_spec.features
    obs = {k: rng.integers(0, 256, f.shape, dtype=np.uint8) for k, f in spec.items() if f.dtype == "uint8"}
    return obs | {keys.OBS_STATE: np.zeros(6, np.float32)}


def test_training_hears_each_episode_and_ties_speech_to_text(spoken_runs):
    for modality, summary in spoken_runs["summaries"].items():
        assert summary["model"]["instruction_modality"] == modality
        assert summary["model"]["backbone"]["audio_width"] == summary["model"]["backbone"]["text_width"]
        metrics = [json.loads(line) for line in (spoken_runs["root"] / modality / "metrics.jsonl").open()]
        train = [m for m in metrics if "metrics" in m]
        assert len(train) == 2 and all(np.isfinite(m["metrics"]["audio_text"]) for m in train)
        assert "audio_text" in next(m["val"] for m in metrics if "val" in m)


def test_an_audio_policy_reads_speech_and_refuses_text_alone(spoken_runs):
    policy = VLAPolicy(str(spoken_runs["root"] / "audio"))
    spec = policy.input_spec.features
    assert keys.TASK not in spec and spec[keys.OBS_AUDIO].sample_rate == keys.AUDIO_SAMPLE_RATE
    assert policy.instruction_modality == "audio"
    obs = _obs(policy, np.random.default_rng(0))
    red = synthesize("reach for the red cube", "en", Voice.parse("espeak:en-us"))
    blue = synthesize("reach for the blue sphere", "en", Voice.parse("espeak:en-us+f3"))
    rate = {keys.OBS_AUDIO_RATE: keys.AUDIO_SAMPLE_RATE}
    policy.reset()
    first = policy.infer(policy.input_spec.validate({**obs, **rate, keys.OBS_AUDIO: red}))[keys.ACTIONS]
    policy.reset()
    again = policy.infer({**obs, keys.OBS_AUDIO: red})[keys.ACTIONS]
    policy.reset()
    other = policy.infer({**obs, keys.OBS_AUDIO: blue})[keys.ACTIONS]
    assert first.shape == (8, 6) and np.array_equal(first, again) and not np.array_equal(first, other)
    with pytest.raises(SpecError, match="unknown key 'task'"):
        policy.input_spec.validate({**obs, keys.TASK: "reach for the red cube"})
    with pytest.raises(SpecError, match="missing the instruction"):
        policy.input_spec.validate(obs)


def test_a_both_policy_takes_text_speech_or_both_in_one_batch(spoken_runs):
    policy = VLAPolicy(str(spoken_runs["root"] / "both"))
    spec = policy.input_spec.features
    assert spec[keys.TASK].one_of == spec[keys.OBS_AUDIO].one_of and not spec[keys.TASK].required
    obs = _obs(policy, np.random.default_rng(1))
    wave = synthesize("赤い立方体に手を伸ばして", "ja", Voice.parse("openjtalk:mei"))
    text, speech = {keys.TASK: "赤い立方体に手を伸ばして"}, {keys.OBS_AUDIO: wave}
    policy.reset()
    batch = policy.infer_batch([obs | text, obs | speech, obs | text | speech])
    alone = []
    for given in (text, speech, text | speech):
        policy.reset()
        alone.append(policy.infer(obs | given)[keys.ACTIONS])
    assert all(np.isfinite(b[keys.ACTIONS]).all() for b in batch)
    assert not np.allclose(alone[0], alone[1]) and not np.allclose(alone[1], alone[2])


def test_a_dataset_without_speech_is_refused_in_one_line(tiny_vla_run, tmp_path):
    cfg = TrainPolicyConfig(data=str(tiny_vla_run["data"]), out=str(tmp_path / "r"), instruction_modality="audio",
                            progress=False)  # fmt: skip
    with pytest.raises(GenbaError, match=r"episode 0 of .* has none: collect it with `genba collect \.\.\. audio="):
        build(cfg)
    with pytest.raises(GenbaError, match="instruction_modality='voice'"):
        TrainPolicyConfig(data="x", instruction_modality="voice")


def test_speech_voices_re_speak_every_instruction_for_training(spoken_runs, tmp_path):
    from genba.datasets.commit import read_all_episode_meta

    data = str(spoken_runs["data"])
    voices = ["espeak:en-us+f3:1.1", "openjtalk:mei:0.9:2"]
    parts = build(TrainPolicyConfig(data=data, out=str(tmp_path / "v"), instruction_modality="audio", batch_size=4,
                                    val_fraction=0.25, speech_voices=voices, progress=False))  # fmt: skip
    speech = parts["speech"]
    records = read_all_episode_meta(data)
    assert len(speech) == len(records) == 4
    for options, record in zip(speech, records, strict=True):
        assert len(options) == 2  # the recording, then the one extra voice that speaks the episode's language
        extra = voices[0] if record["spec"]["lang"] == "en" else voices[1]
        again = synthesize(record["task"], record["spec"]["lang"], Voice.parse(extra))
        assert options[1].size == again.size or extra.startswith("espeak")  # espeak-ng is not bit-exact
        assert options[0].size != options[1].size
    lengths = (~parts["val"][0][keys.pad_key(keys.OBS_AUDIO)]).sum(1).tolist()  # validation hears the recordings
    assert lengths == [speech[int(e)][0].size for e in parts["val"][0]["episode_index"]]
    with pytest.raises(GenbaError, match="espeak-ng has no voice 'en-xx'"):
        TrainPolicyConfig(data=data, instruction_modality="audio", speech_voices=["espeak:en-xx"])
    with pytest.raises(GenbaError, match="speech_voices= re-speaks instructions for a spoken policy"):
        build(TrainPolicyConfig(data=data, out=str(tmp_path / "t"), speech_voices=voices, progress=False))


def test_eval_speaks_each_instruction_paired_with_typed(spoken_runs, tmp_path):
    run = str(spoken_runs["root"] / "both")
    cfg = EvalConfig(task="reach", policy=run, episodes=2, workers=1, lang="mixed", instruction_modality="audio",
                     voice="kokoro:jm_kumo", audio_noise="factory", audio_snr=10, compare=run, compare_modality="text",
                     out=str(tmp_path / "e"))  # fmt: skip
    summary = run_eval(cfg)
    assert summary["instruction_modality"] == "audio" and summary["voice"] == "kokoro:jm_kumo"
    assert summary["audio_noise"] == "factory" and summary["audio_snr"] == 10.0
    assert summary["compare"]["instruction_modality"] == "text" and "voice" not in summary["compare"]
    assert summary["paired_diff"] == summary["success_rate"] - summary["compare"]["success_rate"]
    for episode in summary["per_episode"]:
        assert episode["voice"] == "kokoro:jm_kumo" and 0.3 < episode["audio_seconds"] < 10 and episode["task"]
    assert {e["lang"] for e in summary["per_episode"]} <= {"en", "ja"}


def test_shuffled_instructions_are_spoken_as_shuffled(spoken_runs, tmp_path):
    run = str(spoken_runs["root"] / "audio")
    summary = run_eval(EvalConfig(task="reach", policy=run, episodes=2, workers=1, lang="en", grounding=True,
                                  voice="espeak:en-gb-scotland+f4", out=str(tmp_path / "g")))  # fmt: skip
    assert summary["instruction_modality"] == "audio"  # the policy's own
    shuffled = summary["shuffled"]
    assert shuffled["instruction_modality"] == "audio" and shuffled["voice"] == "espeak:en-gb-scotland+f4"
    for as_is, moved in zip(summary["per_episode"], shuffled["per_episode"], strict=True):
        assert moved["original_instruction"] == as_is["task"]  # the typed text was withheld, yet recorded
        if moved["instruction_names"] is not None:  # another object of the scene was named, and that was spoken
            assert moved["task"] != as_is["task"] and moved["audio_seconds"] > 0


def test_eval_refuses_what_cannot_be_heard_before_any_episode(spoken_runs, tiny_vla_run, tmp_path):
    with pytest.raises(GenbaError, match=r"reads no observation\.audio: instruction_modality=audio"):
        run_eval(EvalConfig(task="reach", policy=str(tiny_vla_run["run"]), episodes=1, instruction_modality="audio"))
    audio = str(spoken_runs["root"] / "audio")
    with pytest.raises(GenbaError, match="only spoken: use instruction_modality=audio"):
        run_eval(EvalConfig(task="reach", policy=audio, episodes=1, instruction_modality="text"))
    with pytest.raises(GenbaError, match="has no voice that speaks 'ja'"):
        run_eval(EvalConfig(task="reach", policy=audio, episodes=1, lang="mixed", voice="espeak:en-us"))
    with pytest.raises(ValueError, match="audio_noise='rain'"):
        EvalConfig(task="reach", policy=audio, audio_noise="rain")


def test_the_loop_hands_the_sample_rate_on_and_checks_it(spoken_runs):
    """The rate reaches the spec's check (a wrong one is refused) and the policy (a server needs it)."""
    import genba.sim
    from genba.policies.rollout import rollout

    policy = VLAPolicy(str(spoken_runs["root"] / "audio"))
    heard: list[dict] = []
    infer = policy.infer
    policy.infer = lambda obs: heard.append(obs) or infer(obs)  # type: ignore[method-assign]
    env = genba.sim.make("reach", cameras=["front"], image_size=32)
    try:
        voice = Voice.parse("espeak:en-us")
        episode = rollout(env, policy, 1_000_000, speak=lambda text: synthesize(text, "en", voice), typed=False)
        assert episode.task and heard and all(o[keys.OBS_AUDIO_RATE] == keys.AUDIO_SAMPLE_RATE for o in heard)
        assert all(keys.TASK not in o for o in heard)
        from genba.policies.rollout import SpokenRobot, run_episode
        from genba.sim.arm import SimArm

        arm = SimArm(env)
        arm.reset(1_000_001)
        wrong = SpokenRobot(arm, lambda text: np.full(8000, 0.1, np.float32), typed=False, sample_rate=8000)
        with pytest.raises(GenbaError, match="is at 8000 Hz; this policy takes 16000 Hz"):
            run_episode(wrong, policy)
    finally:
        env.close()


def test_a_served_audio_policy_hears_the_loop_through_the_server(spoken_runs):
    """The one loop drives the served VLA (RemotePolicy) with the spoken instruction: the rate crosses the wire."""
    import genba.sim
    from genba.policies.registry import policy_factory
    from genba.policies.rollout import rollout
    from genba.serving.app import PolicyServer, ServerThread
    from genba.serving.remote import RemotePolicy

    server = PolicyServer(policy_factory(str(spoken_runs["root"] / "audio")), port=0, limits=None)
    env = genba.sim.make("reach", cameras=["front"], image_size=32)
    with ServerThread(server) as served:
        remote = RemotePolicy(served.url, timeout_s=60)
        try:
            voice = Voice.parse("espeak:en-us")
            episode = rollout(env, remote, 1_000_000, speak=lambda text: synthesize(text, "en", voice), typed=False)
        finally:
            remote.close()
            env.close()
        stats = served.server.summary()
    assert episode.steps > 0 and episode.errors == 0 and episode.requests >= 1
    assert stats["errors"] == 0


def test_speech_init_starts_the_encoder_from_a_speech_text_backbone_also_beside_init(spoken_runs, tmp_path):
    import safetensors.torch
    import torch

    from genba.train.checkpoint import save_checkpoint
    from genba.worldmodel.backbone import BackboneConfig
    from genba.worldmodel.model import WorldModel, WorldModelConfig
    from genba.worldmodel.spoken import SpokenBackbone

    data = str(spoken_runs["data"])
    vla = json.loads((spoken_runs["root"] / "both" / "last" / "config.json").read_text())["backbone"]
    torch.manual_seed(7)  # a pre-trained encoder of another shape than the VLA's own (depth 1, 2 heads)
    bb = BackboneConfig(**{**vla, "audio_width": 64, "audio_depth": 1, "audio_heads": 2})
    save_checkpoint(tmp_path / "speech" / "last", SpokenBackbone(bb))
    cfg = TrainPolicyConfig(data=data, out=str(tmp_path / "s"), instruction_modality="both", batch_size=4,
                            val_fraction=0.25, speech_init=str(tmp_path / "speech"), progress=False)  # fmt: skip
    model = build(cfg)["model"]
    assert (model.config.backbone.audio_width, model.config.backbone.audio_depth) == (64, 1)
    mine = model.backbone.state_dict()
    saved = safetensors.torch.load_file(str(tmp_path / "speech" / "last" / "model.safetensors"))
    audio = [k for k in saved if k.startswith("audio")]
    assert len(audio) > 10 and all(torch.equal(mine[k], saved[k]) for k in audio)
    assert not torch.equal(mine["audio.pos"], SpokenBackbone(bb).state_dict()["audio.pos"])  # not any fresh draw
    with pytest.raises(GenbaError, match="starts the speech encoder of a spoken policy"):
        build(TrainPolicyConfig(data=data, out=str(tmp_path / "t"), speech_init=str(tmp_path / "speech"),
                                progress=False))  # fmt: skip
    with pytest.raises(GenbaError, match="is a 'vla' checkpoint; it takes a spoken_backbone or worldmodel run"):
        build(TrainPolicyConfig(data=data, out=str(tmp_path / "u"), instruction_modality="audio",
                                speech_init=str(spoken_runs["root"] / "audio"), progress=False))  # fmt: skip
    shape = dict(cameras=["front"], latent_dim=8, decoder_hidden=16, width=64, depth=1, heads=2)
    wm = WorldModel(WorldModelConfig(backbone=BackboneConfig(**vla), **shape))  # with speech of the VLA's own shape
    save_checkpoint(tmp_path / "wm" / "last", wm)
    both = build(TrainPolicyConfig(data=data, out=str(tmp_path / "w"), instruction_modality="both", batch_size=4,
                                   val_fraction=0.25, init=str(tmp_path / "wm"), speech_init=str(tmp_path / "speech"),
                                   progress=False))["model"]  # fmt: skip
    mine, theirs = both.backbone.state_dict(), wm.backbone.state_dict()
    assert both.config.backbone.audio_width == 64 and all(torch.equal(mine[k], saved[k]) for k in audio)
    assert all(torch.equal(mine[k], v) for k, v in theirs.items() if not k.startswith("audio"))  # the rest from init=
    small = BackboneConfig(**{**vla, "audio_width": 64, "audio_depth": 1, "audio_heads": 2, "embed_dim": 64})
    save_checkpoint(tmp_path / "narrow" / "last", SpokenBackbone(small))
    with pytest.raises(GenbaError, match=r"audio_proj\.(weight|bias) does not fit this backbone"):
        build(TrainPolicyConfig(data=data, out=str(tmp_path / "v"), instruction_modality="audio",
                                speech_init=str(tmp_path / "narrow"), progress=False))  # fmt: skip
