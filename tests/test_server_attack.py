"""The scoring server refuses before it spends: malformed bodies are 422, oversized contexts
are refused before tokenizing, slow or half-open connections are closed, and a token guards
every route but ``/health``. Request parsing is fuzzed with hypothesis."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from agentq.integrations.server import BackgroundServer, ServerConfig, create_app
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentq.protocols import BaseScorer
from agentq.types import Context

CTX: Context = [{"role": "user", "content": "hello"}]
JSON = {"content-type": "application/json"}


class LenScorer(BaseScorer):
    """Scores an action by its length."""

    def score_batch(self, items: Sequence[tuple[Context, Sequence[str]]]) -> list[list[float]]:
        return [[float(len(a)) for a in acts] for _, acts in items]


class CountingTokenizer:
    """A whitespace tokenizer that counts how many characters it was asked to tokenize."""

    def __init__(self) -> None:
        self.chars = 0

    def apply_chat_template(self, messages: Any, **kw: Any) -> str:
        text = "\n".join(str(m.get("content", "")) for m in messages)
        self.chars += len(text)
        return text

    def encode(self, text: str, **kw: Any) -> list[int]:
        return [0] * len(text.split())


@pytest.fixture(scope="module")
def client() -> Any:
    app = create_app(
        LenScorer(), ServerConfig(max_context_tokens=100, max_body_bytes=200_000, batch_window_ms=0)
    )
    with TestClient(app) as c:
        yield c


def status(client: Any, body: bytes, path: str = "/v1/score") -> int:
    r = client.post(path, content=body, headers=JSON)
    if r.status_code != 200:
        assert r.json()["error"]["code"] == r.status_code
    return int(r.status_code)


MALFORMED = {
    "empty-context": b'{"context": [], "actions": ["a"]}',
    "deep-json": b'{"context": ' + b"[" * 50_000 + b"]" * 50_000 + b', "actions": ["a"]}',
    "deep-unclosed": b"[" * 100_000,
    "nested-past-max-depth": b'{"context": [{"role": "user", "content": "x", "meta": '
    + b'{"a": ' * 200
    + b"1"
    + b"}" * 200
    + b'}], "actions": ["a"]}',
    "lone-surrogate-content": b'{"context": [{"role": "user", "content": "\\ud800"}], "actions": ["a"]}',
    "lone-surrogate-action": b'{"context": [{"role": "user", "content": "x"}], "actions": ["\\udfff"]}',
    "lone-surrogate-role": b'{"context": [{"role": "\\ud800", "content": "x"}], "actions": ["a"]}',
    "lone-surrogate-key": b'{"context": [{"role": "user", "content": "x", "\\ud800": 1}], "actions": ["a"]}',
    "bad-utf8": b'{"context": [{"role": "user", "content": "\xff\xfe"}], "actions": ["a"]}',
    "empty-body": b"",
    "null": b"null",
    "number": b"1e999999",
    "huge-int": b'{"context": ' + b"9" * 5000 + b', "actions": ["a"]}',
    "batch-empty-context": b'{"items": [{"context": [], "actions": ["a"]}]}',
    "batch-surrogate": b'{"items": [{"context": [{"role": "user", "content": "\\ud800"}], "actions": ["a"]}]}',
}


@pytest.mark.parametrize("body", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_bodies_are_422(client: Any, body: bytes) -> None:
    path = "/v1/score_batch" if body.startswith(b'{"items"') else "/v1/score"
    assert status(client, body, path) == 422


def test_a_lone_surrogate_on_a_good_route_is_still_scorable_after(client: Any) -> None:
    assert status(client, MALFORMED["lone-surrogate-content"]) == 422
    r = client.post("/v1/score", json={"context": CTX, "actions": ["ab"]})
    assert r.status_code == 200 and r.json() == {"scores": [2.0]}


def test_an_oversized_context_is_refused_before_tokenizing() -> None:
    tok = CountingTokenizer()
    app = create_app(
        LenScorer(), ServerConfig(max_context_tokens=50, max_body_bytes=8_000_000), tokenizer=tok
    )
    with TestClient(app) as c:
        big = {"context": [{"role": "user", "content": "w " * 1_500_000}], "actions": ["a"]}
        r = c.post("/v1/score", json=big)
        assert r.status_code == 413 and "characters" in r.json()["error"]["message"]
        assert tok.chars == 0  # never tokenized
        # near the limit it is tokenized and counted
        r = c.post(
            "/v1/score",
            json={"context": [{"role": "user", "content": "w " * 60}], "actions": ["a"]},
        )
        assert r.status_code == 413 and "tokens" in r.json()["error"]["message"]
        assert 0 < tok.chars < 1000
        ok = c.post("/v1/score", json={"context": CTX, "actions": ["a"]})
        assert ok.status_code == 200


def test_docs_routes_are_off_with_a_token_and_on_without() -> None:
    with TestClient(create_app(LenScorer(), ServerConfig(token="s3cret"))) as c:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert c.get(path).status_code == 404, path
            auth = {"Authorization": "Bearer s3cret"}
            assert c.get(path, headers=auth).status_code == 404, path
        assert c.get("/health").status_code == 200
        assert c.get("/metrics").status_code == 401
        assert c.post("/v1/score", json={"context": CTX, "actions": ["a"]}).status_code == 401
        assert c.post("/v1/score_batch", json={"items": []}).status_code == 401
    with TestClient(create_app(LenScorer(), ServerConfig())) as c:
        assert c.get("/openapi.json").status_code == 200
        assert c.get("/docs").status_code == 200


# -- slow and half-open connections ---------------------------------------------------------


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (sending ``trickle`` a byte at a
    time every 50 ms meanwhile)."""
    sock.settimeout(0.05)
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        if i < len(trickle):
            try:
                sock.send(trickle[i : i + 1])
            except OSError:
                return True
            i += 1
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return True
        if data == b"":
            return True
    return False


