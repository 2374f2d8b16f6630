"""`genba bench serve`: round-trip latency of the policy server on loopback and its overhead over the policy.

The server runs as its own process (`genba serve policy=linear`, the real command), so the clients here do not share
its interpreter lock; each client is a thread with its own websocket connection sending two images plus the state.
Per request: round trip as the client sees it, the policy's own compute (`server_timing.infer_ms`), and the server's
overhead (`server_timing.total_ms - infer_ms`: decoding, validation, queueing, batching, clipping), of which
`queue_ms` is the wait for the policy thread while it runs another batch (contention, not per-request work).
`rtt_minus_policy_ms_*` is the whole cost a client sees beyond the policy: the server's overhead plus the websocket
framing, the loopback and the client's own encoding and decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BenchServeConfig:
    clients: list[int] = field(default_factory=lambda: [1, 8], metadata={"help": "concurrent clients per run"})
    requests: int = field(default=300, metadata={"help": "timed requests per client"})
    warmup: int = field(default=30, metadata={"help": "untimed requests per client first"})
    cameras: list[str] = field(default_factory=lambda: ["front", "wrist"], metadata={"help": "image inputs"})
    image_size: int = field(default=224, metadata={"help": "image side (pixels)"})
    horizon: int = field(default=10, metadata={"help": "action chunk length"})
    batch_wait_ms: float = field(default=2.0, metadata={"help": "server's batching wait"})
    out: str = field(default="outputs/bench-serve.json", metadata={"help": "summary JSON path"})

    def __post_init__(self) -> None:
        if not self.clients or any(int(c) < 1 for c in self.clients):
            raise ValueError(f"clients={self.clients} must be a non-empty list of counts >= 1")
        self.clients = [int(c) for c in self.clients]
        for name in ("requests", "image_size", "horizon"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.warmup < 0:
            raise ValueError(f"warmup={self.warmup} must be >= 0")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms={self.batch_wait_ms} must be >= 0")


def run_bench_serve(cfg: BenchServeConfig) -> dict:
    import os
    import platform
    import re
    import signal
    import subprocess
    import sys
    import threading
    import time

    import numpy as np
    from tqdm import tqdm
    from websockets.sync.client import connect

    from genba import keys
    from genba.errors import GenbaError
    from genba.serving.protocol import packb, unpackb

    cams = "[" + ",".join(cfg.cameras) + "]"
    cmd = [sys.executable, "-m", "genba", "serve", "policy=linear", "port=0", f"cameras={cams}",
           f"image_size={cfg.image_size}", f"horizon={cfg.horizon}", f"batch_wait_ms={cfg.batch_wait_ms}",
           f"out={cfg.out}.server.json"]  # fmt: skip
    env = {**os.environ, "GENBA_API_KEY": ""}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = last = ""
        while "listening on" not in line:
            line = proc.stderr.readline()
            if not line:  # its own one-line error is the last thing it printed
                raise GenbaError(f"the server did not start ({last.strip() or 'no output'}): {' '.join(cmd)}")
            last = line
        url = re.search(r"ws://\S+", line).group(0)
        # Keep draining the server's log so its pipe never fills.
        threading.Thread(target=proc.stderr.read, daemon=True).start()

        rng = np.random.default_rng(0)
        obs = {keys.OBS_STATE: rng.uniform(-0.5, 0.5, 6).astype(np.float32), keys.TASK: "pick up the red cube"}
        for cam in cfg.cameras:
            obs[keys.image_key(cam)] = rng.integers(0, 256, (cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
        message = packb(obs)

        runs = []
        for n_clients in cfg.clients:
            rows: list[list[tuple]] = [[] for _ in range(n_clients)]
            errors: list[str] = []
            bar = tqdm(total=n_clients * (cfg.requests + cfg.warmup), desc=f"{n_clients} client(s)", leave=False)
            start = threading.Barrier(n_clients)

            def client(i: int, rows=rows, errors=errors, bar=bar, start=start) -> None:
                try:
                    with connect(url, compression=None, max_size=None) as ws:
                        unpackb(ws.recv())
                        start.wait()
                        for k in range(cfg.warmup + cfg.requests):
                            t0 = time.perf_counter()
                            ws.send(message)
                            reply = ws.recv()
                            rtt = (time.perf_counter() - t0) * 1000.0
                            if isinstance(reply, str):
                                raise RuntimeError(reply)
                            timing = unpackb(reply)["server_timing"]
                            if k >= cfg.warmup:
                                over = timing["total_ms"] - timing["infer_ms"]
                                rows[i].append(
                                    (
                                        rtt,
                                        timing["infer_ms"],
                                        over,
                                        timing["batch_size"],
                                        timing["queue_ms"],
                                        timing["batch_wait_ms"],
                                        timing["decode_ms"],
                                    )
                                )
                            bar.update()
                except Exception as e:  # reported in the summary, not swallowed
                    errors.append(repr(e))

            threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
            t_start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t_start
            bar.close()
            if errors:
                raise GenbaError(f"bench serve: {len(errors)} client(s) failed: {errors[0]}")
            a = np.array([r for per in rows for r in per], dtype=np.float64)  # (N, 7)
            a = np.column_stack([a, a[:, 0] - a[:, 1]])  # (N, 8): + round trip minus the policy's compute

            def p(col: int, q: float, a=a) -> float:
                return round(float(np.percentile(a[:, col], q)), 3)

            runs.append({
                "clients": n_clients,
                "requests": len(a),
                "rtt_ms_p50": p(0, 50), "rtt_ms_p99": p(0, 99),
                "policy_ms_p50": p(1, 50), "policy_ms_p99": p(1, 99),
                "overhead_ms_p50": p(2, 50), "overhead_ms_p99": p(2, 99),
                "rtt_minus_policy_ms_p50": p(7, 50), "rtt_minus_policy_ms_p99": p(7, 99),
                "of_which_queue_ms_p50": p(4, 50), "of_which_queue_ms_p99": p(4, 99),
                "of_which_batch_wait_ms_p50": p(5, 50), "of_which_batch_wait_ms_p99": p(5, 99),
                "of_which_decode_ms_p50": p(6, 50), "of_which_decode_ms_p99": p(6, 99),
                "mean_batch": round(float(a[:, 3].mean()), 2),
                "requests_per_s": round(len(a) / wall, 1),
            })  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()

    return {
        "runs": runs,
        "message_bytes": len(message),
        "observation": f"{len(cfg.cameras)} x {cfg.image_size}x{cfg.image_size}x3 uint8 + state (6,) + task",
        "target": "overhead p50 <= 3 ms, p99 <= 10 ms",
        "overhead_ok": all(r["overhead_ms_p50"] <= 3 and r["overhead_ms_p99"] <= 10 for r in runs),
        "device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
    }
