"""openpi's wire format (msgpack + numpy arrays), decoded defensively.

The format is what the `openpi-client` package (0.1.2) speaks: msgpack maps whose numpy arrays are encoded as
`{b"__ndarray__": True, b"data": raw bytes, b"dtype": numpy dtype str, b"shape": [...]}` and numpy scalars as
`{b"__npgeneric__": True, b"data": item, b"dtype": str}`. openpi's own decoder hands any dtype string to numpy,
object arrays included; this one admits only plain numeric dtypes and checks that the byte count matches the shape
before numpy sees the buffer. Nothing here ever unpickles.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

from genba.policies.spec import SpecError

# Plain numeric dtypes only: numpy's object, void, datetime and complex kinds have no place on this wire.
_DTYPES = {"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"}
_DTYPES |= {">" + d[1:] for d in _DTYPES if d[0] == "<"}
_MAX_ARRAY_BYTES = int(np.iinfo(np.intp).max)
# Observations are small maps of arrays (sent as bytes), strings and numbers. msgpack's default limits scale with the
# message and let a few header bytes declare millions of entries, which the decoder allocates up front: one 8 MiB
# message could cost hundreds of MB. A message within these limits decodes to at most a few times its own size.
_LIMITS = {"max_array_len": 1024, "max_map_len": 256}


class ProtocolError(SpecError):
    """A message the server refuses; its text (one short line) is sent back to the client. Observations that do not
    match the input spec raise its parent, genba.policies.spec.SpecError."""


# ---------------------------------------------------------------------------------------------------------------
# Encoding (what the openpi client's Packer produces) and strict decoding


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in ("V", "O", "c"):
            raise ValueError(f"unsupported dtype: {obj.dtype}")
        obj = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot encode {type(obj).__name__}")


def packb(obj: Any) -> bytes:
    """Encode a dict of arrays / scalars / strings exactly as openpi_client.msgpack_numpy.packb does."""
    return msgpack.packb(obj, default=_pack_default)


def _unpack_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype, shape, data = obj.get(b"dtype"), obj.get(b"shape"), obj.get(b"data")
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise ProtocolError(f"array dtype {str(dtype)[:20]!r} not allowed (numeric dtypes only)")
        if not isinstance(shape, list | tuple) or len(shape) > 8:
            raise ProtocolError("array shape must be a list of at most 8 non-negative ints")
        if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31 for n in shape):
            raise ProtocolError("array shape must be a list of at most 8 non-negative ints")
        if not isinstance(data, bytes):
            raise ProtocolError("array data must be bytes")
        dt = np.dtype(dtype)
        # numpy refuses a shape whose non-zero dimensions overflow its index type, even when another dimension is 0.
        if math.prod(n for n in shape if n) * dt.itemsize > _MAX_ARRAY_BYTES:
            raise ProtocolError(f"array of shape {list(shape)} and dtype {dtype} is too large (over 2**63 bytes)")
        if math.prod(shape) * dt.itemsize != len(data):
            raise ProtocolError(
                f"array of shape {list(shape)} and dtype {dtype} needs "
                f"{math.prod(shape) * dt.itemsize} bytes, got {len(data)}"
            )
        return np.frombuffer(data, dtype=dt).reshape(shape)  # read-only view, no copy
    if b"__npgeneric__" in obj:
        dtype, data = obj.get(b"dtype"), obj.get(b"data")
        if not isinstance(dtype, str) or dtype not in _DTYPES or not isinstance(data, bool | int | float):
            raise ProtocolError("numpy scalar with a non-numeric dtype or value")
        try:
            return np.dtype(dtype).type(data)
        except (OverflowError, ValueError):
            raise ProtocolError(f"numpy scalar {data!r} does not fit {dtype}") from None
    return obj


def unpackb(data: bytes) -> Any:
    """Decode one message; any malformation -> ProtocolError with a short reason."""
    try:
        return msgpack.unpackb(data, object_hook=_unpack_hook, raw=False, strict_map_key=True, **_LIMITS)
    except ProtocolError:
        raise
    except Exception as e:  # msgpack raises a zoo of types (ExtraData, FormatError, ValueError, ...)
        raise ProtocolError(f"not a msgpack message ({type(e).__name__})") from None
