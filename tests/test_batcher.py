"""The server's batcher: requests waiting while the model is busy go into its next call, in
order, each getting back its own rows; an error reaches every request of its call only."""

import asyncio
import threading

import numpy as np
import pytest

from bertclf.serve import Batcher, QueueFull


class RecordingClassifier:
    """Probabilities [len(text), 0] per text; records each call; the first call waits for
    `release`, so that the requests sent meanwhile queue up behind it."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.fail_on = fail_on

    def outputs(self, texts, text_pairs=None):
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            assert self.release.wait(10)
        if self.fail_on in texts:
            raise RuntimeError(f"cannot predict {self.fail_on!r}")
        return np.array([[len(t), 0.0] for t in texts])


async def send_while_first_call_is_busy(batcher, classifier, requests):
    worker = asyncio.create_task(batcher.run())
    first = asyncio.create_task(batcher.outputs(["first"]))
    while not classifier.calls:
        await asyncio.sleep(0.01)
    rest = [asyncio.create_task(batcher.outputs(texts)) for texts in requests]
    await asyncio.sleep(0.05)  # every request is queued
    classifier.release.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    worker.cancel()
    return results


def test_waiting_requests_are_merged_into_one_call_and_split_back():
    classifier = RecordingClassifier()
    requests = [["a"], ["bb", "ccc"], ["dddd"]]
    results = asyncio.run(
        send_while_first_call_is_busy(Batcher(classifier, 256), classifier, requests)
    )
    assert classifier.calls == [["first"], ["a", "bb", "ccc", "dddd"]]
    assert [r[:, 0].tolist() for r in results] == [[5], [1], [2, 3], [4]]


def test_merging_stops_at_the_batch_limit():
    classifier = RecordingClassifier()
    requests = [["a"], ["b"], ["c"]]
    asyncio.run(send_while_first_call_is_busy(Batcher(classifier, 1), classifier, requests))
    assert classifier.calls == [["first"], ["a"], ["b"], ["c"]]


def test_an_error_reaches_the_requests_of_its_call_and_the_batcher_goes_on():
    classifier = RecordingClassifier(fail_on="bad")
    requests = [["bad"], ["fine"]]
    first, bad, fine = asyncio.run(
        send_while_first_call_is_busy(Batcher(classifier, 1), classifier, requests)
    )
    assert first[:, 0].tolist() == [5]
    assert str(bad) == "RuntimeError: cannot predict 'bad'"  # one line, the server's 500
    assert fine[:, 0].tolist() == [4]


def test_a_cancelled_request_is_skipped_and_the_batcher_goes_on():
    """A request whose caller gave up (deadline, hang-up) while it waited: the worker must not
    set a result on its cancelled future (InvalidStateError would kill the worker)."""
    classifier = RecordingClassifier()

    async def scenario():
        batcher = Batcher(classifier, 256)
        worker = asyncio.create_task(batcher.run())
        first = asyncio.create_task(batcher.outputs(["first"]))
        while not classifier.calls:
            await asyncio.sleep(0.01)
        gone = asyncio.create_task(batcher.outputs(["gone"]))
        kept = asyncio.create_task(batcher.outputs(["kept"]))
        await asyncio.sleep(0.05)
        gone.cancel()
        classifier.release.set()
        results = await asyncio.gather(first, kept)
        later = await asyncio.wait_for(batcher.outputs(["later"]), 10)
        assert not worker.done()  # the worker survived
        worker.cancel()
        return results, later

    (first, kept), later = asyncio.run(scenario())
    assert classifier.calls == [["first"], ["kept"], ["later"]]
    assert kept[:, 0].tolist() == [4] and later[:, 0].tolist() == [5]


def test_no_call_exceeds_the_batch_limit_and_large_requests_are_split():
    classifier = RecordingClassifier()
    requests = [["a"] * 255, ["b"] * 256, ["c"] * 600]
    results = asyncio.run(
        send_while_first_call_is_busy(Batcher(classifier, 256), classifier, requests)
    )
    assert max(len(call) for call in classifier.calls) == 256
    assert sum(len(call) for call in classifier.calls) == 1 + 255 + 256 + 600
    assert [len(r) for r in results] == [1, 255, 256, 600]


def test_waiting_requests_share_each_call_so_a_small_one_is_in_the_next_call():
    """Head-of-line blocking: a one-text request waited behind every text of a large request
    sent before it (10.9 s behind 256 texts). Now each call is shared among the requests
    waiting, the small one's unused share going to the large one, and a request alone still
    fills whole calls."""
    classifier = RecordingClassifier()
    requests = [["b"] * 12, ["s"], ["c"] * 3]
    large, small, medium = asyncio.run(
        send_while_first_call_is_busy(Batcher(classifier, 4), classifier, requests)
    )[1:]
    # shares of 4: s 1 (4/3), c 1 (3/2), b the 2 left; then c 2 and b 2; then b alone
    assert classifier.calls == [
        ["first"], ["b", "b", "s", "c"], ["b", "b", "c", "c"], ["b"] * 4, ["b"] * 4
    ]  # fmt: skip
    assert len(large) == 12 and small[:, 0].tolist() == [1] and len(medium) == 3


def test_with_more_requests_than_a_call_holds_the_oldest_go_first():
    """By size alone, a large request would wait for ever behind a stream of small ones."""
    classifier = RecordingClassifier()
    requests = [["b"] * 3, ["s"], ["t"]]
    asyncio.run(send_while_first_call_is_busy(Batcher(classifier, 2), classifier, requests))
    # a call of 2: b and s, the oldest; then b and t share it; then b alone
    assert classifier.calls == [["first"], ["b", "s"], ["b", "t"], ["b"]]


def test_a_full_queue_refuses_new_requests():
    classifier = RecordingClassifier()

    async def scenario():
        batcher = Batcher(classifier, 4, max_queue_texts=5)
        worker = asyncio.create_task(batcher.run())
        first = asyncio.create_task(batcher.outputs(["first"]))
        while not classifier.calls:
            await asyncio.sleep(0.01)
        waiting = asyncio.create_task(batcher.outputs(["w"] * 5))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull):
            await batcher.outputs(["one more"])
        classifier.release.set()
        await asyncio.gather(first, waiting)
        assert len(await batcher.outputs(["room again"])) == 1
        worker.cancel()

    asyncio.run(scenario())


class Panic(BaseException):
    """What pyo3 raises when a tokenizer panics: a BaseException, not an Exception."""


class PanickingClassifier(RecordingClassifier):
    def outputs(self, texts, text_pairs=None):
        if "panic" in texts:
            self.calls.append(list(texts))
            raise Panic("the tokenizer\npanicked")
        return super().outputs(texts)


def test_a_call_that_raises_any_exception_fails_its_requests_and_the_batcher_lives(caplog):
    """A BaseException in a model call killed the worker: every later request waited for its
    timeout, and /healthz still said ok. Now that call's requests get one line, the traceback
    is logged once, and the next requests are answered."""
    from bertclf.serve import ModelCallFailed

    classifier = PanickingClassifier()
    batcher = Batcher(classifier, 1)

    async def scenario():
        worker = batcher.start()
        first = asyncio.create_task(batcher.outputs(["first"]))
        while not classifier.calls:
            await asyncio.sleep(0.01)
        rest = [asyncio.create_task(batcher.outputs(t)) for t in (["panic"], ["fine"])]
        await asyncio.sleep(0.05)
        classifier.release.set()
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        alive = batcher.alive
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        return results, alive

    (first, panicked, fine), alive = asyncio.run(scenario())
    assert isinstance(panicked, ModelCallFailed)
    assert str(panicked) == "Panic: the tokenizer panicked"
    assert first[:, 0].tolist() == [5] and fine[:, 0].tolist() == [4]
    assert alive and not batcher.alive  # alive through the panic; not once cancelled
    assert [r.message for r in caplog.records] == ["a model call failed"]


def test_requests_in_flight_beyond_the_limit_get_503_and_the_rest_go_through():
    """The probes are not refused at the limit: a server that is busy is alive."""
    from bertclf.http_guards import RequestsInFlight

    release = asyncio.Event()

    async def app(scope, receive, send):  # holds each request until released
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limited = RequestsInFlight(app, limit=2)

    async def one(path: str = "/v1/predict") -> int:
        sent = []

        async def send(message):
            sent.append(message)

        await limited({"type": "http", "path": path}, None, send)
        return sent[0]["status"]

    async def scenario():
        held = [asyncio.create_task(one()) for _ in range(2)]
        await asyncio.sleep(0.01)
        refused = await one()  # a third while two are in flight
        probe = asyncio.create_task(one("/v2/health/live"))
        await asyncio.sleep(0.01)
        release.set()
        return refused, await asyncio.gather(*held), await probe, await one()

    refused, held, probe, after = asyncio.run(scenario())
    assert (refused, held, probe, after) == (503, [200, 200], 200, 200)
    assert limited.active == 0
