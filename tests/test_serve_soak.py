"""A bounded soak of `bertclf serve` (its own server on 127.0.0.1, short timeouts): for 20 s, 8
well-behaved clients beside 50 idle connections, 10 slow-header and 10 slow-body clients and
one that hangs up mid-body. Outcomes are asserted, not speed."""

import sys
import threading

import pandas as pd
import pytest
from conftest import ROOT, command_env

sys.path.insert(0, str(ROOT / "benchmarks"))
from serve_load import abuse, free_port, load, start_server, stop_server  # noqa: E402

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
    finally:
        stop_server(server)  # SIGTERM, then SIGKILL after 20 s
    with capsys.disabled():
        closes = {kind: max(times) for kind, times in abused.items() if kind != "hang_up"}
        print(
            f"\nsoak: {served['requests']} requests beside misbehaving clients, "
            f"p50 {served['p50_ms']} ms, p99 {served['p99_ms']} ms; slowest close by kind (s): "
            + ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in closes.items())
        )
    assert served["requests"] > 0 and served["errors"] == 0  # every request got its 200
    for kind in ("idle", "slow_headers", "slow_body"):
        assert len(abused[kind]) > 0
        assert max(abused[kind]) <= 3 * READ_TIMEOUT, (kind, sorted(abused[kind])[-5:])
    assert abused["hang_up"]
    assert server.returncode is not None and server.returncode != -9  # SIGTERM ended it
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
