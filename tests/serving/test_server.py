"""The server against the unmodified openpi-client: round trip, health, auth, errors, load, fuzzing, limits."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_harness import genba_serve, openpi, start
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from genba import keys
from genba.policies.simple import LinearPolicy
from genba.serving.app import PolicyServer, ServerThread
from genba.serving.protocol import packb, unpackb
from genba.serving.robots import so101_units
from genba.serving.safety import robot_limits
from genba.serving.server import ServeConfig


def _cmd(server: ServerThread, mode: str, **extra) -> dict:
    return {"mode": mode, "host": "127.0.0.1", "port": server.port, **extra}


def test_openpi_client_round_trip(linear_server):
    result = openpi(_cmd(linear_server, "roundtrip", n=3))
    meta = result["metadata"]
    assert meta["protocol"] == "openpi-websocket-msgpack" and meta["policy"] == "linear"
    assert meta["input_spec"][keys.OBS_STATE] == {
        "dtype": "float32",
        "shape": [6],
        "required": True,
        "description": "joint positions",
    }
    assert meta["action_spec"]["shape"] == [4, 6] and meta["action_spec"]["names"] == list(keys.JOINTS)
    reference, limits = LinearPolicy(horizon=4), robot_limits("genba_arm")
    for sent, got in zip(result["sent"], result["got"], strict=True):
        state = np.asarray(sent[keys.OBS_STATE], np.float32)
        expected = limits.clip(reference.infer({keys.OBS_STATE: state})[keys.ACTIONS], state)
        assert got["dtype"] == "float32"
        np.testing.assert_allclose(got["actions"], expected, rtol=1e-6, atol=1e-7)
        timing = got["server_timing"]
        assert {"infer_ms", "queue_ms", "decode_ms", "total_ms", "batch_size"} <= timing.keys()
        assert 0 <= timing["infer_ms"] <= timing["total_ms"]
    assert "prev_total_ms" in result["got"][1]["server_timing"]  # openpi's own timing key


def test_prompt_alias_and_images_through_openpi_client():
    with start("linear", cameras=["front", "wrist"], image_size=32, horizon=2) as server:
        result = openpi(_cmd(server, "roundtrip", n=2, prompt_alias=True))
    assert result["metadata"]["input_spec"][keys.image_key("wrist")]["shape"] == [32, 32, 3]
    assert np.asarray(result["got"][0]["actions"]).shape == (2, 6)


def test_healthz(linear_server):
    with urllib.request.urlopen(f"http://127.0.0.1:{linear_server.port}/healthz", timeout=10) as response:
        assert response.status == 200 and response.read() == b"OK\n"


def test_api_key_accepted_and_refused():
    with start("linear", horizon=2, api_key="s3cret-key") as server:
        assert openpi(_cmd(server, "auth", api_key="s3cret-key")) == {"connected": True, "shape": [2, 6]}
        for key in ("wrong", None, "s3cret-key-and-more"):
            result = openpi(_cmd(server, "auth", api_key=key))
            assert result["connected"] is False and result["status"] == 401, (key, result)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as response:
            assert response.status == 200  # health needs no key and reveals nothing
        summary = server.stop()
    assert summary["refused"] == 3 and summary["requests"] == 1


def test_bad_observations_get_one_line_errors_and_the_connection_stays_usable(linear_server):
    result = openpi(_cmd(linear_server, "bad"))
    expected = {
        "nan": "non-finite",
        "wrong_shape": "shape [7], expected [6]",
        "wrong_dtype": "dtype int64",
        "missing": "missing key 'observation.state'",
        "unknown": "unknown key 'observation.secret'",
        "not_array": "must be a float32 array",
    }
    for case, fragment in expected.items():
        message = result["errors"][case]
        assert message is not None and fragment in message, (case, message)
        reply = message.split("\n", 1)[1]  # openpi prefixes "Error in inference server:\n"
        assert "\n" not in reply and len(reply) < 300 and "Traceback" not in reply
    assert result["after"] == [4, 6]


def test_eight_clients_500_requests_each_without_errors():
    with start("linear", horizon=10) as server:
        result = openpi(_cmd(server, "load", clients=8, n=500), timeout=300)
        summary = server.stop()
    assert result["fatal"] == [] and result["errors"] == 0 and result["requests"] == 4000
    assert summary["requests"] == 4000 and summary["errors"] == 0
    assert result["max_batch"] >= 2  # concurrent requests were batched
    assert summary["batches"] < 4000


def test_unsafe_policy_output_is_refused_not_sent():
    server = start("linear", horizon=2)
    server.server.policy.bias[:] = np.nan
    with server, connect(server.url) as ws:
        unpackb(ws.recv())
        ws.send(packb({keys.OBS_STATE: np.zeros(6, np.float32)}))
        reply = ws.recv()
    assert isinstance(reply, str) and "non-finite actions; no actions sent" in reply


# ---- fuzzing: every message gets an answer, the server stays up ----


def _full(dtype: str, shape: tuple, fill: float) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return np.full(shape, fill).astype(dtype)


_arrays = st.builds(
    _full,
    st.sampled_from(["float32", "float64", "uint8", "int64", "bool", "float16"]),
    st.lists(st.integers(0, 7), max_size=3).map(tuple),
    st.sampled_from([0.0, 1.0, np.nan, np.inf, -1e30, 255]),
)
_values = st.one_of(
    _arrays,
    st.text(max_size=20),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.none(),
    st.booleans(),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4),
    st.binary(max_size=16),
)
_keys = st.one_of(st.sampled_from([keys.OBS_STATE, keys.TASK, "prompt", "reset", keys.image_key("front")]), st.text())
_observations = st.dictionaries(_keys, _values, max_size=5)
_raw_arrays = st.fixed_dictionaries(
    {
        b"__ndarray__": st.booleans(),
        b"data": st.binary(max_size=64),
        b"dtype": st.one_of(st.sampled_from(["<f4", "|O", "<c8", "|V4", "<f8", ">i4", "float32"]), st.text()),
        b"shape": st.one_of(st.lists(st.integers(-3, 2**40), max_size=4), st.text(), st.none()),
    }
).map(lambda d: msgpack.packb({keys.OBS_STATE: d}))
_scalars = st.none() | st.integers(-(2**63), 2**64 - 1) | st.text()
_messages = st.one_of(
    st.binary(max_size=256),
    _observations.map(lambda o: packb(o)),
    _raw_arrays,
    st.builds(lambda n: packb({keys.OBS_STATE: np.zeros(n, np.float32)}), st.integers(0, 200_000)),  # huge arrays
    st.text(max_size=64),  # text frames
    st.recursive(_scalars, lambda c: st.lists(c) | st.dictionaries(st.text(), c)).map(msgpack.packb),
)


@pytest.fixture(scope="module")
def fuzz_connection(linear_server):
    with connect(linear_server.url, max_size=None) as ws:
        unpackb(ws.recv())
        yield ws


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=_messages)
def test_fuzz_every_message_is_answered(fuzz_connection, message):
    fuzz_connection.send(message)
    reply = fuzz_connection.recv(timeout=10)
    if isinstance(reply, str):
        assert "\n" not in reply and len(reply) < 300 and "Traceback" not in reply
        assert reply.startswith(("bad request: ", "policy error: "))
    else:  # only a valid observation may get actions
        out = unpackb(reply)
        assert out[keys.ACTIONS].shape == (4, 6) and np.isfinite(out[keys.ACTIONS]).all()


def test_server_is_healthy_after_fuzzing(linear_server, fuzz_connection):
    fuzz_connection.send(packb({keys.OBS_STATE: np.zeros(6, np.float32)}))
    assert unpackb(fuzz_connection.recv(timeout=10))[keys.ACTIONS].shape == (4, 6)
    assert openpi(_cmd(linear_server, "auth"))["connected"] is True


def test_oversized_message_closes_that_connection_only():
    with start("linear", horizon=2, max_message_bytes=64 * 1024) as server:
        with connect(server.url, max_size=None) as ws:
            unpackb(ws.recv())
            ws.send(packb({keys.OBS_STATE: np.zeros(100_000, np.float32)}))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
        assert openpi(_cmd(server, "auth"))["connected"] is True


def test_connection_cap_answers_503():
    with start("linear", horizon=2, max_connections=1) as server, connect(server.url) as first:
        unpackb(first.recv())
        assert openpi(_cmd(server, "auth"))["status"] == 503


# ---- configuration and the command ----


def test_non_loopback_host_needs_a_key(monkeypatch):
    monkeypatch.delenv("GENBA_API_KEY", raising=False)
    with pytest.raises(ValueError, match=r"host=0\.0\.0\.0 is reachable from other machines"):
        ServeConfig(host="0.0.0.0")
    assert ServeConfig(host="0.0.0.0", api_key="k").api_key == "k"
    assert ServeConfig(host="0.0.0.0", allow_insecure=True).host == "0.0.0.0"
    assert ServeConfig(host="::1").host == "::1"
    monkeypatch.setenv("GENBA_API_KEY", "from-env")
    cfg = ServeConfig(host="0.0.0.0")
    assert cfg.resolved_api_key() == "from-env" and cfg.api_key == ""  # never copied where --help could print it


def test_unknown_policy_names_the_valid_ones():
    from genba.cli import main

    assert main(["serve", "policy=runs/vla"]) == 2


def test_genba_serve_command_starts_serves_and_stops_gracefully(tmp_path):
    out = tmp_path / "serve.json"
    with genba_serve("policy=linear", "horizon=3", f"out={out}") as served:
        line = served.line
        assert "policy=linear" in line and "observation.state float32[6]" in line and "auth=off" in line
        result = openpi({"mode": "roundtrip", "host": "127.0.0.1", "port": served.port, "n": 2})
        assert np.asarray(result["got"][0]["actions"]).shape == (3, 6)
    port, stdout, stderr = served.port, served.stdout, served.stderr
    assert served.returncode == 0, stderr
    assert stdout.strip().splitlines()[-1] == str(out)
    summary = json.loads(out.read_text())
    assert summary["requests"] == 2 and summary["policy"] == "linear" and "api_key" not in summary["config"]
    assert '"event": "stopped"' in stderr or "stopped" in stderr
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_shutdown_closes_open_connections_with_going_away():
    server = start("linear", horizon=2)
    with connect(server.url) as ws:
        unpackb(ws.recv())
        ws.send(packb({keys.OBS_STATE: np.zeros(6, np.float32)}))
        assert unpackb(ws.recv())[keys.ACTIONS].shape == (2, 6)
        summary = server.stop(timeout=30)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001  # going away
    assert summary["requests"] == 1 and not server._thread.is_alive()


def test_bench_serve_command(tmp_path):
    from genba.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "serve", "clients=[1,3]", "requests=20", "warmup=2", "image_size=32", f"out={out}"]) == 0
    summary = json.loads(out.read_text())
    assert [r["clients"] for r in summary["runs"]] == [1, 3]
    for run in summary["runs"]:
        assert run["requests"] == 20 * run["clients"]
        assert run["policy_ms_p50"] > 0 and 0 < run["overhead_ms_p50"] <= run["overhead_ms_p99"]
        assert run["rtt_ms_p50"] >= run["policy_ms_p50"]
        assert run["overhead_ms_p50"] <= run["rtt_minus_policy_ms_p50"] <= run["rtt_ms_p50"]
    assert summary["message_bytes"] > 2 * 32 * 32 * 3 and isinstance(summary["overhead_ok"], bool)


def test_a_port_in_use_is_one_clear_line(tmp_path):
    import socket

    from genba.errors import GenbaError
    from genba.serving.server import run_serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(GenbaError, match=rf"^cannot listen on 127\.0\.0\.1:{port}: .*in use$"):
            run_serve(ServeConfig(policy="linear", port=port, out=str(tmp_path / "s.json")))
        # (the CLI prints a GenbaError as one line and exits 2; a bind error used to be a traceback and exit 1)


class MiscountingPolicy(LinearPolicy):
    """A buggy batched policy: one result short for every batch of two or more."""

    def infer_batch(self, batch):
        out = super().infer_batch(batch)
        return out[:-1] if len(batch) > 1 else out


def test_a_policy_answering_a_batch_wrongly_is_an_error_reply_and_the_server_keeps_serving():
    import threading

    server = ServerThread(PolicyServer(lambda: MiscountingPolicy(horizon=2), port=0, batch_wait_ms=500))
    obs = packb({keys.OBS_STATE: np.zeros(6, np.float32)})
    with server, connect(server.url) as a, connect(server.url) as b:
        unpackb(a.recv())
        unpackb(b.recv())
        replies = {}

        def ask(name, ws):
            ws.send(obs)
            replies[name] = ws.recv(timeout=10)

        threads = [threading.Thread(target=ask, args=(n, ws)) for n, ws in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Both waited in one batch (500 ms window, two clients): the policy's miscount reaches both as one line.
        assert (
            replies["a"] == replies["b"] == "policy error: policy returned 1 results for a batch of 2; no actions sent"
        )
        a.send(obs)  # the batcher survived: a lone request is served
        assert unpackb(a.recv(timeout=10))[keys.ACTIONS].shape == (2, 6)


def test_so101_limits_clip_a_wild_action_in_the_policys_units():
    # SO-101 limits are degrees, the linear policy acts in radians: the server clips in radians, converted.
    server = start("linear", horizon=4, limits=robot_limits("so101"))
    server.server.policy.bias[:] = 10.0  # row h = state + 10 (h + 1) (+ a little): every joint far out of range
    state = np.array([3.0, -0.2, 0.3, 0.0, 0.0, 0.01], np.float32)  # pan 3.0 rad: past the genba arm's 1.92
    with server, connect(server.url) as ws:
        meta = unpackb(ws.recv())
        ws.send(packb({keys.OBS_STATE: state}))
        got = unpackb(ws.recv())[keys.ACTIONS]  # (4, 6) radians, gripper metres
    assert meta["action_limits"]["robot"] == "so101" and meta["action_limits"]["units"] == "rad (gripper: m)"
    rows = np.arange(1, 5)[:, None]
    expected = np.minimum(state + rows * np.array([np.radians(8)] * 5 + [0.0064]), [np.pi] * 5 + [0.032])
    np.testing.assert_allclose(got, expected, atol=1e-6)  # the SO-101's +-180 deg and 8 deg a step, in radians
    sent = np.array([so101_units().to_robot(r) for r in got])  # what the arm would get: degrees, gripper 0..100
    assert np.abs(sent[:, :5]).max() <= 180 and sent[:, 5].min() >= 0 and sent[:, 5].max() <= 100
    change = np.abs(np.diff(np.vstack([so101_units().to_robot(state), sent]), axis=0))
    assert np.all(change <= np.array([8] * 5 + [20]) + 1e-4)


def test_limits_with_no_known_conversion_to_the_policys_units_are_refused():
    from dataclasses import replace

    from genba.errors import GenbaError

    def end_effector_policy() -> LinearPolicy:
        policy = LinearPolicy(horizon=2)
        policy.action_spec = replace(policy.action_spec, units="m (end effector)")
        return policy

    # Degree limits on other actions would clip nothing that matters: refused in one line, not compared as numbers.
    with pytest.raises(GenbaError, match=r"^policy linear acts in m \(end effector\): the so101 limits are in deg "
                       r"\(gripper: 0\.\.100\) and no conversion to m \(end effector\) is known") as e:  # fmt: skip
        PolicyServer(end_effector_policy, port=0, limits=robot_limits("so101"))
    assert "\n" not in str(e.value)


def test_a_repeated_authorization_header_is_refused_not_a_server_error():
    import socket

    with start("linear", horizon=2, api_key="k") as server, socket.create_connection(("127.0.0.1", server.port)) as s:
        s.settimeout(10)
        s.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Authorization: Api-Key k\r\nAuthorization: Api-Key k\r\n\r\n"
        )
        assert s.recv(4096).startswith(b"HTTP/1.1 401 ")
