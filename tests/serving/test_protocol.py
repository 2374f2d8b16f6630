"""The wire format and the input-spec validation (genba.policies.spec, which the server applies), in-process."""

import msgpack
import numpy as np
import pytest

from genba.serving.protocol import ProtocolError, packb, unpackb


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


@pytest.mark.parametrize("shape", [[0, 2**31 - 1, 2**31 - 1, 2**31 - 1], [2**31 - 1] * 8])
def test_a_shape_too_large_for_numpy_is_named(shape):
    # With a zero dimension the byte count matches empty data; numpy then refused the shape inside msgpack's hook,
    # and the client was told "not a msgpack message".
    with pytest.raises(ProtocolError, match=r"array of shape \[.*\] and dtype <f8 is too large"):
        unpackb(_array("<f8", shape, b""))


@pytest.mark.parametrize("header", [b"\xdd\x00\x7f\xff\xff", b"\xdc\xff\xff" * 4])  # array32, nested array16
def test_a_declared_length_costs_no_memory(header):
    import tracemalloc

    message = header + bytes(8 * 2**20 - len(header))  # 4M map entries / 8M array items declared, then zeros
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="not a msgpack message"):
            unpackb(message)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak  # msgpack's default limits let it allocate 64 MB (array) to 200 MB (map) up front


def test_garbage_is_a_protocol_error():
    for data in (b"", b"\xc1", b"\x92\x01", packb({"a": 1}) + b"extra"):
        with pytest.raises(ProtocolError):
            unpackb(data)
