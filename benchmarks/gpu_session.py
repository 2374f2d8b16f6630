"""One GPU lease's checks and figures (issues 15 and 10), in priority order, within a deadline.

    PYTHONPATH=. python3 benchmarks/gpu_session.py --out $OUT --deadline 480

Device time is short (about 15 minutes a session, machine start included), so one call does everything and writes
what it has after every stage to OUT/gpu_session.json (a killed run still returns its finished stages):
  1. env        the device, its multiprocessors and L2, torch and triton versions, clocks as nvidia-smi reads them;
  2. ceilings   a device-to-device copy (bytes read + written) and an 8192^3 bf16 matmul on random data, rotated
                buffers, medians of events: the measured ceilings the kernel's figures are read against;
  3. sweep      block/warp/stage configurations of each kernel at the target shape, the pointer kernels
                (triton_attention.py) and the descriptor (TMA) ones (triton_tma.py), launched directly (not through
                the autotuner) into NaN-poisoned outputs, each checked against the autotuned pointer kernel;
  4. target     `genba bench attention` at the issue's target shape (bf16, D=128, F=16, N=256, window none and 4),
                with the pointer kernels, then the descriptor ones;
  5. tests      `pytest -m gpu` on tests/kernels/test_gpu.py and tests/worldmodel/test_model_gpu.py;
  6. worldmodel `genba bench worldmodel preset=small device=cuda`: triton (descriptor kernels, the sm_90 default),
                triton with the pointer kernels, flex, then triton with the loss through torch.compile's inductor
                (last: its compilation outlasted 260 s of a call on 2026-12-01);
  7. grid       the rest of the issue's grid, shape by shape, until the deadline.
On a machine without CUDA, `--smoke` runs stages 1, 3 and 7 on tiny shapes under TRITON_INTERPRET=1 (a check of
this script, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
START = time.time()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "outputs/gpu_session"), help="results folder")
    parser.add_argument("--deadline", type=float, default=480.0, help="seconds after start to stop starting work")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU under TRITON_INTERPRET=1")
    parser.add_argument("--only", default="", help="comma-separated stages to run (default: all)")
    parser.add_argument("--grid-dims", default="128,64", help="head dims of the grid stage, in this order")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(START))}
    smoke = args.smoke
    stages = [
        ("env", lambda: env()),
        ("ceilings", lambda: None if smoke else ceilings()),
        ("sweep", lambda: sweep(smoke, args.deadline)),
        ("target", lambda: None if smoke else target()),
        ("tests", lambda: None if smoke else tests(out)),
        ("worldmodel", lambda: None if smoke else worldmodel(out, args.deadline)),
        ("grid", lambda: grid(smoke, args.deadline, [int(d) for d in args.grid_dims.split(",")])),
    ]
    only = set(filter(None, args.only.split(",")))
    for name, fn in stages:
        if only and name not in only:
            continue
        if time.time() - START > args.deadline:
            results[name] = {"skipped": "deadline"}
            continue
        t0 = time.time()
        print(f"== {name} (at {t0 - START:.0f} s)", flush=True)
        try:
            results[name] = fn()
        except Exception as exc:  # a stage's failure is a result; the later stages still run
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:3000], "trace": traceback.format_exc()[-3000:]}
        results[f"{name}_seconds"] = round(time.time() - t0, 1)
        (out / "gpu_session.json").write_text(json.dumps(results, indent=1, default=str))
        print(json.dumps({name: results[name]}, default=str)[:1500], flush=True)
    print(summary(results), flush=True)
    return 0


def env() -> dict:
    import triton

    info: dict = {"torch": torch.__version__, "triton": triton.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info |= {"device": p.name, "sms": p.multi_processor_count, "l2_mb": p.L2_cache_size / 2**20,
                 "memory_gb": round(p.total_memory / 1e9, 1), "capability": f"{p.major}.{p.minor}"}  # fmt: skip
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu",
             "--format=csv"], capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        info["nvidia_smi"] = smi.stdout.strip()
    return info


def _events_ms(fn, reps: int = 10, warmup: int = 3) -> float:
    """Median milliseconds of `fn` by CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def ceilings() -> dict:
    out = {"copy_tb_s": _copy_tb_s(), "matmul_bf16_tflops": _matmul_tflops()}
    torch.cuda.empty_cache()
    return out


