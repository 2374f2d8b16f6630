"""`genba bench attention`: milliseconds and useful TFLOP/s of st_attention's backends, forward and forward+backward.

Useful FLOPs count only the unmasked (query, key) pairs (reference.useful_pairs): 4 * pairs * D per head forward,
2.5x that backward. `flash` is dense causal sdpa over the same L (its own causal triangle counted), the upper
reference the issue measures wall time against. The config module imports only the standard library (the CLI imports
it for --help); torch and the kernels are imported by `run_bench_attention`.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import statistics
import sys
import time
from dataclasses import dataclass, field

BENCH_BACKENDS = ("triton", "flex", "sdpa", "flash", "reference")
DTYPES = ("auto", "bf16", "fp16", "fp32")
# The issue's grid and targets (H100, bf16, D = 128, F = 16, N = 256, causal, no window).
GPU_GRID = {
    "backends": ["triton", "flex", "sdpa", "flash"],
    "frames": [8, 16, 32],
    "tokens": [64, 256],
    "dims": [64, 128],
}
CPU_GRID = {"backends": ["reference", "sdpa", "flex"], "frames": [4], "tokens": [16], "dims": [32]}
TARGETS = {"fwd_tflops": 550.0, "bwd_tflops": 350.0, "vs_flex": 1.3, "wall_vs_flash": 0.6}


@dataclass
class BenchAttentionConfig:
    backends: list[str] = field(
        default_factory=list,
        metadata={
            "help": f"of {', '.join(BENCH_BACKENDS)}; [] = triton,flex,sdpa,flash on CUDA, reference,sdpa,flex on CPU"
        },
    )
    frames: list[int] = field(default_factory=list, metadata={"help": "F values; [] = 8,16,32 on CUDA, 4 on CPU"})
    tokens: list[int] = field(default_factory=list, metadata={"help": "N values; [] = 64,256 on CUDA, 16 on CPU"})
    dims: list[int] = field(default_factory=list, metadata={"help": "head dims D (32, 64, 128); [] = 64,128 / 32"})
    windows: list[int] = field(default_factory=lambda: [0, 4], metadata={"help": "frame windows; 0 = no window"})
    causal: bool = field(default=True, metadata={"help": "frame-causal mask (False = full / two-sided window)"})
    dtype: str = field(default="auto", metadata={"help": "auto (bf16 on CUDA, fp32 on CPU), bf16, fp16, fp32"})
    tokens_per_batch: int = field(
        default=0, metadata={"help": "batch = max(1, this // L) as in FlashAttention's benchmark; 0 = 32768 / 1 on CPU"}
    )
    model_dim: int = field(default=0, metadata={"help": "heads = model_dim // D; 0 = 2048 on CUDA, 2 heads on CPU"})
    backward: bool = field(default=True, metadata={"help": "also time forward+backward"})
    warmup: int = field(default=3, metadata={"help": "untimed calls per measurement (compiles, autotunes)"})
    reps: int = field(default=10, metadata={"help": "timed calls per measurement (median reported)"})
    device: str = field(default="auto", metadata={"help": "auto (cuda if available), cuda, cpu"})
    triton_kernels: str = field(
        default="",
        metadata={"help": "auto (descriptor kernels from sm_90), tma, pointer; empty = $GENBA_TRITON_KERNELS"},
    )
    out: str = field(default="", metadata={"help": "summary JSON path; empty = outputs/bench-attention-<time>.json"})

    def __post_init__(self) -> None:
        bad = [b for b in self.backends if b not in BENCH_BACKENDS]
        if bad:
            raise ValueError(f"backends: unknown {bad} (valid: {', '.join(BENCH_BACKENDS)})")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} (valid: {', '.join(DTYPES)})")
        if self.device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device={self.device!r} (valid: auto, cuda, cpu)")
        if self.triton_kernels not in ("", "auto", "tma", "pointer"):
            raise ValueError(f"triton_kernels={self.triton_kernels!r} (valid: auto, tma, pointer)")
        if any(d not in (32, 64, 128) for d in self.dims):
            raise ValueError(f"dims={list(self.dims)}: head dims must be 32, 64 or 128")
        for name in ("frames", "tokens"):
            if any(x < 1 for x in getattr(self, name)):
                raise ValueError(f"{name}={list(getattr(self, name))}: values must be >= 1")
        if any(w < 0 for w in self.windows) or not self.windows:
            raise ValueError(f"windows={list(self.windows)}: values must be >= 0 (0 = no window), at least one")
        if self.reps < 1 or self.warmup < 0 or self.tokens_per_batch < 0 or self.model_dim < 0:
            raise ValueError("need reps >= 1, warmup >= 0, tokens_per_batch >= 0, model_dim >= 0")


def run_bench_attention(cfg: BenchAttentionConfig) -> dict:
    import torch
    from tqdm import tqdm

    from genba.errors import GenbaError

    device = _device(cfg.device)
    grid = GPU_GRID if device == "cuda" else CPU_GRID
    backends = list(cfg.backends) or grid["backends"]
    if "triton" in backends:
        _check_triton_timeable(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}.get(
        cfg.dtype, torch.bfloat16 if device == "cuda" else torch.float32
    )
    if device == "cuda" and "reference" in backends:
        raise GenbaError("backend 'reference' materializes (B, H, L, L) fp32 scores; leave it out on CUDA")
    configs = [
        (d, n, f, w)
        for d in (cfg.dims or grid["dims"])
        for n in (cfg.tokens or grid["tokens"])
        for f in (cfg.frames or grid["frames"])
        for w in cfg.windows
    ]
    # Compiled flex recompiles per shape and grad mode. At dynamo's limit (8 by default, per process, so a grid run
    # shape by shape reaches it too) it would silently run eager, 10-100x slower (seen on an H200, 2026-11-30): raise
    # the limit while benchmarking and make reaching it an error instead. The backward is timed alone on one
    # retained graph, which compiled flex's donated buffers would refuse. Both only inside this call.
    limit = max(torch._dynamo.config.recompile_limit, 1024)
    rows = []
    with (
        torch._dynamo.config.patch(recompile_limit=limit, fail_on_recompile_limit_hit=True),
        torch._functorch.config.patch(donated_buffer=False),
        _triton_kernels(cfg.triton_kernels, device if "triton" in backends else None) as kernels,
    ):
        for d, n, f, w in tqdm(configs, desc="bench attention", file=sys.stderr):
            for backend in backends:
                rows.append(_measure(cfg, backend, d, n, f, w or None, dtype, device))
    summary = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "triton": _triton_version(),
        "triton_kernels": kernels,
        "dtype": str(dtype).removeprefix("torch."),
        "causal": cfg.causal,
        "rows": rows,
        "targets": _targets(rows),
    }
    print(format_table(rows), file=sys.stderr)
    return summary


def _device(name: str) -> str:
    import torch

    from genba.errors import GenbaError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise GenbaError("device=cuda but no CUDA device is available (valid here: auto, cpu)")
    return name


def _check_triton_timeable(device: str) -> None:
    from genba.errors import GenbaError

    if device != "cuda":
        raise GenbaError(
            "backend 'triton' is benchmarked only on CUDA (the CPU interpreter's timings mean nothing); "
            "on CPU use backends=[reference,sdpa,flex]"
        )
    from genba.kernels import triton_attention

    if triton_attention.INTERPRET:
        raise GenbaError("TRITON_INTERPRET=1 is set: unset it to benchmark the compiled kernel")


def _measure(cfg: BenchAttentionConfig, backend: str, d: int, n: int, f: int, w: int | None, dtype, device) -> dict:
    import torch

    from genba.kernels.reference import attention_flops, useful_pairs

    length = f * n
    per_batch = cfg.tokens_per_batch or (32768 if device == "cuda" else 1)
    batch = max(1, per_batch // length)
    heads = max(1, cfg.model_dim // d) if cfg.model_dim else (2048 // d if device == "cuda" else 2)
    row = {"backend": backend, "F": f, "N": n, "D": d, "window": w, "L": length, "B": batch, "H": heads}
    if backend == "flash":
        pairs = length * (length + 1) // 2 if cfg.causal else length * length
    else:
        pairs = useful_pairs(f, n, w, cfg.causal)
    flops_fwd, flops_bwd = attention_flops(pairs, batch, heads, d)
    row["useful_pairs"] = pairs
    try:
        q, k, v = (torch.randn(batch, heads, length, d, device=device, dtype=dtype) for _ in range(3))
        fn = _attention_fn(backend, n, w, cfg.causal)
        row["max_err_vs_reference"] = _error(fn, q, k, v, n, w, cfg.causal) if backend != "flash" else None
        with torch.no_grad():
            row["ms_fwd"] = _time(lambda: fn(q, k, v), cfg, device)
        row["tflops_fwd"] = _sig(flops_fwd / row["ms_fwd"] / 1e9)
        if cfg.backward and not (backend == "flex" and device == "cpu"):  # flex has no CPU backward
            q, k, v = (t.requires_grad_() for t in (q, k, v))
            do = torch.randn_like(q)
            row["ms_fwd_bwd"] = _time(lambda: torch.autograd.backward(fn(q, k, v), do), cfg, device)
            out = fn(q, k, v)  # the backward alone, timed on one retained graph (not fwd+bwd minus fwd: noisy)
            row["ms_bwd"] = _time(lambda: torch.autograd.grad(out, (q, k, v), do, retain_graph=True), cfg, device)
            row["tflops_bwd"] = _sig(flops_bwd / row["ms_bwd"] / 1e9)
            row["tflops_fwd_bwd"] = _sig((flops_fwd + flops_bwd) / row["ms_fwd_bwd"] / 1e9)
    except torch.OutOfMemoryError:
        row["error"] = "out of memory"
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()
    return row


def _attention_fn(backend: str, n: int, w: int | None, causal: bool):
    import torch

    from genba.kernels import st_attention

    if backend == "flash":
        return lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return lambda q, k, v: st_attention(q, k, v, tokens_per_frame=n, frame_window=w, causal=causal, backend=backend)


def _error(fn, q, k, v, n: int, w: int | None, causal: bool) -> float:
    """Max abs error against the fp32 reference on one (batch, head) slice: a benchmark of a wrong kernel is void."""
    import torch

    from genba.kernels import reference_attention

    q1, k1, v1 = (t[:1, :1] for t in (q, k, v))
    with torch.no_grad():
        ref = reference_attention(q1, k1, v1, tokens_per_frame=n, frame_window=w, causal=causal)
        return float((fn(q1, k1, v1).float() - ref.float()).abs().max())


def _time(fn, cfg: BenchAttentionConfig, device: str) -> float:
    """Median milliseconds per call. On CUDA the timed calls are queued back to back, each between its own pair of
    events, and synchronized once: as in training, the host's per-call work (dispatch, the autotuner's lookup)
    overlaps the previous call on the device instead of being timed as idle device time. (Until 2026-11-30 each call
    was synchronized alone, which added about 0.15 ms per call to the triton rows; the H200 table in
    benchmarks/README.md was taken that way.) Wall clock per call on the CPU."""
    import torch

    for _ in range(cfg.warmup):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(cfg.reps)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return round(statistics.median(start.elapsed_time(end) for start, end in events), 4)
    times = []
    for _ in range(cfg.reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 4)


def _targets(rows: list[dict]) -> dict:
    """The issue's targets at D = 128, F = 16, N = 256, no window, where those rows were measured."""

    def pick(backend: str) -> dict | None:
        for r in rows:
            if (r["backend"], r["D"], r["F"], r["N"], r["window"]) == (backend, 128, 16, 256, None) and "ms_fwd" in r:
                return r
        return None

    tri, flex, flash = pick("triton"), pick("flex"), pick("flash")
    if tri is None:
        return {"measured": False, "why": "no triton row at D=128, F=16, N=256, window=None"}
    out: dict = {
        "measured": True,
        "wanted": TARGETS,
        "fwd_tflops": tri["tflops_fwd"],
        "bwd_tflops": tri.get("tflops_bwd"),
    }
    if flex and "ms_fwd" in flex:
        out["vs_flex_fwd"] = round(flex["ms_fwd"] / tri["ms_fwd"], 3)
        if "ms_bwd" in flex and "ms_bwd" in tri:
            out["vs_flex_bwd"] = round(flex["ms_bwd"] / tri["ms_bwd"], 3)
    if flash and "ms_fwd" in flash:
        out["wall_vs_flash_fwd"] = round(tri["ms_fwd"] / flash["ms_fwd"], 3)
        if "ms_fwd_bwd" in flash and "ms_fwd_bwd" in tri:
            out["wall_vs_flash_fwd_bwd"] = round(tri["ms_fwd_bwd"] / flash["ms_fwd_bwd"], 3)
    return out


