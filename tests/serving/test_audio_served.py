"""`observation.audio` at the server, driven by the real openpi-client: speech beside or instead of the text reaches
the policy as a float32 waveform; an empty waveform, a wrong sample rate, NaNs, a missing rate or neither
instruction are each one clear line, and the server keeps serving. Also the spec's own checks, directly."""

from __future__ import annotations

import numpy as np
import pytest
from serving_harness import openpi, start

from genba import keys
from genba.policies.spec import MAX_AUDIO_SECONDS, InputSpec, SpecError


def test_spoken_instruction_through_openpi_client() -> None:
    with start("audio_policy:ListeningPolicy", limits=None) as server:
        result = openpi({"mode": "audio", "host": "127.0.0.1", "port": server.port})
        stats = server.server.summary()
    meta = result["metadata"]
    assert meta["input_spec"][keys.OBS_AUDIO]["sample_rate"] == keys.AUDIO_SAMPLE_RATE == result["rate"]
    assert meta["input_spec"][keys.OBS_AUDIO]["shape"] == [-1]
    assert keys.OBS_AUDIO in meta["instruction_keys"] and meta["audio_rate_key"] == keys.OBS_AUDIO_RATE
    rms = 0.1 / np.sqrt(2)
    audio, both, text = (result["answers"][k] for k in ("audio", "both", "text"))
    assert audio == pytest.approx([result["seconds"], rms, 0, 1, 0, 1], rel=1e-3)
    assert both == pytest.approx([result["seconds"], rms, len("pick up the red cube"), 1, 1, 1], rel=1e-3)
    assert text == pytest.approx([0, 0, len("pick up the red cube"), 0, 1, 1])
    errors = result["errors"]
    expected = {
        "empty": "'observation.audio' is empty",
        "wrong_rate": "is at 44100 Hz; this policy takes 16000 Hz",
        "nan": "'observation.audio' has non-finite values",
        "no_rate": "needs its sample rate in Hz as 'observation.audio_sample_rate'",
        "two_channels": "'observation.audio' has shape [2, 8000], expected [-1]",
        "neither": "missing the instruction: send 'task' or 'observation.audio'",
    }
    for name, text_ in expected.items():
        assert errors[name] is not None and text_ in errors[name], (name, errors[name])
        # openpi-client prefixes "Error in inference server:\n"; the server's own answer is one line
        assert errors[name].strip().splitlines()[-1].startswith("bad request: "), errors[name]
    assert result["after"] == audio  # the same connection still serves
    assert stats["errors"] == len(expected)


def test_spec_checks_directly() -> None:
    from audio_policy import ListeningPolicy

    spec = ListeningPolicy().input_spec
    state = {keys.OBS_STATE: np.zeros(6, np.float32)}
    rate = {keys.OBS_AUDIO_RATE: np.int64(16000)}  # a numpy integer is an integer too
    wave = np.full(1600, 0.1, np.float64)  # any float width is cast to the declared float32
    out = spec.validate({**state, **rate, keys.OBS_AUDIO: wave})
    assert out[keys.OBS_AUDIO].dtype == np.float32 and keys.OBS_AUDIO_RATE not in out
    with pytest.raises(SpecError, match=r"at most 30\.0 s"):
        spec.validate({**state, **rate, keys.OBS_AUDIO: np.zeros(int(MAX_AUDIO_SECONDS * 16000) + 1, np.float32)})
    with pytest.raises(SpecError, match="must be an integer"):
        spec.validate({**state, keys.OBS_AUDIO_RATE: 16000.0, keys.OBS_AUDIO: wave})
    with pytest.raises(SpecError, match="dtype int16"):
        spec.validate({**state, **rate, keys.OBS_AUDIO: np.zeros(10, np.int16)})
    assert InputSpec.from_json(spec.to_json()) == spec  # sample rate and group survive the metadata
    plain = InputSpec({keys.OBS_STATE: spec.features[keys.OBS_STATE]})
    with pytest.raises(SpecError, match=r"unknown key 'observation\.audio_sample_rate'"):
        plain.validate({**state, **rate})  # a policy that does not listen refuses audio like any unknown key