def test_idle_slow_and_half_open_connections_are_closed() -> None:
    app = create_app(LenScorer(), ServerConfig(idle_timeout_s=0.5, body_timeout_s=0.5))
    with BackgroundServer(app) as srv:
        addr = (srv.host, srv.port)
        # many connections that never send a byte
        silent = [socket.create_connection(addr) for _ in range(40)]
        assert all(_closed_within(s, 5.0) for s in silent)
        for s in silent:
            s.close()
        # one that trickles its request head a byte at a time (slowloris)
        head = b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" * 4
        with socket.create_connection(addr) as s:
            t0 = time.monotonic()
            assert _closed_within(s, 5.0, trickle=head)
            assert time.monotonic() - t0 < 3.0
        # a head, then a body that never comes: 408, then closed
        with socket.create_connection(addr) as s:
            s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            s.settimeout(5.0)
            reply = s.recv(65536)
            assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
        # after a served request, an idle keep-alive connection trickling bytes is closed too
        with socket.create_connection(addr) as s:
            body = json.dumps({"context": CTX, "actions": ["a"]}).encode()
            s.sendall(
                b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )
            s.settimeout(5.0)
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            assert _closed_within(s, 5.0, trickle=head)
        # the server still serves
        r = httpx.post(srv.url + "/v1/score", json={"context": CTX, "actions": ["ab"]}, timeout=10)
        assert r.status_code == 200 and r.json() == {"scores": [2.0]}


# -- fuzzing the request parser -------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["context", "actions", "role", "content", "items", "x"])
            | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant"]) | json_values},
        optional={"content": st.text(max_size=40) | json_values, "name": json_values},
    ),
    max_size=4,
)
requests_ = st.fixed_dictionaries(
    {
        "context": messages | json_values,
        "actions": st.lists(st.text(max_size=20), max_size=5) | json_values,
    }
)
raw_bodies = st.one_of(
    requests_.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.builds(
        lambda pre, junk: pre + junk,
        st.sampled_from([b'{"context": [{"role": "user", "content": "', b"[", b'{"items": [']),
        st.binary(max_size=50) | st.sampled_from([b"\\ud800", b"\\", b"[" * 5000, b"\xff"]),
    ),
)


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=raw_bodies, batch=st.booleans())
def test_fuzzed_request_bodies_never_get_a_500(client: Any, body: bytes, batch: bool) -> None:
    if batch and body.startswith(b"{"):
        body = b'{"items": [' + body + b"]}"
    code = status(client, body, "/v1/score_batch" if batch else "/v1/score")
    assert code in (200, 413, 422), (code, body[:200])
