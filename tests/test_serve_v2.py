"""`bertclf serve` as operators run it, on the shared tiny build's package: the Open Inference
Protocol through a real v2 client (tritonclient), the API key, Prometheus metrics, ready during
the warm-up, and the drain at SIGTERM."""

import http.client
import json
import os
import signal
import socket
import threading
import time

import numpy as np
import pytest
from helpers import (
    command_env,
    free_port,
    read_json,
    request,
    start_server,
    stop_server,
    triton_client,
    triton_infer,
)

pytestmark = pytest.mark.e2e

KEY = "s3cret-key-for-tests"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXTS = ["Wonderful coffee, I buy it every month.", "Arrived stale and broken.", "fine tea"]


@pytest.fixture(scope="module")
def server(dag_repo, tmp_path_factory):
    """A server named `news`, with an API key from a file and small limits."""
    folder = tmp_path_factory.mktemp("serve_v2")
    key_file = folder / "key"
    key_file.write_text(KEY + "\n")
    port = free_port()
    log = folder / "serve.log"
    process = start_server(
        dag_repo / "models/package", port, log, "--model-name", "news",
        "--api-key-file", str(key_file), "--max-texts", "8", "--max-chars", "300",
        env=command_env(),
    )  # fmt: skip
    yield port, log
    stop_server(process)
    assert KEY not in log.read_text()  # never logged


def call(port: int, method: str, path: str, body=None, headers=AUTH) -> tuple[int, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
        sent = {"Content-Type": "application/json", **headers} if data is not None else headers
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw and b"{" in raw[:1] else raw
    finally:
        connection.close()


def digest(dag_repo) -> str:
    return read_json(dag_repo, "reports/package.json")["manifest_sha256"]


def test_tritonclient_reads_health_and_metadata(server, dag_repo):
    port, _ = server
    client = triton_client(port)
    try:
        assert client.is_server_live() and client.is_server_ready()  # probes need no key
        assert client.is_model_ready("news", headers=AUTH)
        assert client.is_model_ready("news", model_version=digest(dag_repo), headers=AUTH)
        assert not client.is_model_ready("other", headers=AUTH)
        assert not client.is_model_ready("news", model_version="0" * 64, headers=AUTH)
        assert client.get_server_metadata(headers=AUTH)["name"] == "bertclf"
        about = client.get_model_metadata("news", headers=AUTH)
    finally:
        client.close()
    labels = read_json(dag_repo, "models/package/labels.json")["classes"]
    assert about["name"] == "news" and about["versions"] == [digest(dag_repo)]
    assert about["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert about["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(labels)]},
    ]
    assert about["parameters"]["classes"] == labels
    assert about["parameters"]["task"] == "single_label"


def test_tritonclient_infers_what_the_python_api_predicts(server, dag_repo):
    from bertclf import Classifier

    port, _ = server
    classifier = Classifier.load(dag_repo / "models/package")
    result = triton_infer(port, "news", {"text": TEXTS}, request_id="req-1", headers=AUTH)
    assert result.get_response()["id"] == "req-1"
    assert result.get_response()["model_version"] == digest(dag_repo)
    labels = [label.decode() if isinstance(label, bytes) else label
              for label in result.as_numpy("label")]  # fmt: skip
    assert labels == classifier.predict(TEXTS).tolist()
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), classifier.predict_proba(TEXTS), atol=1e-5
    )
    # the versioned route, and only the outputs asked for
    only = triton_infer(
        port, "news", {"text": TEXTS[:1]}, outputs=["probabilities"],
        model_version=digest(dag_repo), headers=AUTH,
    )  # fmt: skip
    assert only.as_numpy("label") is None
    assert only.as_numpy("probabilities").shape == (1, 2)
    # shape [n, 1], data nested as the shape is
    status, answer = call(port, "POST", "/v2/models/news/infer", {"inputs": [
        {"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [[TEXTS[0]], [TEXTS[1]]]},
    ]})  # fmt: skip
    assert status == 200 and answer["outputs"][0]["data"] == labels[:2]


def test_malformed_tensors_get_a_4xx_with_the_protocols_one_line_error(server):
    from tritonclient.utils import InferenceServerException

    port, _ = server
    text = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}
    cases = [
        (b'{"inputs": [', 400, "malformed JSON"),
        ({"inputs": [{**text, "shape": [2]}]}, 400, "holds 2 texts, 'data' has 1"),
        ({"inputs": [{**text, "datatype": "INT32", "data": [1]}]}, 400, "expected 'BYTES'"),
        ({"inputs": [{**text, "shape": [1, 2]}]}, 400, "expected [n] or [n, 1]"),
        ({"inputs": [{**text, "data": [7]}]}, 400, "data[0] is not a string"),
        ({"inputs": [{**text, "name": "txt"}]}, 400, "'txt' is not one of the model's inputs"),
        ({"inputs": []}, 400, "input 'text' is missing"),
        ({"inputs": [text], "outputs": [{"name": "logits"}]}, 400, "'logits' is not one"),
        ({"inputs": [text], "id": 5}, 400, "'id' is not a string"),
        ({"inputs": [{**text, "shape": [9], "data": ["a"] * 9}]}, 413, "at most 8"),
        ({"inputs": [{**text, "data": ["x" * 301]}]}, 422, "over 300 characters"),
        ({"inputs": [{**text, "data": [" "]}]}, 422, "empty or only whitespace"),
    ]
    for body, status, message in cases:
        answer = call(port, "POST", "/v2/models/news/infer", body)
        assert answer[0] == status and message in answer[1]["error"], (body, answer)
        assert set(answer[1]) == {"error"}
    assert call(port, "POST", "/v2/models/nope/infer", {"inputs": [text]})[0] == 404
    # a real client that sends Triton's binary tensors gets 415 (JSON tensors only)
    import tritonclient.http as triton

    binary = triton.InferInput("text", [1], "BYTES")
    binary.set_data_from_numpy(np.array(["a"], dtype=object), binary_data=True)
    client = triton_client(port)
    try:
        with pytest.raises(InferenceServerException, match="binary tensor extension") as error:
            client.infer("news", [binary], headers={**AUTH})  # it adds its own headers there
    finally:
        client.close()
    assert error.value.status() == "415"
    assert call(port, "GET", "/healthz") == (200, {"status": "ok"})  # still serving