def _copy_tb_s(n: int = 2**30) -> float:
    """Device-to-device copy of 2 GiB of bf16 (far past the 60 MB L2), bytes read + written per second, in TB/s."""
    src, dst = torch.randn(n, device="cuda", dtype=torch.bfloat16), torch.empty(n, device="cuda", dtype=torch.bfloat16)
    return round(2 * 2 * n / _events_ms(lambda: dst.copy_(src)) / 1e9, 2)


def _matmul_tflops(size: int = 8192) -> float:
    """bf16 size^3 products on random data, rotating over three pairs of matrices."""
    mats = [torch.randn(size, size, device="cuda", dtype=torch.bfloat16) for _ in range(6)]
    calls = iter(range(10**9))

    def matmul() -> None:
        i = next(calls) % 3
        torch.matmul(mats[2 * i], mats[2 * i + 1])

    return round(2 * size**3 / _events_ms(matmul, reps=20) / 1e9, 1)


def tests(out: Path) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-n", "8",
           "tests/kernels/test_gpu.py", "tests/worldmodel/test_model_gpu.py"]  # fmt: skip
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=200)
        log, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        log, rc = f"{exc.stdout or ''}{exc.stderr or ''}\nTIMEOUT after 200 s", "timeout"
    (out / "pytest.log").write_text(str(log))
    return {"rc": rc, "tail": str(log)[-1500:]}


def _bench(**kw) -> dict:
    from genba.kernels.bench import BenchAttentionConfig, run_bench_attention

    return run_bench_attention(BenchAttentionConfig(**kw))


def _tuner_choices() -> dict:
    from genba.kernels import triton_attention as ta
    from genba.kernels import triton_tma as tt

    pointer = {
        name: {str(key): str(cfg) for key, cfg in ta._TUNED[kernel].cache.items()} for kernel, name in ta._NAMES.items()
    }
    tma = {f"tma {name}": {str(key): str(cfg) for key, cfg in tuned.cache.items()} for name, tuned in tt._TUNED.items()}
    return pointer | tma


def _kernels(use_tma: bool | None) -> None:
    """Which Triton kernels st_attention takes: the descriptor (TMA) ones, the pointer ones, or by device."""
    from genba.kernels import triton_tma

    triton_tma.USE = use_tma


def target() -> dict:
    """The target shape through st_attention twice: with the pointer kernels, then the descriptor (TMA) ones."""
    res = {}
    for label in ("pointer", "tma"):
        summary = _bench(dims=[128], tokens=[256], frames=[16], windows=[0, 4], triton_kernels=label)
        res[label] = {"rows": summary["rows"], "targets": summary["targets"]}
    return res | {"tuned": _tuner_choices()}