def format_table(rows: list[dict]) -> str:
    """The summary's rows as a fixed-width table (stderr, and pasteable into benchmarks/README.md)."""
    cols = [("ms_fwd", "ms fwd"), ("tflops_fwd", "TF/s fwd"), ("ms_bwd", "ms bwd"), ("tflops_bwd", "TF/s bwd")]
    cols.append(("ms_fwd_bwd", "ms f+b"))
    head = f"{'backend':<10}{'D':>5}{'N':>6}{'F':>5}{'W':>5}" + "".join(f"{title:>10}" for _, title in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = f"{r['error']:>50}" if "error" in r else "".join(f"{_fmt(r.get(key)):>10}" for key, _ in cols)
        window = "-" if r["window"] is None else r["window"]
        lines.append(f"{r['backend']:<10}{r['D']:>5}{r['N']:>6}{r['F']:>5}{window:>5}{cells}")
    return "\n".join(lines)


def _sig(x: float) -> float:
    return float(f"{x:.4g}")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


@contextlib.contextmanager
def _triton_kernels(name: str, device: str | None):  # -> Iterator[str | None]
    """Inside: st_attention's Triton backend takes the family `name` (empty: as configured). Yields the family that
    `device` gets, tma or pointer; None when Triton is not timed (device None)."""
    if device is None:
        yield None
        return
    import torch

    from genba.kernels import triton_tma

    before = triton_tma.USE
    if name:
        triton_tma.USE = triton_tma.family(name)
    try:
        yield "tma" if triton_tma.enabled(torch.device(device)) else "pointer"
    finally:
        triton_tma.USE = before


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__
