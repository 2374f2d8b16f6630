"""Drives a genba server with the unmodified openpi-client package; runs INSIDE .venv-openpi-client (numpy<2).

Usage: python openpi_driver.py '<json command>'; prints one JSON result line. Only openpi_client, numpy and the
standard library are imported here. genba's tests import only `make_obs` (to rebuild what it sent); openpi_client
is imported when a command runs.
"""

import json
import sys
import threading
import time

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64, "uint8": np.uint8, "int64": np.int64}


def make_obs(spec, rng):
    """A valid observation built only from the metadata's input spec, as any client could."""
    obs = {}
    for key, feat in spec.items():
        if feat.get("sample_rate"):  # a spoken instruction: half a second of a 200 Hz hum, with its rate
            rate = feat["sample_rate"]
            obs[key] = (0.1 * np.sin(2 * np.pi * 200 * np.arange(rate // 2) / rate)).astype(np.float32)
            obs["observation.audio_sample_rate"] = rate
        elif feat["dtype"] == "str":
            obs[key] = "pick up the red cube"
        elif feat["dtype"] == "uint8":
            obs[key] = rng.integers(0, 256, size=feat["shape"], dtype=np.uint8)
        else:
            obs[key] = rng.uniform(-0.5, 0.5, size=feat["shape"]).astype(DTYPES[feat["dtype"]])
    return obs


def connect(cmd):
    from openpi_client import websocket_client_policy  # here, so that tests can import make_obs without it

    return websocket_client_policy.WebsocketClientPolicy(host=cmd["host"], port=cmd["port"], api_key=cmd.get("api_key"))


def roundtrip(cmd):
    client = connect(cmd)
    meta = client.get_server_metadata()
    rng = np.random.default_rng(cmd.get("seed", 0))
    sent, got = [], []
    for _ in range(cmd.get("n", 3)):
        obs = make_obs(meta["input_spec"], rng)
        if cmd.get("prompt_alias") and "task" in obs:
            obs["prompt"] = obs.pop("task")
        out = client.infer(obs)
        sent.append({k: v.tolist() for k, v in obs.items() if isinstance(v, np.ndarray) and v.ndim == 1})
        got.append(
            {
                "actions": out["actions"].tolist(),
                "dtype": str(out["actions"].dtype),
                "server_timing": out["server_timing"],
            }
        )
    return {"metadata": meta, "sent": sent, "got": got}


def auth(cmd):
    try:
        client = connect(cmd)
    except Exception as e:  # websockets' InvalidStatus carries the HTTP status
        status = getattr(getattr(e, "response", None), "status_code", None)
        return {"connected": False, "status": status, "error": type(e).__name__}
    meta = client.get_server_metadata()
    out = client.infer(make_obs(meta["input_spec"], np.random.default_rng(0)))
    return {"connected": True, "shape": list(out["actions"].shape)}


def refusals(client, cases):
    """name -> the server's error text for each observation (None where it was answered)."""
    errors = {}
    for name, obs in cases.items():
        try:
            client.infer(obs)
            errors[name] = None
        except RuntimeError as e:
            errors[name] = str(e)
    return errors


def bad(cmd):
    """Invalid observations through the openpi client: each must raise RuntimeError with a short message, and the
    same connection must still serve a valid request afterwards."""
    client = connect(cmd)
    meta = client.get_server_metadata()
    rng = np.random.default_rng(1)
    good = make_obs(meta["input_spec"], rng)
    state = "observation.state"
    cases = {
        "nan": {**good, state: np.full_like(good[state], np.nan)},
        "wrong_shape": {**good, state: np.zeros(7, np.float32)},
        "wrong_dtype": {**good, state: np.zeros(good[state].shape, np.int64)},
        "missing": {k: v for k, v in good.items() if k != state},
        "unknown": {**good, "observation.secret": np.zeros(3, np.float32)},
        "not_array": {**good, state: "zeros"},
    }
    errors = refusals(client, cases)
    out = client.infer(good)
    return {"errors": errors, "after": list(out["actions"].shape)}


def audio(cmd):
    """Spoken instructions through the openpi client: audio alone, with the text, text alone; then each bad waveform
    must raise RuntimeError with one short line, and the connection must still serve afterwards."""
    client = connect(cmd)
    meta = client.get_server_metadata()
    rate = meta["input_spec"]["observation.audio"]["sample_rate"]
    good = make_obs(meta["input_spec"], np.random.default_rng(2))
    speech = {k: good[k] for k in ("observation.audio", "observation.audio_sample_rate")}
    text = {"task": "pick up the red cube"}
    state = {"observation.state": good["observation.state"]}
    answers = {}
    for name, obs in {
        "audio": {**state, **speech},
        "both": {**state, **speech, **text},
        "text": {**state, **text},
    }.items():
        answers[name] = client.infer(obs)["actions"][0].tolist()
    wave = speech["observation.audio"]
    cases = {
        "empty": {**state, **speech, "observation.audio": np.zeros(0, np.float32)},
        "wrong_rate": {**state, **speech, "observation.audio_sample_rate": 44100},
        "nan": {
            **state,
            **speech,
            "observation.audio": np.where(np.arange(wave.size) == 7, np.nan, wave).astype(np.float32),
        },
        "no_rate": {**state, "observation.audio": wave},
        "two_channels": {**state, **speech, "observation.audio": np.stack([wave, wave])},
        "neither": state,
    }
    errors = refusals(client, cases)
    after = client.infer({**state, **speech})["actions"][0].tolist()
    return {
        "metadata": meta,
        "rate": rate,
        "answers": answers,
        "errors": errors,
        "after": after,
        "seconds": wave.size / rate,
    }


def load(cmd):
    """`clients` threads, each its own openpi client, `n` requests each; counts errors and round-trip times."""
    results = [None] * cmd["clients"]

    def worker(i):
        rng = np.random.default_rng(i)
        try:
            client = connect(cmd)
            obs = make_obs(client.get_server_metadata()["input_spec"], rng)
            rtt, errors, batch = [], 0, []
            for _ in range(cmd["n"]):
                t = time.perf_counter()
                try:
                    out = client.infer(obs)
                    batch.append(out["server_timing"]["batch_size"])
                except RuntimeError:
                    errors += 1
                rtt.append((time.perf_counter() - t) * 1000.0)
            results[i] = {"errors": errors, "rtt_ms": rtt, "batch": batch}
        except Exception as e:
            results[i] = {"errors": cmd["n"], "fatal": repr(e), "rtt_ms": [], "batch": []}

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(cmd["clients"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rtt = np.concatenate([np.asarray(r["rtt_ms"], dtype=np.float64) for r in results])
    return {
        "requests": int(rtt.size),
        "errors": sum(r["errors"] for r in results),
        "fatal": [r.get("fatal") for r in results if r.get("fatal")],
        "p50_ms": float(np.percentile(rtt, 50)) if rtt.size else None,
        "p99_ms": float(np.percentile(rtt, 99)) if rtt.size else None,
        "max_batch": max((max(r["batch"]) for r in results if r["batch"]), default=0),
    }


if __name__ == "__main__":
    command = json.loads(sys.argv[1])
    print(
        json.dumps(
            {"roundtrip": roundtrip, "auth": auth, "bad": bad, "audio": audio, "load": load}[command["mode"]](command)
        )
    )
