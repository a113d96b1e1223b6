"""The server keeps the contract its /openapi.json states, as a schema-driven fuzzer (schemathesis) finds it.

A real server (uvicorn on a free loopback port) serves the tiny run; schemathesis reads its schema, sends
well-formed requests (each must be answered 2xx) and malformed ones (each must be a documented 4xx), and checks
every answer: no 5xx, no status code, content type or body the schema does not list. Derandomized, so the same
requests go out on every run.
"""

from __future__ import annotations

import sys
import time

import httpx
import pytest
import schemathesis
import torch
from conftest import ServerThread
from hypothesis import HealthCheck, settings

from rnnlab.config import ServeLimits
from rnnlab.serve.contract import NOT_BLANK
from rnnlab.serve.http import create_app, load_run

LIMITS = ServeLimits(max_inputs=4, max_chars=300)
"""Small limits, so the fuzzer's boundary cases (4 and 5 texts, 300 and 301 characters) are cheap to answer."""
SENT: list[tuple[str, str]] = []
"""(operation, positive or negative) of each request the fuzzer sent, for the last test."""


@pytest.fixture(scope="module", autouse=True)
def _denormals():
    """Hypothesis refuses to draw floats while denormals flush to zero, which training in this process turned on
    (rnnlab.runtime.configure_math); give them back for this module, and restore the flushing after."""
    flushed = not sys.float_info.min / 2 > 0
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(flushed)


@pytest.fixture(scope="module")
def server(served_run):
    app = create_app(lambda: load_run(served_run, bf16=False), LIMITS)
    with ServerThread(app) as url:
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.05)
        yield url


@pytest.fixture(scope="module")
def api_schema(server):
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {
            "seed": 22,
            "generation": {"mode": "all", "deterministic": True},
            # Well-formed requests to a ready server without a key must all succeed: not even a 429 or 503. Malformed
            # ones get the documented 4xx (a body past max_body_bytes is 413, which schemathesis does not expect).
            "checks": {
                "positive_data_acceptance": {"expected-statuses": ["2xx"]},
                "negative_data_rejection": {"expected-statuses": ["400", "405", "413", "422"]},
            },
            "phases": {"stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_url(f"{server}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_in_the_schema(case):
    SENT.append((case.operation.label, case.meta.generation.mode.value))
    case.call_and_validate(timeout=30)


def test_the_fuzzer_sent_both_kinds_of_request_to_every_route():
    """What the test above sent (pytest runs a module's tests in order): a fuzzer that reached nothing proves nothing."""
    assert {label for label, _ in SENT} == {"GET /health", "GET /ready", "GET /v1/info", "POST /v1/classify",
                                            "GET /metrics", "GET /"}  # fmt: skip
    classify = [mode for label, mode in SENT if label == "POST /v1/classify"]
    assert classify.count("positive") >= 20 and classify.count("negative") >= 20, classify


def test_the_largest_request_the_schema_allows_is_answered(server):
    """The fuzzer tries one text past each limit; this sends the most the schema allows: 4 texts of 300 characters."""
    texts = [f"{i} " + "a good film " * 30 for i in range(LIMITS.max_inputs)]
    texts = [text[: LIMITS.max_chars] for text in texts]
    assert {len(text) for text in texts} == {LIMITS.max_chars}
    response = httpx.post(f"{server}/v1/classify", json={"inputs": texts, "top_k": 1, "explain": True}, timeout=30)
    assert response.status_code == 200, response.text
    assert [r["index"] for r in response.json()["results"]] == [0, 1, 2, 3]


def test_the_request_schema_states_the_limits_the_server_was_given():
    inputs = create_app(lambda: None, LIMITS).openapi()["paths"]["/v1/classify"]["post"]["requestBody"]
    text, texts = inputs["content"]["application/json"]["schema"]["properties"]["inputs"]["anyOf"]
    assert text == {"type": "string", "minLength": 1, "maxLength": 300, "pattern": NOT_BLANK} and texts["items"] == text
    assert (texts["minItems"], texts["maxItems"]) == (1, 4)
