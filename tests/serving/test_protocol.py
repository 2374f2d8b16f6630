"""The wire format and the input-spec validation, in-process."""

import msgpack
import numpy as np
import pytest

from genba import keys
from genba.serving.protocol import RESET, Feature, InputSpec, ProtocolError, packb, unpackb

SPEC = InputSpec(
    {
        keys.OBS_STATE: Feature("float32", (6,)),
        keys.image_key("front"): Feature("uint8", (4, 4, 3)),
        keys.TASK: Feature("str", required=False),
    }
)


def _array(dtype: str, shape: list, data: bytes) -> bytes:
    return msgpack.packb({"x": {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}})


def test_round_trip_keeps_dtype_shape_and_values():
    obs = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.uint8(7), "s": "日本語", "n": [1, 2.5]}
    out = unpackb(packb(obs))
    assert out["a"].dtype == np.float32 and out["a"].shape == (3, 4)
    np.testing.assert_array_equal(out["a"], obs["a"])
    assert out["b"] == 7 and out["b"].dtype == np.uint8
    assert out["s"] == "日本語" and out["n"] == [1, 2.5]


@pytest.mark.parametrize("dtype", ["|O", "<c16", "|V8", "<M8[s]", "object", 5])
def test_non_numeric_dtypes_are_refused(dtype):
    with pytest.raises(ProtocolError, match="not allowed"):
        unpackb(_array(dtype, [1], b"\0" * 8))


def test_byte_count_must_match_shape():
    with pytest.raises(ProtocolError, match="needs 4000000000 bytes, got 4"):
        unpackb(_array("<f4", [1000000000], b"\0" * 4))
    with pytest.raises(ProtocolError, match="shape"):
        unpackb(_array("<f4", [-1], b""))
    with pytest.raises(ProtocolError, match="shape"):
        unpackb(_array("<f4", "12", b""))


def test_garbage_is_a_protocol_error():
    for data in (b"", b"\xc1", b"\x92\x01", packb({"a": 1}) + b"extra"):
        with pytest.raises(ProtocolError):
            unpackb(data)


def _good() -> dict:
    return {keys.OBS_STATE: np.zeros(6, np.float32), keys.image_key("front"): np.zeros((4, 4, 3), np.uint8)}


def test_validate_accepts_good_obs_prompt_alias_and_float64():
    obs = _good() | {"prompt": "put it in the bin", keys.OBS_STATE: np.ones(6, np.float64), RESET: True}
    out = SPEC.validate(obs)
    assert out[keys.TASK] == "put it in the bin" and "prompt" not in out
    assert out[keys.OBS_STATE].dtype == np.float32 and out[RESET] is True
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
        ({RESET: "yes"}, "must be a bool"),
        ({keys.TASK: "a", "prompt": "b"}, "not both"),
    ],
)
def test_validate_names_the_bad_key(change, message):
    with pytest.raises(ProtocolError, match=message):
        SPEC.validate(_good() | change)


def test_validate_missing_and_non_map():
    with pytest.raises(ProtocolError, match=r"missing key 'observation\.state'"):
        SPEC.validate({keys.image_key("front"): np.zeros((4, 4, 3), np.uint8)})
    with pytest.raises(ProtocolError, match="must be a map"):
        SPEC.validate([1, 2])