def test_the_api_key_guards_every_route_but_the_probes(server):
    from tritonclient.utils import InferenceServerException

    port, _ = server
    body = {"texts": ["good"]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        assert call(port, "POST", "/v1/predict", body, headers)[0] == 401
        status, answer = call(port, "GET", "/v2/models/news", headers=headers)
        assert status == 401 and "API key" in answer["error"]
        assert call(port, "GET", "/metrics", headers=headers)[0] == 401
        assert call(port, "GET", "/openapi.json", headers=headers)[0] == 401
    for probe in ("/healthz", "/v2/health/live", "/v2/health/ready"):
        assert call(port, "GET", probe, headers={})[0] == 200
    assert call(port, "POST", "/v1/predict", body)[0] == 200
    with pytest.raises(InferenceServerException) as error:
        triton_infer(port, "news", {"text": ["good"]})
    assert error.value.status() == "401"


def scrape(port: int) -> dict:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = call(port, "GET", "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_metrics_move_by_what_known_requests_did(server, dag_repo):
    port, _ = server
    before = scrape(port)
    assert triton_infer(port, "news", {"text": TEXTS}, headers=AUTH).as_numpy("label").size == 3
    assert call(port, "POST", "/v1/predict", {"texts": TEXTS[:2]})[0] == 200
    assert call(port, "POST", "/v1/predict", {"texts": ["a"] * 9})[0] == 413
    too_long = {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "x" * 301]}
    assert call(port, "POST", "/v2/models/news/infer", {"inputs": [too_long]})[0] == 422
    after = scrape(port)

    def moved(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    infer = "/v2/models/{name}/infer"
    assert moved("bertclf_requests_total", route=infer, status="200") == 1
    assert moved("bertclf_requests_total", route=infer, status="422") == 1
    assert moved("bertclf_requests_total", route="/v1/predict", status="200") == 1
    assert moved("bertclf_requests_total", route="/v1/predict", status="413") == 1
    assert moved("bertclf_request_seconds_count", route="/v1/predict") == 2
    assert moved("bertclf_refused_requests_total", limit="max_texts") == 1
    assert moved("bertclf_refused_texts_total", limit="max_texts") == 9
    assert moved("bertclf_refused_texts_total", limit="max_chars") == 2
    assert moved("bertclf_model_call_texts_sum") == 5  # 3 + 2 texts, however merged
    calls = moved("bertclf_model_call_texts_count")
    assert calls in (1, 2) and moved("bertclf_model_call_seconds_count") == calls
    assert after[("bertclf_queue_texts", ())] == 0 and after[("bertclf_ready", ())] == 1
    (info,) = [dict(labels) for name, labels in after if name == "bertclf_model_info"]
    assert info["package_sha256"] == digest(dag_repo) and info["name"] == "news"
    assert info["runtime"] == "openvino" and info["precision"] == "f32"
    # a path that names no route is counted as `other`: it adds no series of its own
    assert call(port, "GET", "/no/such/route/x1")[0] == 404
    assert call(port, "POST", "/v1/explain", {"texts": ["x"]})[0] == 404  # not without --explain
    final = scrape(port)
    other = ("bertclf_requests_total", (("route", "other"), ("status", "404")))
    assert final[other] - after.get(other, 0) == 2
    assert not any("/no/such" in str(labels) for _, labels in final)


def test_ready_is_503_while_the_model_warms_up_and_200_after(dag_repo):
    """In-process, on a real socket, with the model's first call held until the test has seen
    the server listening but unready."""
    import uvicorn

    from bertclf import Classifier
    from bertclf.serve import Limits, create_app

    classifier = Classifier.load(dag_repo / "models/package")
    release = threading.Event()
    model_outputs = classifier.outputs

    def held_outputs(*args, **kwargs):
        release.wait(120)
        return model_outputs(*args, **kwargs)

    classifier.outputs = held_outputs
    limits = Limits(8, 300, 5000, 16, 1000, 64, 60.0, 10.0, 10.0, 20, 5.0)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(classifier, limits, model_name="news"), port=port, log_level="warning"
        )  # fmt: skip
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert request(port, "GET", "/v2/health/live") == (200, {"live": True})  # listening
        assert request(port, "GET", "/healthz") == (200, {"status": "ok"})
        assert request(port, "GET", "/v2/health/ready") == (
            503, {"error": "the model is warming up"}
        )  # fmt: skip
        assert request(port, "GET", "/v2/models/news/ready")[0] == 503
        release.set()
        deadline = time.monotonic() + 60
        while request(port, "GET", "/v2/health/ready")[0] != 200:
            assert time.monotonic() < deadline, "not ready 60 s after the warm-up was released"
            time.sleep(0.1)
        assert request(port, "GET", "/v2/models/news/ready")[0] == 200
    finally:
        release.set()
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()


def test_sigterm_turns_ready_503_and_serves_through_the_drain(dag_repo, tmp_path):
    """A request still sending its body at SIGTERM is answered 200 (without a drain, uvicorn's
    shutdown answers it 503), new requests are served, and ready is 503, until the drain ends
    and the server shuts down."""
    port = free_port()
    log = tmp_path / "serve.log"
    process = start_server(
        dag_repo / "models/package", port, log, "--drain-seconds", "8", env=command_env()
    )
    try:
        body = json.dumps({"texts": TEXTS}).encode()
        sending = socket.create_connection(("127.0.0.1", port), timeout=60)
        sending.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:10])
        )
        os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while request(port, "GET", "/v2/health/ready")[0] != 503:
            assert time.monotonic() < deadline, "ready was not 503 within 5 s of SIGTERM"
            time.sleep(0.05)
        sending.sendall(body[10:])
        answer = b""
        while not answer.rstrip().endswith(b"}"):
            chunk = sending.recv(65536)
            if not chunk:
                break  # closed: the assertion below shows what came
            answer += chunk
        sending.close()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:200]
        assert request(port, "GET", "/v2/health/live")[0] == 200
        assert request(port, "GET", "/v2/health/ready")[0] == 503  # still draining
        status, answer = request(port, "POST", "/v1/predict", json.dumps({"texts": TEXTS}).encode())
        assert status == 200 and len(answer["predictions"]) == 3
        process.wait(60)  # the drain (8 s), then the graceful shutdown
    finally:
        stop_server(process)
    output = log.read_text()
    assert "SIGTERM: not ready; serving 8 s more, then shutting down" in output
    assert "Finished server process" in output and "Traceback" not in output, output


