"""Input and action specs: what a policy reads and emits, checked before the policy sees anything."""

import numpy as np
import pytest

from genba import keys
from genba.policies.spec import ActionSpec, Feature, InputSpec, SpecError

SPEC = InputSpec(
    {
        keys.OBS_STATE: Feature("float32", (6,)),
        keys.image_key("front"): Feature("uint8", (4, 4, 3)),
        keys.TASK: Feature("str", required=False),
    }
)


def _good() -> dict:
    return {keys.OBS_STATE: np.zeros(6, np.float32), keys.image_key("front"): np.zeros((4, 4, 3), np.uint8)}


def test_validate_accepts_good_obs_prompt_alias_and_float64():
    obs = _good() | {"prompt": "put it in the bin", keys.OBS_STATE: np.ones(6, np.float64), keys.RESET: True}
    out = SPEC.validate(obs)
    assert out[keys.TASK] == "put it in the bin" and "prompt" not in out
    assert out[keys.OBS_STATE].dtype == np.float32 and out[keys.RESET] is True
    assert keys.TASK not in SPEC.validate(_good())  # optional


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({keys.OBS_STATE: np.full(6, np.nan, np.float32)}, "non-finite"),
        ({keys.OBS_STATE: np.full(6, 1e300)}, "non-finite"),  # finite float64, inf once cast
        ({keys.OBS_STATE: np.zeros(5, np.float32)}, r"shape \[5\], expected \[6\]"),
        ({keys.image_key("front"): np.zeros((4, 4, 3), np.float32)}, "dtype float32, expected uint8"),
        ({keys.OBS_STATE: [0.0] * 6}, "must be a float32 array"),
        ({"extra": 1}, "unknown key 'extra'"),
        ({keys.TASK: 3}, "must be a string"),
        ({keys.TASK: "x" * 5000}, "at most"),
        ({keys.RESET: "yes"}, "must be a bool"),
        ({keys.TASK: "a", "prompt": "b"}, "not both"),
    ],
)
def test_validate_names_the_bad_key(change, message):
    with pytest.raises(SpecError, match=message):
        SPEC.validate(_good() | change)


def test_validate_missing_and_non_map():
    with pytest.raises(SpecError, match=r"missing key 'observation\.state'"):
        SPEC.validate({keys.image_key("front"): np.zeros((4, 4, 3), np.uint8)})
    with pytest.raises(SpecError, match="must be a map"):
        SPEC.validate([1, 2])


def test_specs_round_trip_through_json():
    """The robot client rebuilds a served policy's specs from the server's metadata."""
    assert InputSpec.from_json(SPEC.to_json()) == SPEC
    action = ActionSpec(horizon=16, dim=6, fps=30.0, units="deg (gripper: 0..100)")
    assert ActionSpec.from_json(action.to_json()) == action
