"""RemotePolicy: a policy served over openpi's websocket protocol, behind genba's policy contract.

    import numpy as np
    from genba.serving.remote import RemotePolicy

    policy = RemotePolicy("ws://127.0.0.1:8000", api_key=None)  # `genba serve policy=linear` running there
    policy.input_spec, policy.action_spec  # read from the server's metadata
    policy.reset()
    actions = policy.infer({"observation.state": np.zeros(6, np.float32)})["actions"]  # (H, A) float32
    policy.close()

It meets genba.policies.contract, so the one episode loop runs it like a local policy (genba.serving.robot_client).
"""

from __future__ import annotations

from typing import Any

from genba import keys
from genba.errors import GenbaError
from genba.io import one_line
from genba.policies.spec import ActionSpec, InputSpec
from genba.serving.protocol import packb, unpackb


class PolicyServerError(RuntimeError):
    """The server answered with an error message (a text frame) instead of actions."""


class RemotePolicy:
    """A policy served by `genba serve` (or any openpi server), behind the policy contract: its input and action specs
    come from the server's metadata. `reset()` marks the next request as an episode's first (`"reset": True`, which
    the server turns into the served policy's own reset()). A reply slower than `timeout_s` drops the connection (a
    late reply must never be taken for the next one) and the next call reconnects."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 5.0) -> None:
        self.url, self.timeout_s = url, timeout_s
        self._headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self._ws: Any = None
        self.metadata: dict = {}
        self._reset_next = False
        self._connect()
        self.name = str(self.metadata.get("policy", url))
        try:
            self.input_spec = InputSpec.from_json(self.metadata["input_spec"])
            self.action_spec = ActionSpec.from_json(self.metadata["action_spec"])
        except (KeyError, TypeError, ValueError) as e:
            self.close()
            raise GenbaError(f"policy server {url} sent metadata without valid input and action specs: "
                             f"{type(e).__name__}: {one_line(e)}") from None  # fmt: skip
        self._sends_reset = self.metadata.get("reset_key") == keys.RESET

    def _connect(self) -> None:
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
        from websockets.sync.client import connect

        try:
            # Entered as a context (websockets 17 deprecates bare connections); left in close().
            self._ws = connect(
                self.url,
                compression=None,
                max_size=None,
                additional_headers=self._headers,
                open_timeout=self.timeout_s,
            ).__enter__()
        except InvalidStatus as e:
            raise GenbaError(
                f"policy server {self.url} refused the connection: HTTP {e.response.status_code}"
            ) from None
        except InvalidURI:
            raise GenbaError(f"policy server address {self.url!r} is not a ws:// or wss:// URL") from None
        except (OSError, InvalidHandshake) as e:  # refused, unreachable, timed out, not a websocket server
            raise GenbaError(f"cannot reach policy server {self.url}: {e}") from None
        try:
            metadata = unpackb(self._ws.recv(timeout=self.timeout_s))
            if not isinstance(metadata, dict):
                raise TypeError(f"a {type(metadata).__name__}, not a map")
        except Exception as e:  # closed or silent right after the handshake, or not openpi's metadata message
            self.close()
            raise GenbaError(f"policy server {self.url} sent no metadata: {type(e).__name__}: {one_line(e)}") from None
        self.metadata = metadata

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        if self._ws is None:
            self._connect()
        if self._reset_next and self._sends_reset:
            obs = {**obs, keys.RESET: True}
        self._reset_next = False
        try:
            self._ws.send(packb(obs))
            reply = self._ws.recv(timeout=self.timeout_s)
        except Exception:
            self.close()  # timeout or a dropped connection: start clean next time
            raise
        if isinstance(reply, str):
            raise PolicyServerError(reply)
        return unpackb(reply)

    def reset(self) -> None:
        self._reset_next = True  # sent with the next request, so a reset costs no round trip of its own

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None
