"""agentq's scoring server: real uvicorn servers on 127.0.0.1, the RemoteScorer client, and
``agentq serve`` as a subprocess with a tiny Q-model."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentq.integrations.openai_compat import RemoteRequestError, RemoteUnavailableError
from agentq.integrations.server import (
    BackgroundServer,
    Batcher,
    RemoteScorer,
    ServerConfig,
    ServerMetrics,
    create_app,
    remote_scorer_from_spec,
)

from agentq.errors import RemoteError, UserInputError
from agentq.protocols import BaseScorer
from agentq.specs import resolve_scorer
from agentq.types import Context

CTX: Context = [
    {"role": "system", "content": "Open doors."},
    {"role": "user", "content": "Task toy-train-3. You are in room 1 of 3. Doors: A, B, C."},
]


class GateScorer(BaseScorer):
    """A deterministic scorer whose model thread waits on a gate; records its batch sizes."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[int] = []
        self.threads: set[str] = set()

    @staticmethod
    def value(context: Context, action: str) -> float:
        return len(str(context[-1].get("content", ""))) + 0.125 * len(action)

    def score_batch(self, items: Sequence[tuple[Context, Sequence[str]]]) -> list[list[float]]:
        assert self.gate.wait(30), "test gate never opened"
        self.threads.add(threading.current_thread().name)
        self.batches.append(len(items))
        for _, acts in items:
            if "BAD" in acts:
                raise ValueError("this action cannot be scored")
        return [[self.value(c, a) for a in acts] for c, acts in items]


def ctx(i: int) -> Context:
    return [*CTX[:1], {"role": "user", "content": f"request {i} " + "x" * (i % 7)}]