def sweep(smoke: bool, deadline: float) -> dict:
    """Each kernel at the target shape, pointer tiles and descriptor (TMA) tiles, every configuration launched
    directly into NaN-poisoned outputs and checked against the autotuned pointer kernel's results."""
    import triton

    from genba.kernels import triton_attention as ta
    from genba.kernels import triton_tma as tt
    from genba.kernels.reference import attention_flops, useful_pairs

    if smoke:
        batch, heads, frames, n, d, dtype, dev = 1, 1, 3, 16, 32, torch.float32, "cpu"
    else:
        batch, heads, frames, n, d, dtype, dev = 8, 16, 16, 256, 128, torch.bfloat16, "cuda"
    length, scale = frames * n, d**-0.5
    q, k, v, do = (torch.randn(batch, heads, length, d, device=dev, dtype=dtype) for _ in range(4))
    want_out, lse = ta.forward(q, k, v, n, None, True, scale, (16, 16) if smoke else None)
    want = dict(zip(("dq", "dk", "dv"), ta.backward(do, q, k, v, want_out, lse, n, None, True, scale), strict=True))
    want |= {"out": want_out, "lse": lse}
    delta = ta.softmax_delta(want_out, do)
    flops_fwd, _ = attention_flops(useful_pairs(frames, n, None, True), batch, heads, d)
    consts = dict(HEAD_DIM=d, CAUSAL=True, WINDOW=False, PREC=ta._prec(dtype))
    scalars = (length, n, frames, 0)
    if smoke:
        tile = (16, 16, 4, 2)
        plans = {("pointer", "fwd"): [tile], ("tma", "fwd"): [(*tile, 0), (*tile, 1)], ("pointer", "dkdv"): [tile],
                 ("tma", "dq"): [tile], ("tma", "dkdv"): [tile]}  # fmt: skip
    else:
        plans = {("pointer", name): [c[:4] for c in cands if c[4] >= d] for name, cands in ta._CANDIDATES.items()}
        plans[("tma", "fwd")] = [(64, 64, 4, 3, 0), (64, 64, 4, 3, 1), (64, 64, 4, 4, 1), (128, 64, 8, 3, 0),
                                 (128, 64, 8, 3, 1), (128, 64, 8, 4, 1), (128, 128, 8, 3, 1), (128, 128, 8, 2, 0),
                                 (128, 32, 8, 3, 1), (64, 128, 4, 3, 1), (64, 128, 4, 2, 0)]  # fmt: skip
        plans[("tma", "dq")] = [(64, 64, 4, 3), (64, 64, 4, 2), (128, 64, 8, 3), (128, 32, 8, 3), (64, 32, 4, 3),
                                (128, 128, 8, 2), (64, 128, 4, 2)]  # fmt: skip
        plans[("tma", "dkdv")] = [(64, 64, 4, 2), (32, 64, 4, 3), (32, 128, 8, 3), (128, 64, 8, 2), (64, 64, 8, 3),
                                  (64, 64, 8, 2), (32, 64, 4, 2)]  # fmt: skip
    wanted = {"fwd": ("out", "lse"), "dq": ("dq",), "dkdv": ("dk", "dv")}
    rows, left_out = [], []
    for (impl, name), configs in plans.items():
        for config in configs:
            if time.time() - START > deadline:
                left_out.append((impl, name, config))
                continue
            outs = {w: torch.full_like(want[w], float("nan")) for w in wanted[name]}
            if impl == "tma":
                desc = {t: tt.descriptor(x) for t, x in (("q", q), ("k", k), ("v", v), ("do", do))}
                desc |= {w: tt.descriptor(x) for w, x in outs.items() if w != "lse"}
                if name == "fwd":
                    args = (desc["q"], desc["k"], desc["v"], desc["out"], outs["lse"], scale * math.log2(math.e))
                elif name == "dq":
                    args = (desc["q"], desc["k"], desc["v"], desc["do"], lse, delta, desc["dq"], scale,
                            scale * math.log2(math.e))  # fmt: skip
                else:
                    args = (desc["q"], desc["k"], desc["v"], desc["do"], lse, delta, desc["dk"], desc["dv"], scale,
                            scale * math.log2(math.e))  # fmt: skip
                rows_of = "BLOCK_N" if name == "dkdv" else "BLOCK_M"

                def launch(name=name, rows_of=rows_of, config=config, args=args):
                    tt.launch(name, rows_of, length, batch * heads, config, *args, *scalars, **consts)
            else:
                bm, bn, w, s = config
                kernel = {"fwd": ta._fwd_kernel, "dq": ta._bwd_dq_kernel, "dkdv": ta._bwd_dkdv_kernel}[name]
                grid = (triton.cdiv(length, bn if name == "dkdv" else bm), batch * heads)
                if name == "fwd":
                    args = (q, k, v, outs["out"], outs["lse"], scale * math.log2(math.e))
                elif name == "dq":
                    args = (q, k, v, do, lse, delta, outs["dq"], scale, scale * math.log2(math.e))
                else:
                    args = (q, k, v, do, lse, delta, outs["dk"], outs["dv"], scale, scale * math.log2(math.e))

                def launch(kernel=kernel, grid=grid, args=args, bm=bm, bn=bn, w=w, s=s):
                    kernel[grid](*args, *scalars, **consts, BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=s)

            row: dict = {"impl": impl, "kernel": name, "config": list(config)}
            try:
                launch()
                diffs = [(outs[w].float() - want[w].float()).abs().nan_to_num(math.inf) for w in wanted[name]]
                row["max_diff_vs_autotuned"] = max(float(x.max()) for x in diffs)
                if not smoke:
                    row["ms"] = round(triton.testing.do_bench(launch, warmup=10, rep=40, return_mode="median"), 4)
                    # executed matmul rate: fwd 2 products per tile, dq 3, dk/dv 4 (the backward recomputes QK^T)
                    row["tflops"] = round(flops_fwd * {"fwd": 1, "dq": 1.5, "dkdv": 2}[name] / row["ms"] / 1e9, 1)
            except Exception as exc:  # out of shared memory and the like: a configuration that does not run
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            rows.append(row)
    return {"shape": dict(B=batch, H=heads, F=frames, N=n, D=d, dtype=str(dtype)), "rows": rows, "not_run": left_out,
            "tuned": _tuner_choices() if not smoke else None}  # fmt: skip


