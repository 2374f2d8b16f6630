"""A policy that listens: it takes the instruction as text, as speech (`observation.audio`) or both, and answers
with what it heard, so that a test can see what the server handed it. Imported by the serving tests by name."""

from __future__ import annotations

import numpy as np

from genba import keys
from genba.policies.spec import INSTRUCTION, ActionSpec, Feature, InputSpec, audio_feature


class ListeningPolicy:
    name = "listening"

    def __init__(self, **_: object) -> None:
        self.input_spec = InputSpec(
            {
                keys.OBS_STATE: Feature("float32", (6,)),
                keys.TASK: Feature("str", required=False, one_of=INSTRUCTION),
                keys.OBS_AUDIO: audio_feature(),
            }
        )
        self.action_spec = ActionSpec(horizon=2, dim=6)

    def reset(self) -> None:
        pass

    def infer(self, obs: dict) -> dict:
        """Row 0: seconds of audio, its RMS, characters of text, whether each came, and the waveform's dtype check."""
        wave = obs.get(keys.OBS_AUDIO)
        task = obs.get(keys.TASK, "")
        heard = [
            0.0 if wave is None else wave.size / keys.AUDIO_SAMPLE_RATE,
            0.0 if wave is None else float(np.sqrt(np.mean(wave**2))),
            float(len(task)),
            float(wave is not None),
            float(keys.TASK in obs),
            float(wave is None or wave.dtype == np.float32),
        ]
        return {keys.ACTIONS: np.array([heard, heard], np.float32)}