def test_an_explanation_asked_while_one_runs_gets_503_with_retry_after(dag_repo):
    """/v1/explain runs one at a time: the first is held inside its explanation while a second
    arrives; the second gets 503 and Retry-After at once, and the first its answer."""
    import uvicorn

    from bertclf import Classifier
    from bertclf.serve import ExplainLimits, Limits, create_app

    classifier = Classifier.load(dag_repo / "models/package")
    running, release = threading.Event(), threading.Event()
    explain = classifier.explain

    def held_explain(*args, **kwargs):
        running.set()
        release.wait(120)
        return explain(*args, **kwargs)

    classifier.explain = held_explain
    limits = Limits(8, 300, 5000, 16, 1000, 64, 60.0, 10.0, 10.0, 20, 5.0)
    app = create_app(classifier, limits, model_name="news", explain=ExplainLimits(2, 200, 8))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    first: list = []
    body = json.dumps({"texts": ["Great coffee"], "steps": 4}).encode()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        asking = threading.Thread(
            target=lambda: first.append(request(port, "POST", "/v1/explain", body))
        )
        asking.start()
        assert running.wait(60)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", "/v1/explain", body, {"Content-Type": "application/json"})
        second = connection.getresponse()
        assert second.status == 503 and second.getheader("Retry-After") == "1"
        assert json.loads(second.read()) == {"detail": "an explanation is running: one at a time"}
        connection.close()
        release.set()
        asking.join(60)
        assert first[0][0] == 200 and len(first[0][1]["explanations"]) == 1
    finally:
        release.set()
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()