def worldmodel(out: Path, deadline: float) -> dict:
    """In this process (the device's image has no hydra for the CLI); flex last, as it compiles."""
    from genba.worldmodel.bench import BenchWorldModelConfig, run_bench_worldmodel

    res = {}
    runs = (("triton", "", None), ("triton", "", False), ("flex", "", None), ("triton", "inductor", None))
    for backend, compile_backend, use_tma in runs:
        name = backend + ("-pointer" if use_tma is False else "") + (f"+{compile_backend}" if compile_backend else "")
        _kernels(use_tma)
        if time.time() - START > deadline:
            res[name] = {"skipped": "deadline"}
            continue
        cfg = BenchWorldModelConfig(
            preset="small", device="cuda", backend=backend, compile=compile_backend, warmup=3, repeats=10
        )
        try:
            res[name] = run_bench_worldmodel(cfg)
        except Exception as exc:  # one backend's failure (a compile error, say) leaves the others to run
            res[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        torch.cuda.empty_cache()
        (out / "wm.json").write_text(json.dumps(res, indent=1))  # after each: a killed run keeps the finished ones
        print(name, json.dumps(res[name])[:600], flush=True)
    _kernels(None)
    (out / "wm.json").write_text(json.dumps(res, indent=1))
    return res


def grid(smoke: bool, deadline: float, dims: list[int]) -> dict:
    """The issue's grid without the target shape, `dims` in order, shape by shape until the deadline."""
    from genba.kernels.bench import GPU_GRID

    if smoke:
        shapes = [(32, 16, 2, 0), (32, 16, 2, 2)]
        kw = dict(backends=["reference", "sdpa"], warmup=0, reps=1, device="cpu")
    else:
        shapes = [(d, n, f, w) for d in dims for n in (256, 64) for f in GPU_GRID["frames"] for w in (0, 4)]
        shapes = [s for s in shapes if s[:3] != (128, 256, 16)]  # the target stage's
        kw = {}
    rows, left_out = [], []
    for d, n, f, w in shapes:
        if time.time() - START > deadline:
            left_out.append((d, n, f, w))
            continue
        rows += _bench(dims=[d], tokens=[n], frames=[f], windows=[w], **kw)["rows"]
    return {"rows": rows, "not_run": left_out}


def summary(results: dict) -> str:
    lines = [f"total {time.time() - START:.0f} s"]
    for name in ("env", "ceilings", "tests"):
        lines.append(f"{name}: {json.dumps(results.get(name), default=str)[:400]}")
    from genba.kernels.bench import format_table

    tgt = results.get("target") or {}
    for label in ("pointer", "tma"):
        if (tgt.get(label) or {}).get("rows"):
            lines += [f"target, {label} kernels: {json.dumps(tgt[label]['targets'], default=str)}"]
            lines.append(format_table(tgt[label]["rows"]))
    rows = (results.get("grid") or {}).get("rows")
    if rows:
        lines.append(format_table(rows))
    best = {}
    for r in (results.get("sweep") or {}).get("rows", []):
        key = f"{r['impl']} {r['kernel']}"
        if "ms" in r and (key not in best or r["ms"] < best[key]["ms"]):
            best[key] = r
    lines.append(f"sweep best: {json.dumps(best)}")
    for backend, r in (results.get("worldmodel") or {}).items():
        keys = ("step_ms", "tokens_per_s", "mfu", "step_tflop", "error", "skipped")
        lines.append(f"wm {backend}: {json.dumps({k: r.get(k) for k in keys if k in r})}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