def _get(url: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.get(url + path, timeout=10, **kw)


def _post(url: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.post(url + path, timeout=30, **kw)


def _wait_for(pred: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _metrics(url: str, **kw: Any) -> dict[str, Any]:
    return _get(url, "/metrics", **kw).json()


@pytest.fixture
def gate() -> GateScorer:
    return GateScorer()


def _server(scorer: Any, **cfg: Any) -> BackgroundServer:
    return BackgroundServer(create_app(scorer, ServerConfig(**cfg)), log_level="warning").start()


async def _score_many(url: str, n: int, **headers: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as c:
        return await asyncio.gather(
            *(
                c.post(
                    url + "/v1/score",
                    json={"context": ctx(i), "actions": ["open[A]", f"a{i}"]},
                    headers=headers,
                )
                for i in range(n)
            )
        )


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


# ----------------------------------------------------------------------------------------
# in-process servers
# ----------------------------------------------------------------------------------------


def test_requests_arriving_together_are_scored_in_one_batch(gate: GateScorer) -> None:
    with _server(gate, max_batch=32, batch_window_ms=5) as srv:
        gate.gate.clear()
        t0, first = _in_thread(
            lambda: _post(srv.url, "/v1/score", json={"context": CTX, "actions": ["x"]})
        )
        _wait_for(lambda: _metrics(srv.url)["in_model"] == 1, "the first request in the model")
        t, out = _in_thread(lambda: asyncio.run(_score_many(srv.url, 20)))
        _wait_for(lambda: _metrics(srv.url)["queued"] == 20, "20 queued requests")
        gate.gate.set()
        t.join(60)
        t0.join(60)
        resps = out[0]
        assert [r.status_code for r in resps] == [200] * 20
        for i, r in enumerate(resps):
            assert r.json() == {
                "scores": [gate.value(ctx(i), "open[A]"), gate.value(ctx(i), f"a{i}")]
            }
        assert first[0].json() == {"scores": [gate.value(CTX, "x")]}
        assert gate.batches == [1, 20]
        assert gate.threads == {"agentq-scorer_0"}  # the model ran on its one worker thread
        m = _metrics(srv.url)
        assert m["batch_size"]["histogram"] == {"1": 1, "20": 1} and m["batch_size"]["max"] == 20
        assert m["requests"] == 21 and m["statuses"] == {"200": 21}
        assert m["latency_ms"]["count"] == 21
        assert m["latency_ms"]["p50"] <= m["latency_ms"]["p90"] <= m["latency_ms"]["p99"]


async def _batches_formed(regroup: float, pipelined: bool) -> list[int]:
    """The batch sizes the batcher forms, with a 0 ms window, for agents whose next steps
    come back 50 ms apart. Three agents answered in one batch (held in the model 0.5 s), or
    (``pipelined``) one agent answered alone while three others waited for the model."""
    gate = GateScorer()
    batcher = Batcher(gate, ServerConfig(batch_window_ms=0, batch_regroup=regroup), ServerMetrics())
    gate.gate.clear()
    if pipelined:
        answered = [batcher.submit(ctx(0), ["a"])]
        await asyncio.sleep(0.05)  # in the model
        waiting = [batcher.submit(ctx(i), ["a"]) for i in (1, 2, 3)]
    else:
        answered, waiting = [batcher.submit(ctx(i), ["a"]) for i in range(3)], []
    await asyncio.sleep(0.5)
    gate.gate.set()
    await asyncio.gather(*answered)
    for i in range(len(answered)):
        await asyncio.sleep(0.05)
        waiting.append(batcher.submit(ctx(i), ["b"]))
    await asyncio.gather(*waiting)
    await batcher.drain()
    return gate.batches


async def test_agents_answered_together_are_regrouped() -> None:
    """Waiting up to a fraction of the last batch's time (here all of it) for the agents it
    answered keeps them together, and joins them to those already waiting; without it they
    split, and an agent ahead of the others stays ahead."""
    assert await _batches_formed(regroup=1.0, pipelined=False) == [3, 3]
    assert await _batches_formed(regroup=0.0, pipelined=False) == [3, 1, 1, 1]
    assert await _batches_formed(regroup=1.0, pipelined=True) == [1, 4]
    assert await _batches_formed(regroup=0.0, pipelined=True) == [1, 3, 1]
    with pytest.raises(UserInputError, match="batch_regroup"):
        ServerConfig(batch_regroup=1.5)


def test_batching_off_scores_one_request_at_a_time(gate: GateScorer) -> None:
    with _server(gate, max_batch=1, batch_window_ms=0) as srv:
        gate.gate.clear()
        t, out = _in_thread(lambda: asyncio.run(_score_many(srv.url, 8)))
        _wait_for(lambda: _metrics(srv.url)["queued"] == 7, "7 queued requests")
        gate.gate.set()
        t.join(60)
        assert all(r.status_code == 200 for r in out[0])
        assert gate.batches == [1] * 8


def test_full_queue_answers_503_and_the_client_retries(gate: GateScorer) -> None:
    with _server(gate, max_batch=2, max_queue=2) as srv:
        gate.gate.clear()
        t0, _ = _in_thread(
            lambda: _post(srv.url, "/v1/score", json={"context": CTX, "actions": ["x"]})
        )
        _wait_for(lambda: _metrics(srv.url)["in_model"] == 1, "the first request in the model")
        t, _ = _in_thread(lambda: asyncio.run(_score_many(srv.url, 2)))
        _wait_for(lambda: _metrics(srv.url)["queued"] == 2, "a full queue")
        r = _post(srv.url, "/v1/score", json={"context": CTX, "actions": ["x"]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "queue is full" in r.json()["error"]["message"]
        with pytest.raises(RemoteUnavailableError) as ei:
            RemoteScorer(srv.url, max_retries=0).score(CTX, ["x"])
        assert ei.value.status_code == 503
        # a patient client: retried until the queue drains
        patient = RemoteScorer(srv.url, max_retries=8, backoff_base=0.05)
        t2, out2 = _in_thread(lambda: patient.score(CTX, ["open[B]"]))
        _wait_for(lambda: _metrics(srv.url)["rejected_queue_full"] >= 3, "a rejected retry")
        gate.gate.set()
        t.join(60)
        t0.join(60)
        t2.join(60)
        assert out2 == [[gate.value(CTX, "open[B]")]]
        assert patient.http.stats["retries"] >= 1


def test_limits_and_malformed_requests(gate: GateScorer) -> None:
    with _server(
        gate, max_actions=4, max_context_tokens=50, max_body_bytes=20_000, max_items=3
    ) as srv:

        def post(path: str = "/v1/score", **kw: Any) -> tuple[int, str]:
            r = _post(srv.url, path, **kw)
            return r.status_code, r.json()["error"]["message"] if r.status_code != 200 else ""

        assert post(json={"context": CTX, "actions": ["a"] * 5}) == (
            413,
            "5 actions is over the limit of 4",
        )
        code, msg = post(
            json={"context": [{"role": "user", "content": "w " * 200}], "actions": ["a"]}
        )
        assert code == 413 and "context of" in msg and "over the limit of 50" in msg
        code, msg = post(
            content=b"{" + b" " * 30_000 + b"}", headers={"content-type": "application/json"}
        )
        assert code == 413 and "over the limit of 20000" in msg
        code, msg = post(content=b"{not json", headers={"content-type": "application/json"})
        assert code == 422 and "not valid JSON" in msg
        assert post(json={"context": CTX})[0] == 422
        assert post(json=[1, 2])[0] == 422
        assert post(json={"context": "hello", "actions": ["a"]})[0] == 422
        assert post(json={"context": [{"content": "no role"}], "actions": ["a"]})[0] == 422
        assert post(json={"context": CTX, "actions": [1, 2]})[0] == 422
        assert (
            post("/v1/score_batch", json={"items": [{"context": CTX, "actions": ["a"]}] * 4})[0]
            == 413
        )
        assert post("/v1/score_batch", json={"nope": []})[0] == 422
        # an action the model cannot score: 422 for that request only
        assert post(json={"context": CTX, "actions": ["BAD"]})[0] == 422
        r = _post(srv.url, "/v1/score", json={"context": CTX, "actions": []})
        assert r.status_code == 200 and r.json() == {"scores": []}
        m = _metrics(srv.url)
        assert m["statuses"]["413"] == 4 and m["statuses"]["422"] == 8 and m["statuses"]["200"] == 1


def test_a_bad_item_does_not_fail_its_batch_neighbours(gate: GateScorer) -> None:
    with _server(gate, max_batch=8, batch_window_ms=5) as srv:
        gate.gate.clear()
        t0, _ = _in_thread(
            lambda: _post(srv.url, "/v1/score", json={"context": CTX, "actions": ["x"]})
        )
        _wait_for(lambda: _metrics(srv.url)["in_model"] == 1, "the first request in the model")

        async def mixed() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as c:
                acts = [["open[A]"], ["BAD"], ["open[C]"]]
                return await asyncio.gather(
                    *(
                        c.post(srv.url + "/v1/score", json={"context": CTX, "actions": a})
                        for a in acts
                    )
                )

        t, out = _in_thread(lambda: asyncio.run(mixed()))
        _wait_for(lambda: _metrics(srv.url)["queued"] == 3, "3 queued requests")
        gate.gate.set()
        t.join(60)
        t0.join(60)
        assert [r.status_code for r in out[0]] == [200, 422, 200]
        assert out[0][2].json() == {"scores": [gate.value(CTX, "open[C]")]}
        assert gate.batches[:2] == [1, 3]  # batched together, then isolated


def test_bearer_token(gate: GateScorer) -> None:
    with _server(gate, token="s3cret") as srv:
        body = {"context": CTX, "actions": ["a"]}
        assert _post(srv.url, "/v1/score", json=body).status_code == 401
        r = _post(srv.url, "/v1/score", json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        ok = _post(srv.url, "/v1/score", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert _get(srv.url, "/health").status_code == 200
        assert _get(srv.url, "/metrics").status_code == 401
        assert (
            _get(srv.url, "/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        )
        assert RemoteScorer(srv.url, token="s3cret").score(CTX, ["a"]) == [gate.value(CTX, "a")]
        with pytest.raises(RemoteRequestError) as ei:
            RemoteScorer(srv.url, token="nope").score(CTX, ["a"])
        assert ei.value.status_code == 401 and isinstance(ei.value, RemoteError)


async def test_remote_scorer_async_batch_and_spec(gate: GateScorer) -> None:
    with _server(gate) as srv:
        s = resolve_scorer(f"remote:{srv.url}/v1", seed=0)
        assert isinstance(s, RemoteScorer) and s.url == srv.url
        items = [(ctx(i), [f"open[{c}]" for c in "ABC"[: i % 4]]) for i in range(7)]
        want = [[gate.value(c, a) for a in acts] for c, acts in items]
        assert await s.ascore_batch(items) == want
        s.max_items = 2  # several /v1/score_batch requests
        assert await s.ascore_batch(items) == want
        assert s.score_batch(items) == want  # sync twin, even inside a running loop
        got = await asyncio.gather(*(s.ascore(c, a) for c, a in items))
        assert list(got) == want
        assert (await s.ahealth())["status"] == "ok"
        assert (await s.ametrics())["items_scored"] >= 3 * 5
        with pytest.raises(RemoteRequestError) as ei:
            await s.ascore(CTX, ["a"] * 100)
        assert ei.value.status_code == 413
        await s.aclose()
    with pytest.raises(UserInputError):
        remote_scorer_from_spec(srv.url, flavour="x")
    with pytest.raises(UserInputError):
        remote_scorer_from_spec("localhost:8000")


def test_graceful_shutdown_finishes_queued_requests(gate: GateScorer) -> None:
    srv = _server(gate, max_batch=4, batch_window_ms=1)
    gate.gate.clear()
    t, out = _in_thread(lambda: asyncio.run(_score_many(srv.url, 10)))
    _wait_for(
        lambda: _metrics(srv.url)["queued"] + _metrics(srv.url)["in_model"] >= 10, "10 requests"
    )
    stopper = threading.Thread(target=srv.stop, daemon=True)
    stopper.start()
    _wait_for(lambda: _refused(srv.port), "the listener to close")
    gate.gate.set()
    t.join(60)
    stopper.join(60)
    assert not stopper.is_alive()
    assert [r.status_code for r in out[0]] == [200] * 10
    assert sum(gate.batches) == 10


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_server_config_is_checked() -> None:
    with pytest.raises(UserInputError):
        ServerConfig(max_batch=0)
    with pytest.raises(TypeError):
        create_app(GateScorer(), max_bacth=3)


def test_serve_flags_are_the_serve_config_fields(tmp_path: Path) -> None:
    """``agentq serve``'s flags, defaults and help come from ServeConfig; a bad value from the
    command line or a --config file is one error line and exit code 2."""
    import typer
    from agentq.integrations.server_cli import ServeConfig
    from typer.testing import CliRunner

    from agentq.cli import app
    from agentq.config import from_options, options

    params = {p.name: p for p in typer.main.get_command(app).commands["serve"].params}
    opts = [o for o in options(ServeConfig) if o.cli]
    assert set(params) == {o.name for o in opts} | {"config"}
    for o in opts:
        assert params[o.name].help == o.help and params[o.name].default == o.default, o.name
    assert params["token"].envvar == "AGENTQ_SERVE_TOKEN" and params["port"].default == 8000
    for bad, what in (
        ({"port": 70000}, "--port"),
        ({"max_context_tokens": -1}, "--max-context-tokens"),
        ({"max_queue": 0}, "max_queue"),
        ({"cache_bytes": "lots"}, "--cache-bytes"),
    ):
        with pytest.raises(UserInputError, match=what):
            from_options(ServeConfig, bad)
    assert ServeConfig(no_batching=True).server_config().max_batch == 1
    cfg = tmp_path / "s.toml"
    cfg.write_text("idle_timeout = -1.0\n")
    r = CliRunner().invoke(app, ["serve", "--scorer", "random", "--config", str(cfg)])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and "idle_timeout" in lines[0], r.output


# ----------------------------------------------------------------------------------------
# `agentq serve` as a subprocess with a tiny Q-model
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_qmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from agentq.models.tiny import save_tiny_model, save_tiny_qmodel

    root = tmp_path_factory.mktemp("serve")
    base = save_tiny_model(root / "base")
    return save_tiny_qmodel(root / "q", base, beta=0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_serve(qdir: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", AGENTQ_SERVE_TOKEN="")
    cmd = [sys.executable, "-m", "agentq", "serve", "--qmodel", str(qdir), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--log-level", "warning", *args], env=env, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise AssertionError(
                f"agentq serve exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("agentq serve did not come up")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served(tiny_qmodel: Path) -> Any:
    # One server process for all the subprocess tests (torch's import is the slow part); a
    # 1 s batch window lets the last test catch requests queued when SIGTERM arrives.
    proc, url = _start_serve(
        tiny_qmodel,
        *("--max-actions", "8", "--max-context-tokens", "300"),
        *("--batch-window-ms", "1000", "--max-batch", "64"),
    )
    yield proc, url
    if proc.poll() is None:
        proc.terminate()
        proc.wait(60)


def _flat(x: list[list[float]]) -> list[float]:
    return [v for row in x for v in row]


async def test_serve_scores_equal_local_scoring(served: Any, tiny_qmodel: Path) -> None:
    from agentq.models.scorer import QValueScorer

    local = QValueScorer.from_pretrained(str(tiny_qmodel), device="cpu")
    remote = RemoteScorer(served[1])
    items = [(ctx(i), ["open[A]", f"I pick open[{'BC'[i % 2]}]", "x" * (i + 1)]) for i in range(4)]
    want = local.score_batch(items)
    got = await remote.ascore_batch(items)
    assert _flat(got) == pytest.approx(_flat(want), abs=1e-5)
    singles = await asyncio.gather(*(remote.ascore(c, a) for c, a in items))
    assert _flat(list(singles)) == pytest.approx(_flat(want), abs=1e-5)
    assert len({round(v, 6) for v in want[0]}) == 3
    await remote.aclose()


def test_serve_status_codes(served: Any) -> None:
    url = served[1]
    ok = {"context": CTX, "actions": ["open[A]"]}
    assert _post(url, "/v1/score", json=ok).status_code == 200
    r = _post(url, "/v1/score", json={"context": CTX, "actions": ["a"] * 9})
    assert r.status_code == 413 and "over the limit of 8" in r.json()["error"]["message"]
    long_ctx = [{"role": "user", "content": "z" * 400}]
    r = _post(url, "/v1/score", json={"context": long_ctx, "actions": ["a"]})
    assert r.status_code == 413 and "tokens" in r.json()["error"]["message"]
    bad = _post(url, "/v1/score", content=b"[", headers={"content-type": "application/json"})
    assert bad.status_code == 422
    assert _post(url, "/v1/score", json={"actions": ["a"]}).status_code == 422
    assert _get(url, "/v1/nothing").status_code == 404
    assert _get(url, "/health").json()["status"] == "ok"


def test_serve_answers_200_concurrent_requests(served: Any) -> None:
    url = served[1]
    resps = asyncio.run(_score_many(url, 200))
    assert [r.status_code for r in resps] == [200] * 200
    assert all(len(r.json()["scores"]) == 2 for r in resps)
    m = _metrics(url)
    assert m["batch_size"]["max"] > 1  # they were batched
    assert m["statuses"]["200"] >= 200


def test_serve_sigterm_finishes_in_flight_work(served: Any) -> None:
    # Keep this test last: it stops the module's server.
    proc, url = served
    items = [{"context": ctx(i), "actions": ["open[A]", "open[B]"]} for i in range(40)]
    with httpx.Client(timeout=10) as poll:
        for _ in range(5):  # the 1 s window may close before we look: then try again
            t, out = _in_thread(lambda: _post(url, "/v1/score_batch", json={"items": items}))
            while t.is_alive() and poll.get(url + "/metrics").json()["queued"] < 40:
                time.sleep(0.01)
            if t.is_alive():
                break
            t.join()
        else:
            raise AssertionError("never saw the 40 items queued")
        proc.send_signal(signal.SIGTERM)  # while 40 items are queued
        t.join(120)
    # uvicorn re-raises the signal after its graceful shutdown: the exit is "killed by SIGTERM"
    assert proc.wait(60) in (0, -signal.SIGTERM)
    assert out[0].status_code == 200
    assert [len(s) for s in out[0].json()["scores"]] == [2] * 40
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=2)
