"""`genba serve`: a policy behind openpi's websocket protocol, hardened for robot arms.

Protocol (what the unmodified `openpi-client` 0.1.2 speaks): on connect the server sends one msgpack metadata map
(here: policy name, input spec, action spec, limits); then each binary msgpack observation gets one binary reply
`{"actions": (H, A) float32, "server_timing": {...}}`, or a text frame with a one-line error (the openpi client
raises RuntimeError on text). `GET /healthz` on the same port answers 200 "OK".

Unlike openpi's reference server it binds loopback by default (a non-loopback host needs an API key, or
allow_insecure=true), checks `Authorization: Api-Key <key>` in constant time (401 before the upgrade), caps message
size (larger messages close the connection with 1009), validates every observation against the policy's input spec
before the policy sees it, never sends a traceback and never closes the connection over a bad message, and clips
every action to the robot's joint limits and per-step change. Nothing is ever unpickled.

`robot=` names whose limits clip the actions: the genba arm's (radians, gripper metres), the SO-101 follower's
(lerobot's degrees and gripper 0..100, converted to the policy's units by genba.serving.safety: +-pi rad, gripper
0..0.032 m, 8 deg = 0.1396 rad and 0.0064 m of gripper per step), or none. A policy whose action units have no known
conversion to the robot's is refused in one line. A VLA run (`policy=<run folder>`) acts in genba's units, so
`genba serve policy=runs/vla robot=so101` serves it for an SO-101 driven by the robot client
(genba.serving.robots.LeRobotArm converts observations and actions between the two).

Policies without `infer_batch` (the scripted experts, which keep episode state) get one instance per connection; a
client starts an episode by adding `"reset": True` to its first observation (the server calls that instance's
reset(); genba's clients do this), or by reconnecting (plain openpi clients). A batched policy is shared by all
clients and its reset() is not called for one of them (`per_connection=` overrides the choice). A VLA batches, so it
is shared: its flow sampler's noise generator, seeded when the server starts, runs on across requests and
connections, and an episode's actions then depend on what was served before; with `per_connection=true` each
connection gets its own instance, reseeded by its `"reset": True`, and a served episode repeats a local one.

Resources a client can hold are bounded: a connection with no observation for `idle_timeout_s` is closed (1000);
when all `max_connections` are taken, a newcomer closes the longest-idle connection if it has been idle for
`evict_idle_s` (1013), else gets 503 (so clients that only answer pings cannot lock out an arm's client, which sends
every control step); bytes received and not yet answered, all clients together, stay under `max_inflight_mb` (past
it the client holding the most is closed with 1013). `GET /healthz` ignores query strings; HEAD gets headers only;
the `Server` header says `genba`, no versions.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import sys
from dataclasses import dataclass, field
from typing import Any

API_KEY_ENV = "GENBA_API_KEY"


@dataclass
class ServeConfig:
    policy: str = field(
        default="scripted",
        metadata={
            "help": "scripted | linear | hold | random | <VLA run folder> | lerobot:<checkpoint folder> | "
            "module.path:ClassName"
        },
    )
    task: str = field(default="pick_place", metadata={"help": "task of the scripted expert (policy=scripted)"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind; non-loopback needs api_key"})
    port: int = field(default=8000, metadata={"help": "TCP port (0: any free port)"})
    api_key: str = field(
        default="", metadata={"help": f"required `Authorization: Api-Key <key>`; empty: ${API_KEY_ENV} or none"}
    )
    allow_insecure: bool = field(default=False, metadata={"help": "allow a non-loopback host without api_key"})
    robot: str = field(
        default="genba_arm",
        metadata={
            "help": "whose action limits clip the actions (converted to the policy's units): genba_arm | so101 | none"
        },
    )
    max_delta_scale: float = field(default=1.0, metadata={"help": "scale of the robot's max change per step"})
    max_message_mb: float = field(default=8.0, metadata={"help": "largest observation message accepted (MiB)"})
    max_connections: int = field(default=32, metadata={"help": "concurrent clients; more get HTTP 503"})
    per_connection: bool | None = field(
        default=None,
        metadata={"help": "one policy instance per client (stateful policies); null: yes unless it has infer_batch"},
    )
    max_batch: int = field(default=16, metadata={"help": "largest batch of concurrent requests (shared policies)"})
    idle_timeout_s: float = field(
        default=60.0, metadata={"help": "close a connection that sends no observation for this long (code 1000)"}
    )
    evict_idle_s: float = field(
        default=10.0,
        metadata={"help": "when full, a newcomer closes the longest-idle connection if idle this long (code 1013)"},
    )
    max_inflight_mb: float = field(
        default=64.0,
        metadata={"help": "bytes received and not yet answered, all clients (MiB); past it the largest holder is "
                  "closed (code 1013)"},
    )  # fmt: skip
    batch_wait_ms: float = field(default=2.0, metadata={"help": "longest wait for more requests to batch"})
    # Passed to the policy's constructor when set (and when it names them); null: the policy's own default.
    cameras: list[str] | None = field(
        default=None, metadata={"help": "image inputs of the policy (linear/hold: none); null: its default"}
    )
    image_size: int | None = field(default=None, metadata={"help": "image side (linear/hold: 224); null: its default"})
    horizon: int | None = field(default=None, metadata={"help": "action chunk length (linear/hold: 10); null: default"})
    out: str = field(default="", metadata={"help": "summary JSON path (default outputs/serve-<time>.json)"})

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port} is not a TCP port (0..65535)")
        if self.robot not in ("genba_arm", "so101", "none"):
            raise ValueError(f"unknown robot {self.robot!r} (valid: genba_arm, so101, none)")
        for name in ("max_message_mb", "max_delta_scale", "idle_timeout_s", "evict_idle_s", "max_inflight_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be > 0")
        for name in ("max_connections", "max_batch", "image_size", "horizon"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.max_inflight_mb <= self.max_message_mb:
            raise ValueError(
                f"max_inflight_mb={self.max_inflight_mb:g} must be > max_message_mb={self.max_message_mb:g} "
                "(else one largest message is refused)"
            )
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms={self.batch_wait_ms} must be >= 0")
        if not is_loopback(self.host) and not self.resolved_api_key() and not self.allow_insecure:
            raise ValueError(
                f"host={self.host} is reachable from other machines: set api_key=<secret> (or ${API_KEY_ENV}), "
                "or allow_insecure=true if this network is trusted"
            )

    def resolved_api_key(self) -> str:
        """The key in force: api_key, else $GENBA_API_KEY (read here, never stored in the config, so that neither
        `--help` nor the summary can show it)."""
        return self.api_key or os.environ.get(API_KEY_ENV, "")

    def summary_path(self) -> str:
        if self.out:
            return self.out
        import time

        return f"outputs/serve-{time.strftime('%Y%m%d-%H%M%S')}.json"


def _configure_logging() -> None:
    """The server's structured log: one JSON object per line on stderr (unless the embedding app set up logging)."""
    import logging

    log = logging.getLogger("genba.serve")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))  # the message is already a JSON object
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def build_server(cfg: ServeConfig) -> Any:
    """The PolicyServer a config describes (policy loaded, limits chosen), not yet listening."""
    from genba.policies.registry import policy_factory
    from genba.serving.app import PolicyServer
    from genba.serving.safety import robot_limits

    make_policy = policy_factory(
        cfg.policy,
        task=cfg.task,
        cameras=cfg.cameras,
        image_size=cfg.image_size,
        horizon=cfg.horizon,
    )
    limits = None if cfg.robot == "none" else robot_limits(cfg.robot).with_max_delta(cfg.max_delta_scale)
    return PolicyServer(
        make_policy,
        host=cfg.host,
        port=cfg.port,
        api_key=cfg.resolved_api_key() or None,
        limits=limits,
        max_message_bytes=int(cfg.max_message_mb * 2**20),
        max_connections=cfg.max_connections,
        per_connection=cfg.per_connection,
        max_batch=cfg.max_batch,
        batch_wait_ms=cfg.batch_wait_ms,
        idle_timeout_s=cfg.idle_timeout_s,
        evict_idle_s=cfg.evict_idle_s,
        max_inflight_bytes=int(cfg.max_inflight_mb * 2**20),
    )


def run_serve(cfg: ServeConfig) -> dict:
    """Serve until SIGINT or SIGTERM, then shut down gracefully and return the summary."""
    import asyncio
    import signal
    import threading

    _configure_logging()
    server = build_server(cfg)

    async def main() -> None:
        stop = asyncio.Event()
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        await server.serve(stop, announce=lambda line: print(line, file=sys.stderr, flush=True))

    asyncio.run(main())
    summary = server.summary()
    summary["config"] = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "api_key"}
    return summary
