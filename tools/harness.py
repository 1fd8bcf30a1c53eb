"""What the tests and the benchmarks share: where the project and ../shared are, the machine a
figure was measured on, params sections with conf/'s defaults, the environment a user's shell
has after `make install`, and `bertclf serve` on loopback with well-behaved and misbehaving
clients. tests/helpers.py re-exports it; benchmarks import it from here."""

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
NEWS_SAMPLE = SHARED / "fixtures" / "News_Sample_data.xlsx"
BIN = Path(sys.executable).parent


def machine() -> dict:
    """What a benchmark's figures were measured on and with: the commit and the CPU."""
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {"commit": commit or None, "cpu": cpu, "cores": os.cpu_count()}


def section(section_name: str, **overrides):
    """A params section as the stages see it: the defaults composed from conf/ (the committed
    params.yaml), with `overrides`, validated by its schema."""
    from bertclf.config import load_params, parse_section

    defaults = load_params(ROOT / "params.yaml")[section_name]
    return parse_section(section_name, {**defaults, **overrides})


def news_sample_section():
    """The data section that reads the seed's sheet as conf/data/news_sample.yaml does, split
    60/20/20."""
    return section(
        "data",
        name="news_sample",
        path=str(NEWS_SAMPLE),
        test_path=None,
        text_column="EXCERPT",
        label_column="TAG",
        id_column="ID",
        val_fraction=0.2,
        test_fraction=0.2,
    )


def command_env() -> dict[str, str]:
    """The environment a user's shell has after `make install`: the venv's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop("PYTHONPATH", None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None, timeout=60):
    """One request on a new connection: (status, parsed JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def start_server(
    model: Path, port: int, log: Path, *options: str, env: dict | None = None
) -> subprocess.Popen:
    """`bertclf serve` in its own process group, logging to `log`; returns once it is ready
    (/v2/health/ready: the model answered its warm-up), or live (/healthz) for a server of an
    earlier commit, which has no /v2."""
    args = ["bertclf", "serve", "--model", str(model), "--port", str(port), *options]
    with open(log, "wb") as out:
        server = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"bertclf serve exited ({server.returncode}):\n{log.read_text()}")
        try:
            status = request(port, "GET", "/v2/health/ready", timeout=2)[0]
            if status == 404:
                status = request(port, "GET", "/healthz", timeout=2)[0]
            if status == 200:
                return server
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"bertclf serve did not answer in 180 s:\n{log.read_text()}")


def stop_server(server: subprocess.Popen) -> None:
    """SIGINT, as Ctrl-C (uvicorn shuts down gracefully at once; SIGTERM would first drain for
    --drain-seconds), then SIGKILL after 20 s."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def load(port: int, texts: list[str], clients: int = 8, seconds: float = 10.0, per_request=1):
    """`clients` threads, each posting `per_request` texts at a time on a kept-alive connection
    until `seconds` pass. Returns requests, errors, requests per second and latencies (ms)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = number
        while time.monotonic() < deadline:
            batch = [texts[(i + j) % len(texts)] for j in range(per_request)]
            i += per_request * clients
            start = time.perf_counter()
            try:
                connection.request(
                    "POST",
                    "/v1/predict",
                    body=json.dumps({"texts": batch}),
                    headers={"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                answer = json.loads(response.read())
                ok = response.status == 200 and len(answer["predictions"]) == len(batch)
            except (OSError, ValueError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            latencies[number].append((time.perf_counter() - start) * 1000)
            errors[number] += not ok
        connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    flat = np.concatenate([np.asarray(x) for x in latencies])
    return {
        "clients": clients,
        "texts_per_request": per_request,
        "seconds": round(elapsed, 2),
        "requests": int(flat.size),
        "errors": int(sum(errors)),
        "requests_per_second": round(flat.size / elapsed, 1),
        "p50_ms": round(float(np.percentile(flat, 50)), 1),
        "p99_ms": round(float(np.percentile(flat, 99)), 1),
    }


def misbehave(port: int, kind: str, seconds: float, read_timeout: float) -> list[float]:
    """One misbehaving client for `seconds`: it opens a connection and, by `kind`, sends
    nothing ("idle"), headers a byte at a time ("slow_headers"), a body a byte at a time
    ("slow_body"), or half a body and hangs up ("hang_up"); when the server closes the
    connection it opens another. Returns how long the server took to close each one (for
    hang_up, how long sending took)."""
    closed_after = []
    deadline = time.monotonic() + seconds
    head = b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    while time.monotonic() < deadline:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=3 * read_timeout + 5) as conn:
            try:
                if kind == "hang_up":
                    conn.sendall(head + b'Content-Length: 100\r\n\r\n{"texts": ["cut')
                    time.sleep(0.2)
                    closed_after.append(time.monotonic() - started)
                    continue
                if kind == "slow_headers":
                    conn.sendall(b"POST /v1/predict HTTP/1.1\r\n")
                    trickle = b"X-Slow: " + b"a" * 1000
                elif kind == "slow_body":
                    conn.sendall(head + b"Content-Length: 1000\r\n\r\n")
                    trickle = b'{"texts": ["' + b"a" * 1000
                else:
                    trickle = b""
                for byte in trickle:
                    conn.sendall(bytes([byte]))
                    if select.select([conn], [], [], 0.25)[0]:  # the server answered or closed
                        break
                while conn.recv(4096):  # the server's 408, then its close
                    pass
            except (ConnectionResetError, BrokenPipeError):
                pass
            except TimeoutError:
                closed_after.append(float("inf"))  # never closed by the server
                continue
        closed_after.append(time.monotonic() - started)
    return closed_after


def abuse(port: int, seconds: float, read_timeout: float, idle=50, slow=10) -> dict:
    """`idle` idle connections, `slow` slow-header and `slow` slow-body clients and one that
    hangs up mid-body, for `seconds`, in threads. Returns each kind's close times."""
    kinds = ["idle"] * idle + ["slow_headers"] * slow + ["slow_body"] * slow + ["hang_up"]
    results: dict[str, list[float]] = {kind: [] for kind in kinds}

    def client(kind: str) -> None:
        results[kind].extend(misbehave(port, kind, seconds, read_timeout))

    threads = [threading.Thread(target=client, args=(kind,)) for kind in kinds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
