"""A bounded soak of `bertclf serve` (its own server on 127.0.0.1, short timeouts): for 20 s, 8
well-behaved clients beside 50 idle connections, 10 slow-header and 10 slow-body clients and
one that hangs up mid-body. Outcomes are asserted, not speed."""

import socket
import threading
import time

import pandas as pd
import pytest
from helpers import abuse, command_env, free_port, load, start_server, stop_server

pytestmark = pytest.mark.e2e
READ_TIMEOUT = 2.0
SECONDS = 20.0


def test_soak_well_behaved_clients_are_served_and_misbehaving_ones_closed(
    dag_repo, tmp_path, capsys
):
    port = free_port()
    log = tmp_path / "serve.log"
    options = ["--read-timeout", str(READ_TIMEOUT), "--timeout-graceful-shutdown", "5"]
    server = start_server(dag_repo / "models/package", port, log, *options, env=command_env())
    holder = None
    try:
        texts = pd.read_parquet(dag_repo / "data/prepared/test.parquet")["text"].str[:300]
        abused: dict = {}
        abusers = threading.Thread(
            target=lambda: abused.update(abuse(port, SECONDS, READ_TIMEOUT)), daemon=True
        )
        abusers.start()
        served = load(port, texts.tolist(), clients=8, seconds=SECONDS)
        abusers.join(SECONDS + 6 * READ_TIMEOUT + 30)
        assert not abusers.is_alive()
        holder = socket.create_connection(("127.0.0.1", port))  # a half-sent body at shutdown
        holder.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"texts": ['
        )
        time.sleep(0.5)
    finally:
        started = time.monotonic()
        stop_server(server)  # SIGINT, then SIGKILL after 20 s
        shutdown_seconds = time.monotonic() - started
        if holder is not None:
            holder.settimeout(5)
            try:
                held_answer = holder.recv(4096)
            except OSError:  # timed out or reset: the assertion below says so
                held_answer = b""
            holder.close()
    with capsys.disabled():
        closes = {kind: max(times) for kind, times in abused.items() if kind != "hang_up"}
        print(
            f"\nsoak: {served['requests']} requests beside misbehaving clients, "
            f"p50 {served['p50_ms']} ms, p99 {served['p99_ms']} ms; slowest close by kind (s): "
            + ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in closes.items())
            + f"; SIGINT with a half-sent body: exited in {shutdown_seconds:.1f} s"
        )
    assert served["requests"] > 0 and served["errors"] == 0  # every request got its 200
    for kind in ("idle", "slow_headers", "slow_body"):
        assert len(abused[kind]) > 0
        assert max(abused[kind]) <= 3 * READ_TIMEOUT, (kind, sorted(abused[kind])[-5:])
    assert abused["hang_up"]
    # SIGINT ended it (uvicorn re-raises the signal after a graceful shutdown: Ctrl-C's exit
    # 130 with one line), not SIGKILL
    assert server.returncode == 130, server.returncode
    assert shutdown_seconds < 3 * READ_TIMEOUT + 5
    output = log.read_text()
    # the half-sent body was still open at shutdown: it got 503 and was closed at once
    assert held_answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), held_answer
    assert "Application shutdown complete" in output
    assert "Traceback" not in output, output[-3000:]
