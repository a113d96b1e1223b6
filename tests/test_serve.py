"""The HTTP server: every route, every error row, batching, readiness, the API key and graceful drain."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from conftest import ServerThread, rnnlab
from fastapi.testclient import TestClient

from rnnlab.config import ServeLimits
from rnnlab.errors import UserError
from rnnlab.serve.http import Loaded, create_app, load_run
from rnnlab.serve.labeller import Labeller


class _WordCounter:
    """A stand-in encoder: one token per word, 8 kept."""

    max_length, truncation = 8, "head"

    def tokenize_counted(self, texts):
        special = {"explode": -1, "refuse": -2}
        ids = [[special.get(word, len(word)) for word in text.split()] for text in texts]
        return [i[: self.max_length] for i in ids], [len(i) for i in ids]

    def tokenize(self, texts):
        return self.tokenize_counted(texts)[0]


class GatedLabeller(Labeller):
    """Answers [0.25, 0.75] once `gate` is open; a text with 'explode' (or 'refuse', as a UserError) fails its batch."""

    label_names = ["negative", "positive"]

    def __init__(self) -> None:
        self.encoder = _WordCounter()
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()
        self.batches: list[int] = []

    def raw_probs_of_ids(self, token_ids):
        self.entered.set()
        self.gate.wait(timeout=30)
        if any(-1 in ids for ids in token_ids):
            raise RuntimeError("a model failure with a secret path /home/x")
        if any(-2 in ids for ids in token_ids):
            raise UserError("this text cannot be labelled: it says refuse")
        self.batches.append(len(token_ids))
        return np.tile(np.array([0.25, 0.75], dtype=np.float32), (len(token_ids), 1))


def _loaded(labeller: Labeller) -> Loaded:
    info = {"run": "fake", "engine": "torch", "encoder": "words", "head": "gru", "labels": labeller.label_names,
            "max_length": 8, "truncation": "head", "temperature": 1.0, "test_accuracy": None}  # fmt: skip
    return Loaded(labeller, None, info)


def _client(labeller: Labeller | None = None, limits: ServeLimits | None = None, **kwargs) -> TestClient:
    labeller = labeller or GatedLabeller()
    app = create_app(lambda: _loaded(labeller), limits, **kwargs)
    return TestClient(app, raise_server_exceptions=False)


def _wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 30
    while (ready := client.get("/ready")).status_code != 200:
        assert time.monotonic() < deadline, f"never became ready: {ready.text}"
        time.sleep(0.02)


def _assert_error(response, status: int, kind: str, words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "request_id"}
    assert body["error"]["type"] == kind and words in body["error"]["message"], body
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text


# --- the real model -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(served_run):
    app = create_app(lambda: load_run(served_run, bf16=False), ServeLimits())
    with TestClient(app, raise_server_exceptions=False) as client:
        _wait_ready(client)
        yield client


def test_classify_equals_rnnlab_predict(real, served_run):
    texts = ["the movie was good", "an awful dull plot and the actor was bad, bad, bad"]
    cli = rnnlab(["predict", str(served_run), *texts, "--jsonl", "--no-bf16"])
    assert cli.returncode == 0, cli.stderr
    expected = [json.loads(line)["probs"] for line in cli.stdout.splitlines()]
    response = real.post("/v1/classify", json={"inputs": texts})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1]
    for result, probs in zip(results, expected):
        assert {s["label"]: s["score"] for s in result["scores"]} == pytest.approx(probs, abs=2e-6)
        assert result["label"] == max(probs, key=probs.get) and result["score"] == pytest.approx(max(probs.values()), abs=2e-6)


def test_results_are_a_list_sorted_with_every_class_unless_top_k(real):
    single = real.post("/v1/classify", json={"inputs": "a good film"}).json()
    assert isinstance(single["results"], list) and len(single["results"]) == 1 and single["model"] == "run"
    scores = [s["score"] for s in single["results"][0]["scores"]]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=1e-5)
    top = real.post("/v1/classify", json={"inputs": ["a good film"], "top_k": 1}).json()["results"][0]
    assert len(top["scores"]) == 1 and top["scores"][0]["label"] == top["label"]


def test_token_counts_and_truncation_are_reported(real):
    short, long = real.post("/v1/classify", json={"inputs": ["good", "good " * 40]}).json()["results"]
    # The tiny vocabulary spells words out: [CLS] g ##o ##o ##d [SEP]
    assert short["n_tokens"] == 6 and not short["truncated"]
    assert long["n_tokens"] == 40 * 4 + 2 and long["truncated"]


def test_explain_gives_one_score_per_token_kept(real):
    result = real.post("/v1/classify", json={"inputs": "a bad film", "explain": True}).json()["results"][0]
    tokens = [t["token"] for t in result["tokens"]]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and len(tokens) == result["n_tokens"] == 10
    assert any(t["score"] != 0 for t in result["tokens"])
    plain = real.post("/v1/classify", json={"inputs": "a bad film"}).json()["results"][0]
    assert "tokens" not in plain


def test_info_health_metrics_page_and_schema(real):
    assert real.get("/health").json() == {"status": "ok"}
    info = real.get("/v1/info").json()
    assert info["run"] == "run" and info["labels"] == ["neg", "pos"] and info["head"] == "gru"
    assert info["max_length"] == 12 and info["truncation"] == "head_tail" and 0 <= info["test_accuracy"] <= 1
    assert info["limits"]["max_inputs"] == 64 and info["limits"]["max_body_bytes"] == 1 << 20
    metrics = real.get("/metrics").text
    assert 'rnnlab_requests_total{route="/v1/classify",status="200"}' in metrics
    assert "rnnlab_batch_size_bucket" in metrics and "rnnlab_queue_depth" in metrics
    page = real.get("/")
    assert page.status_code == 200 and "<textarea" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing loads from outside
    schema = real.get("/openapi.json").json()
    assert "/v1/classify" in schema["paths"] and real.get("/docs").status_code == 404


# --- limits and errors, one JSON shape ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake():
    with _client(limits=ServeLimits(max_inputs=3, max_chars=50, max_body_bytes=2000)) as client:
        _wait_ready(client)
        yield client


@pytest.mark.parametrize(
    "body, status, kind, words",
    [
        (b'{"inputs": ', 400, "bad_request", "not valid JSON"),
        (b"\xff\xfe", 400, "bad_request", "not valid JSON"),
        (json.dumps({"inputs": "   "}).encode(), 400, "bad_request", "body.inputs: the text is empty"),
        (json.dumps({"inputs": ["ok", ""]}).encode(), 400, "bad_request", "body.inputs.1: the text is empty"),
        (json.dumps({"inputs": ["a", "b", "c", "d"]}).encode(), 422, "invalid", "4 texts, more than the limit of 3"),
        (json.dumps({"inputs": "x" * 51}).encode(), 422, "invalid", "body.inputs: 51 characters"),
        (json.dumps({"inputs": []}).encode(), 422, "invalid", "at least one text"),
        (json.dumps({"inputs": ["a", 4]}).encode(), 422, "invalid", "body.inputs.1: Input should be a valid string"),
        (json.dumps({"inputs": 3}).encode(), 422, "invalid", "body.inputs: should be a text or a list of texts"),
        (json.dumps({"text": "hi"}).encode(), 422, "invalid", "body.inputs: Field required"),
        (json.dumps({"inputs": "hi", "topk": 1}).encode(), 422, "invalid", "body.topk: Extra inputs are not permitted"),
        (json.dumps({"inputs": "hi", "top_k": 0}).encode(), 422, "invalid", "body.top_k"),
        (json.dumps([1]).encode(), 422, "invalid", "body: "),
        (json.dumps({"inputs": "x" * 40}).encode() * 60, 413, "too_large", "larger than the limit"),
    ],
)
def test_bad_requests_get_one_json_error_shape_and_the_server_keeps_serving(fake, body, status, kind, words):
    _assert_error(fake.post("/v1/classify", content=body), status, kind, words)
    assert fake.post("/v1/classify", json={"inputs": "still fine"}).status_code == 200


def test_framework_errors_take_the_same_shape(fake):
    _assert_error(fake.get("/nope"), 404, "not_found", "/nope")
    _assert_error(fake.get("/v1/classify"), 405, "method_not_allowed", "GET")
    # A chunked body has no Content-Length: the limit is counted as it streams.
    chunks = (json.dumps({"inputs": "x"}).encode() + b" " * 500 for _ in range(10))
    _assert_error(fake.post("/v1/classify", content=chunks), 413, "too_large", "larger than the limit")


def test_json_is_read_whatever_the_content_type(fake):
    form = {"content-type": "application/x-www-form-urlencoded"}  # what curl -d sends
    response = fake.post("/v1/classify", content=b'{"inputs": "hi"}', headers=form)
    assert response.status_code == 200 and response.json()["results"][0]["label"] == "positive"


def test_a_failing_batch_fails_its_request_without_a_traceback_and_not_the_worker():
    with _client() as client:
        _wait_ready(client)
        _assert_error(client.post("/v1/classify", json={"inputs": "explode now"}), 500, "internal", "see its log")
        assert "/home/x" not in client.post("/v1/classify", json={"inputs": "explode"}).text
        assert client.post("/v1/classify", json={"inputs": "fine again"}).status_code == 200
        _assert_error(client.post("/v1/classify", json={"inputs": "please refuse"}), 400, "bad_request", "it says refuse")
        assert client.post("/v1/classify", json={"inputs": "fine again"}).status_code == 200


def test_api_key_is_required_when_set():
    with _client(api_key="s3cret") as client:
        _wait_ready(client)
        _assert_error(client.post("/v1/classify", json={"inputs": "hi"}), 401, "unauthorized", "API key")
        wrong = client.post("/v1/classify", json={"inputs": "hi"}, headers={"Authorization": "Bearer nope"})
        _assert_error(wrong, 401, "unauthorized", "API key")
        assert wrong.headers["www-authenticate"] == "Bearer"
        right = client.post("/v1/classify", json={"inputs": "hi"}, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
        assert client.get("/v1/info").json()["api_key_required"] is True and client.get("/health").status_code == 200


def test_not_ready_until_loaded_and_warmed_up():
    release = threading.Event()
    labeller = GatedLabeller()

    def load():
        release.wait(timeout=30)
        return _loaded(labeller)

    with TestClient(create_app(load), raise_server_exceptions=False) as client:
        assert client.get("/health").status_code == 200
        _assert_error(client.get("/ready"), 503, "not_ready", "still loading")
        _assert_error(client.post("/v1/classify", json={"inputs": "hi"}), 503, "not_ready", "still loading")
        assert client.get("/ready").headers["retry-after"] == "5"
        release.set()
        _wait_ready(client)
        assert labeller.entered.is_set()  # the warm-up batch ran before /ready said so
        assert client.post("/v1/classify", json={"inputs": "hi"}).status_code == 200


def test_a_model_that_fails_to_load_says_why_on_ready():
    def load():
        raise FileNotFoundError("runs/x/model.safetensors")

    with TestClient(create_app(load), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 10
        while "failed" not in (message := client.get("/ready").json()["error"]["message"]):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert "runs/x/model.safetensors" in message


def test_queue_full_gets_429_and_a_slow_answer_504():
    labeller = GatedLabeller()
    with _client(labeller, ServeLimits(max_queue=2, timeout_s=1.0)) as client:
        _wait_ready(client)
        labeller.gate.clear()
        labeller.entered.clear()
        with ThreadPoolExecutor(2) as pool:
            busy = pool.submit(client.post, "/v1/classify", json={"inputs": "first"})
            assert labeller.entered.wait(10)  # the model thread holds "first"
            queued = pool.submit(client.post, "/v1/classify", json={"inputs": ["a", "b"]})
            state = client.app.state.rnnlab
            deadline = time.monotonic() + 10
            while state.batcher.depth < 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            full = client.post("/v1/classify", json={"inputs": "one more"})
            _assert_error(full, 429, "overloaded", "overloaded")
            assert full.headers["retry-after"] == "1"
            _assert_error(busy.result(), 504, "timeout", "no answer within 1 s")
            _assert_error(queued.result(), 504, "timeout", "no answer within 1 s")
        labeller.gate.set()
        assert client.post("/v1/classify", json={"inputs": "after"}).status_code == 200
        assert 'status="429"' in client.get("/metrics").text


def test_concurrent_requests_share_batches():
    labeller = GatedLabeller()
    with _client(labeller, ServeLimits(max_batch=32, max_wait_ms=50)) as client:
        _wait_ready(client)
        labeller.batches.clear()
        labeller.gate.clear()
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(client.post, "/v1/classify", json={"inputs": f"text {i}"}) for i in range(16)]
            time.sleep(0.3)  # all 16 queue up behind the closed gate
            labeller.gate.set()
            assert all(f.result().status_code == 200 for f in futures)
        assert sum(labeller.batches) == 16 and max(labeller.batches) > 1, labeller.batches
        assert all(size <= 32 for size in labeller.batches)


def test_shutdown_answers_requests_already_accepted():
    labeller = GatedLabeller()
    app = create_app(lambda: _loaded(labeller), ServeLimits(max_wait_ms=1))
    server = ServerThread(app)
    with server as url:
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        labeller.gate.clear()
        labeller.entered.clear()
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(httpx.post, f"{url}/v1/classify", json={"inputs": f"t {i}"}, timeout=30) for i in range(4)]
            assert labeller.entered.wait(10)
            time.sleep(0.2)
            server.server.should_exit = True  # SIGTERM: stop accepting, finish what was accepted
            time.sleep(0.2)
            labeller.gate.set()
            assert [f.result().status_code for f in futures] == [200] * 4
        server.thread.join(timeout=30)
        assert not server.thread.is_alive()
        assert sum(labeller.batches) >= 4


def test_serve_refuses_an_unfinished_run_in_one_line(tmp_path):
    result = rnnlab(["serve", str(tmp_path)])
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and str(tmp_path) in result.stderr


def test_onnx_engine_serves_the_exported_graph_with_the_same_answers(real, served_run):
    from rnnlab.serve.onnx import export_onnx

    export_onnx(served_run)
    app = create_app(lambda: load_run(served_run, engine="onnx", bf16=False))
    texts = ["the movie was good", "a dull plot"]
    with TestClient(app, raise_server_exceptions=False) as client:
        _wait_ready(client)
        assert client.get("/v1/info").json()["engine"] == "onnx"
        onnx = client.post("/v1/classify", json={"inputs": texts, "explain": True}).json()["results"]
    torch_results = real.post("/v1/classify", json={"inputs": texts}).json()["results"]
    for a, b in zip(onnx, torch_results):
        assert [s["label"] for s in a["scores"]] == [s["label"] for s in b["scores"]]
        assert [s["score"] for s in a["scores"]] == pytest.approx([s["score"] for s in b["scores"]], abs=1e-4)
        assert a["tokens"]  # highlights come from the torch model of the same run
