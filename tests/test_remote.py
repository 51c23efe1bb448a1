"""The OpenAI-compatible client against a real stand-in server on 127.0.0.1 that injects faults.

The stand-in is a FastAPI app served by uvicorn in a thread on a free loopback port. Its
``/v1/chat/completions`` answers deterministic candidates (with or without ``n`` support and
log-probs); its ``/v1/completions`` computes real prompt log-probs with a tiny base model and a
tiny LoRA Q-model, the way vLLM does. A fault script injects latency, 429s, 500s, dropped
connections and malformed bodies, one fault per request.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections import deque
from typing import Any

import pytest
from agentq.integrations.openai_compat import (
    AsyncHTTPClient,
    OpenAIProposer,
    RemoteRequestError,
    RemoteUnavailableError,
    RetryPolicy,
    VLLMQValueScorer,
    parse_openai_spec,
    proposer_from_spec,
    vllm_scorer_from_spec,
)
from agentq.integrations.server import BackgroundServer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from agentq.errors import RemoteError, UserInputError
from agentq.specs import resolve_policy

ACTIONS = ["open[A]", "open[B]", "open[C]", "open[D]", "open[E]", "open[F]", "open[G]"]
CTX = [
    {"role": "system", "content": "Open doors."},
    {"role": "user", "content": "Task toy-train-3. You are in room 1 of 3. Doors: A, B, C."},
]


class _DropResponse(Response):
    """Starts a response, sends part of the body, then fails: uvicorn drops the connection."""

    def __init__(self) -> None:
        super().__init__(content=b"", status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"choices": [', "more_body": True})
        raise ConnectionAbortedError("stand-in drops the connection")


class StandIn:
    """State of the stand-in server: fault script, request log, behaviour switches."""

    def __init__(self) -> None:
        self.reset()
        self.lms: dict[str, Any] = {}

    def reset(self) -> None:
        self.faults: deque[str] = deque()
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.support_n = True
        self.reject_n = False
        self.reject_logprobs = False
        self.models = ["policy"]
        self.in_flight = 0
        self.max_in_flight = 0
        self.usage = True
        self.give_logprobs = True

    async def fault(self) -> Response | None:
        """Apply the next scripted fault; None means answer normally."""
        f = self.faults.popleft() if self.faults else "ok"
        if f.startswith("slow:"):
            await asyncio.sleep(float(f[5:]))
            return None
        if f == "429":
            return JSONResponse({"error": {"message": "rate limited"}}, 429, {"Retry-After": "0"})
        if f in ("500", "502", "503"):
            return JSONResponse({"error": {"message": f"injected {f}"}}, int(f))
        if f == "drop":
            return _DropResponse()
        if f == "malformed":
            return Response(b'{"choices": [{"message": ', 200, media_type="application/json")
        if f == "badshape":
            return JSONResponse({"choices": []})
        if f == "404":
            return JSONResponse(
                {"error": {"message": "The model `nope` does not exist.", "code": 404}}, 404
            )
        if f == "400-context":
            msg = "This model's maximum context length is 2048 tokens. However, you requested 9000."
            return JSONResponse({"error": {"message": msg}}, 400)
        return None


def _make_app(st: StandIn) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> Any:
        return {"object": "list", "data": [{"id": m, "object": "model"} for m in st.models]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        st.log.append(("chat", body))
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            bad = await st.fault()
        finally:
            st.in_flight -= 1
        if bad is not None:
            return bad
        if body.get("model") not in st.models:
            return JSONResponse(
                {"error": {"message": f"model {body.get('model')!r} not found"}}, 404
            )
        n = int(body.get("n", 1))
        if st.reject_n and n > 1:
            return JSONResponse({"error": {"message": "n > 1 is not supported"}}, 400)
        if st.reject_logprobs and body.get("logprobs"):
            return JSONResponse({"error": {"message": "logprobs are not supported"}}, 400)
        rng = random.Random(body.get("seed", 0))
        k = n if st.support_n else 1
        choices = []
        for i in range(k):
            text = f"I will open a door. {rng.choice(ACTIONS)}"
            choice: dict[str, Any] = {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
            if body.get("logprobs") and st.give_logprobs:
                toks = text.split(" ")
                choice["logprobs"] = {
                    "content": [{"token": t, "logprob": -0.5 * (j + 1)} for j, t in enumerate(toks)]
                }
            choices.append(choice)
        if st.support_n:
            choices.reverse()  # the client must order by index
        usage = {"prompt_tokens": 20, "completion_tokens": 6 * k, "total_tokens": 20 + 6 * k}
        return {
            "id": "x",
            "object": "chat.completion",
            "model": body["model"],
            "choices": choices,
            **({"usage": usage} if st.usage else {}),
        }

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        st.log.append(("completions", body))
        bad = await st.fault()
        if bad is not None:
            return bad
        lm = st.lms.get(body.get("model"))
        if lm is None:
            return JSONResponse(
                {"error": {"message": f"model {body.get('model')!r} not found"}}, 404
            )
        prompts = body["prompt"]
        if prompts and isinstance(prompts[0], int):
            prompts = [prompts]
        if not body.get("echo") or not all(isinstance(p, list) for p in prompts):
            return JSONResponse({"error": {"message": "stand-in wants echo and token ids"}}, 400)
        choices = []
        for i, ids in enumerate(prompts):
            lps = _prompt_logprobs(lm, ids)
            choice: dict[str, Any] = {"index": i, "text": "", "finish_reason": "length"}
            if "prompt_logprobs" in body:
                choice["prompt_logprobs"] = [None] + [
                    {str(t): {"logprob": lp, "rank": 1, "decoded_token": "?"}}
                    for t, lp in zip(ids[1:], lps, strict=True)
                ]
            else:
                choice["logprobs"] = {"token_logprobs": [None, *lps], "tokens": ["?"] * len(ids)}
            choices.append(choice)
        return {"id": "c", "object": "text_completion", "model": body["model"], "choices": choices}

    return app


def _prompt_logprobs(model: Any, ids: list[int]) -> list[float]:
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [float(logp[j - 1, ids[j]]) for j in range(1, len(ids))]


@pytest.fixture(scope="module")
def standin() -> Any:
    st = StandIn()
    with BackgroundServer(_make_app(st), log_level="critical") as srv:
        st.url = srv.url + "/v1"  # type: ignore[attr-defined]
        yield st


@pytest.fixture
def st(standin: StandIn) -> StandIn:
    standin.reset()
    return standin


def _proposer(st: Any, **kw: Any) -> OpenAIProposer:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("seed", 7)
    return OpenAIProposer(st.url, "policy", **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------
# proposer
# ----------------------------------------------------------------------------------------


async def test_chat_with_n_and_logprobs(st: StandIn) -> None:
    p = _proposer(st, temperature=0.7, top_p=0.9, max_tokens=32, stop=["\n\n"])
    cands = await p.apropose(CTX, 4)
    assert len(cands) == 4
    assert all(c.text.startswith("I will open a door. open[") for c in cands)
    assert all(c.logprob is not None and c.logprob < 0 and c.tokens == 6 for c in cands)
    assert len(st.log) == 1
    body = st.log[0][1]
    assert body["n"] == 4 and body["temperature"] == 0.7 and body["top_p"] == 0.9
    assert body["max_tokens"] == 32 and body["stop"] == ["\n\n"] and body["logprobs"] is True
    assert body["messages"] == CTX


async def test_choices_are_ordered_by_index(st: StandIn) -> None:
    p = _proposer(st)
    got = [c.text for c in await p.apropose(CTX, 3)]
    rng = random.Random(st.log[0][1]["seed"])
    assert got == [f"I will open a door. {rng.choice(ACTIONS)}" for _ in range(3)]


async def test_fallback_to_parallel_requests_when_n_is_ignored(st: StandIn) -> None:
    st.support_n = False
    p = _proposer(st)
    cands = await p.apropose(CTX, 5)
    assert len(cands) == 5
    assert [b["n"] for _, b in st.log] == [5, 1, 1, 1, 1]
    seeds = {b["seed"] for _, b in st.log[1:]}
    assert len(seeds) == 4  # parallel requests get distinct seeds
    st.log.clear()
    assert len(await p.apropose(CTX, 3)) == 3
    assert [b["n"] for _, b in st.log] == [1, 1, 1]  # remembered: no more n


async def test_fallback_when_n_is_refused(st: StandIn) -> None:
    st.reject_n = True
    p = _proposer(st)
    assert len(await p.apropose(CTX, 3)) == 3
    assert [b["n"] for _, b in st.log][0] == 3
    assert all(b["n"] == 1 for _, b in st.log[1:])


async def test_seeds_in_a_task_scope_depend_only_on_seed_and_task(st: StandIn) -> None:
    from agentq.seeding import task_scope

    async def seeds(p: OpenAIProposer, tasks: list[str]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for t in tasks:
            with task_scope(11, t):
                start = len(st.log)
                await p.apropose(CTX, 2)
                await p.apropose(CTX, 2)  # the same request again draws anew
                out[t] = [b["seed"] for _, b in st.log[start:]]
        return out

    a = await seeds(_proposer(st), ["t1", "t2"])
    p = _proposer(st)
    await p.apropose(CTX, 2)  # calls outside the scope (another method) change nothing
    b = await seeds(p, ["t2", "t1"])
    assert a == b and a["t1"] != a["t2"] and len(set(a["t1"])) == 2
    # outside a task scope: seed plus the call count, restarted by reseed
    p.reseed(5)
    first = [await p.apropose(CTX, 1), await p.apropose(CTX, 1)]
    p.reseed(5)
    assert [await p.apropose(CTX, 1), await p.apropose(CTX, 1)] == first
    assert _proposer(st, seed=None)._request_seed(CTX, 2) is None  # unseeded stays unseeded


async def test_logprobs_refused_then_proposes_without(st: StandIn) -> None:
    st.reject_logprobs = True
    p = _proposer(st)
    cands = await p.apropose(CTX, 2)
    assert len(cands) == 2 and all(c.logprob is None for c in cands)
    assert "logprobs" not in st.log[-1][1]


async def test_tokens_come_from_usage_without_logprobs(st: StandIn) -> None:
    # transformers serve ignores logprobs but returns usage.completion_tokens: the eval's
    # tokens column must not be 0 for a remote policy
    p = _proposer(st, logprobs=False)
    cands = await p.apropose(CTX, 3)
    assert [c.tokens for c in cands] == [6, 6, 6] and all(c.logprob is None for c in cands)
    st.log.clear()
    st.support_n = False  # one choice per request: each gets its request's count
    cands = await p.apropose(CTX, 3)
    assert [c.tokens for c in cands] == [6, 6, 6]


def test_usage_split_keeps_the_total() -> None:
    from agentq.integrations.openai_compat import _with_usage

    from agentq.types import Candidate

    got = _with_usage([Candidate("a"), Candidate("b", tokens=4), Candidate("c")], {
        "completion_tokens": 11
    })  # fmt: skip
    assert [c.tokens for c in got] == [4, 4, 3]
    assert [c.tokens for c in _with_usage([Candidate("a")], None)] == [None]
    assert [c.tokens for c in _with_usage([Candidate("a")], {"completion_tokens": "x"})] == [None]


async def test_retries_recover_from_every_fault(st: StandIn) -> None:
    st.faults.extend(["429", "500", "drop", "malformed", "badshape", "503"])
    p = _proposer(st, max_retries=6)
    cands = await p.apropose(CTX, 2)
    assert len(cands) == 2
    assert len(st.log) == 7
    assert p.http.stats["retries"] == 6


async def test_latency_within_timeout_then_timeout_retried(st: StandIn) -> None:
    st.faults.extend(["slow:0.05", "slow:3", "ok"])
    p = _proposer(st, timeout=1.0)
    assert len(await p.apropose(CTX, 1)) == 1  # slow but in time
    assert len(await p.apropose(CTX, 1)) == 1  # timed out once, then answered
    assert p.http.stats["retries"] == 1


async def test_typed_error_after_last_retry(st: StandIn) -> None:
    st.faults.extend(["500"] * 10)
    p = _proposer(st, max_retries=2)
    with pytest.raises(RemoteUnavailableError) as ei:
        await p.apropose(CTX, 2)
    assert isinstance(ei.value, RemoteError)
    assert ei.value.status_code == 500
    assert "after 3 attempt(s)" in str(ei.value) and "injected 500" in str(ei.value)
    assert len(st.log) == 3


async def test_dropped_connections_until_the_end(st: StandIn) -> None:
    st.faults.extend(["drop"] * 5)
    p = _proposer(st, max_retries=1)
    with pytest.raises(RemoteUnavailableError) as ei:
        await p.apropose(CTX, 1)
    assert ei.value.status_code is None
    assert "RemoteProtocolError" in str(ei.value) or "ReadError" in str(ei.value)


async def test_4xx_is_not_retried_and_says_why(st: StandIn) -> None:
    p = OpenAIProposer(st.url, "nope", backoff_base=0.01)
    with pytest.raises(RemoteRequestError) as ei:
        await p.apropose(CTX, 2)
    assert ei.value.status_code == 404
    assert "not found" in str(ei.value) and "GET /v1/models" in str(ei.value)
    assert len(st.log) == 1
    st.faults.append("400-context")
    with pytest.raises(RemoteRequestError, match="maximum context length"):
        await _proposer(st).apropose(CTX, 1)


async def test_connection_refused_raises_typed_error() -> None:
    p = OpenAIProposer(f"http://127.0.0.1:{_free_port()}/v1", "m", max_retries=2, backoff_base=0.01)
    with pytest.raises(RemoteUnavailableError, match="ConnectError"):
        await p.apropose(CTX, 1)
    assert p.http.stats["attempts"] == 3


async def test_bounded_concurrency(st: StandIn) -> None:
    st.faults.extend(["slow:0.2"] * 6)
    p = _proposer(st, concurrency=2, n_mode="parallel")
    assert len(await p.apropose(CTX, 6)) == 6
    assert len(st.log) == 6
    assert st.max_in_flight == 2


def test_sync_twin_and_shared_pool(st: StandIn) -> None:
    p = _proposer(st)
    a = p.propose(CTX, 2)
    b = p.propose(CTX, 2)
    assert len(a) == 2 and len(b) == 2
    assert len(p.http._states) == 1  # both sync calls used the background loop's one pool
    p.close()


async def test_sync_twin_inside_a_running_loop(st: StandIn) -> None:
    p = _proposer(st)
    assert len(p.propose(CTX, 2)) == 2
    p.close()


async def test_model_from_server_list_and_spec(st: StandIn) -> None:
    p = resolve_policy(f"openai:{st.url}", seed=3)
    assert isinstance(p, OpenAIProposer) and p.model is None
    assert len(await p.apropose(CTX, 1)) == 1
    assert p.model == "policy" and p.spec == f"openai:{st.url}"
    q = proposer_from_spec(st.url.removesuffix("/v1") + "#policy", max_new_tokens=9, device="cpu")
    assert q.base_url == st.url and q.model == "policy" and q.max_tokens == 9
    assert parse_openai_spec("http://h:1/v1#m") == ("http://h:1/v1", "m")
    with pytest.raises(UserInputError):
        proposer_from_spec("localhost:8000#m")
    with pytest.raises(UserInputError, match="unknown option"):
        proposer_from_spec(st.url + "#policy", beam_width=3)


def test_retry_policy_delays() -> None:
    rng = random.Random(0)
    pol = RetryPolicy(backoff_base=0.5, backoff_max=2.0, jitter=1.0)
    for k in range(6):
        d = pol.delay(k, rng)
        assert 0.0 <= d <= min(2.0, 0.5 * 2**k)
    assert RetryPolicy(jitter=0.0, backoff_base=0.5).delay(2, rng) == 2.0
    assert RetryPolicy(backoff_base=0.01).delay(0, rng, retry_after=3.0) == 3.0
    assert RetryPolicy(backoff_base=0.01, retry_after_max=1.0).delay(0, rng, 30.0) == 1.0
    with pytest.raises(ValueError):
        RetryPolicy(jitter=2.0)


async def test_http_client_honours_retry_after_zero(st: StandIn) -> None:
    st.faults.extend(["429", "429"])
    c = AsyncHTTPClient(st.url, retry=RetryPolicy(max_retries=2, backoff_base=0.0))
    data = await c.get("/models")
    assert data["data"][0]["id"] == "policy"
    await c.aclose()


# ----------------------------------------------------------------------------------------
# Q-value scorer through /v1/completions with prompt log-probs
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qmodel(standin: StandIn, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from peft import PeftModel

    from agentq.models.loading import load_causal_lm
    from agentq.models.tiny import save_tiny_model, save_tiny_qmodel

    root = tmp_path_factory.mktemp("vllm")
    base_dir = save_tiny_model(root / "base")
    q_dir = save_tiny_qmodel(root / "q", base_dir, beta=0.5)
    base, tok = load_causal_lm(str(base_dir), device="cpu", dtype="float32")
    other, _ = load_causal_lm(str(base_dir), device="cpu", dtype="float32")
    adapter = PeftModel.from_pretrained(other, str(q_dir)).eval()
    standin.lms = {"base": base.eval(), "qmodel": adapter}
    return {"base_dir": base_dir, "q_dir": q_dir, "tok": tok, "base": base, "adapter": adapter}


def _local_q(qm: dict[str, Any], context: Any, action: str, beta: float) -> float:
    from agentq.render import tokenize_for_scoring

    p, a = tokenize_for_scoring(qm["tok"], context, action)
    ids = p + a
    lb = _prompt_logprobs(qm["base"], ids)[len(p) - 1 :]
    la = _prompt_logprobs(qm["adapter"], ids)[len(p) - 1 :]
    return beta * sum(x - y for x, y in zip(la, lb, strict=True))


async def test_vllm_scorer_matches_local_q_values(st: StandIn, qmodel: dict[str, Any]) -> None:
    s = VLLMQValueScorer(
        st.url, "qmodel", "base", tokenizer=qmodel["tok"], beta=0.5, backoff_base=0.01
    )
    ctx2 = [
        *CTX,
        {"role": "assistant", "content": "open[B]"},
        {"role": "user", "content": "Room 2."},
    ]
    items = [(CTX, ["open[A]", "open[B]", "I think open[C]"]), (ctx2, ["open[A]"]), (CTX, [])]
    got = await s.ascore_batch(items)
    want = [[_local_q(qmodel, c, a, 0.5) for a in acts] for c, acts in items]
    assert [len(g) for g in got] == [3, 1, 0]
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-4)
    assert len({round(x, 6) for x in got[0]}) == 3  # the adapter really changes the scores
    from agentq.models.scorer import QValueScorer  # agentq's own prefix-shared scorer agrees

    local = QValueScorer.from_pretrained(str(qmodel["q_dir"]), device="cpu").score_batch(items)
    assert [v for row in got for v in row] == pytest.approx([v for r in local for v in r], abs=1e-4)
    bodies = [b for kind, b in st.log if kind == "completions"]
    assert len(bodies) == 2  # one request per model for the whole batch
    assert all(b["echo"] is True and b["prompt_logprobs"] == 0 for b in bodies)
    assert all(isinstance(b["prompt"][0][0], int) for b in bodies)  # token ids, not text
    # the sync twin and the echo answer format
    s2 = VLLMQValueScorer(
        st.url, "qmodel", "base", tokenizer=qmodel["tok"], beta=0.5, logprob_format="echo"
    )
    assert s2.score(CTX, ["open[A]"]) == pytest.approx(want[0][:1], abs=1e-4)
    s2.close()


async def test_vllm_scorer_recovers_and_uses_qmodel_dir(
    st: StandIn, qmodel: dict[str, Any]
) -> None:
    from agentq.models.qmodel import read_qmodel_config

    st.faults.extend(["malformed", "503", "drop"])
    s = vllm_scorer_from_spec(
        st.url + "#qmodel", qmodel_dir=qmodel["q_dir"], base_model="base", backoff_base=0.01
    )
    assert s.beta == read_qmodel_config(qmodel["q_dir"])["beta"] == 0.5
    got = await s.ascore(CTX, ["open[C]", "open[A]"])
    assert got == pytest.approx(
        [_local_q(qmodel, CTX, a, 0.5) for a in ["open[C]", "open[A]"]], abs=1e-4
    )
    assert s.http.stats["retries"] == 3
    with pytest.raises(RemoteRequestError):
        await VLLMQValueScorer(st.url, "missing", "base", tokenizer=qmodel["tok"]).ascore(
            CTX, ["a"]
        )
    with pytest.raises(UserInputError):
        vllm_scorer_from_spec(st.url)


async def test_vllm_scorer_with_base_on_a_second_server(
    st: StandIn, qmodel: dict[str, Any]
) -> None:
    second = StandIn()
    second.lms = {"base-elsewhere": qmodel["base"]}
    with BackgroundServer(_make_app(second), log_level="critical") as srv2:
        s = VLLMQValueScorer(
            st.url, "qmodel", "base-elsewhere", tokenizer=qmodel["tok"], beta=0.5,
            base_url=srv2.url + "/v1",
        )  # fmt: skip
        got = await s.ascore(CTX, ["open[B]", "open[C]"])
        assert got == pytest.approx(
            [_local_q(qmodel, CTX, a, 0.5) for a in ["open[B]", "open[C]"]], abs=1e-4
        )
        assert [b["model"] for _, b in st.log] == ["qmodel"]
        assert [b["model"] for _, b in second.log] == ["base-elsewhere"]
        await s.aclose()


def test_prompt_logprobs_parsing_rejects_bad_shapes() -> None:
    from agentq.integrations.openai_compat import MalformedResponse, _prompt_logprobs

    ids = [5, 6, 7]
    ok = {
        "prompt_logprobs": [
            None,
            {"6": {"logprob": -1.0}},
            {"7": {"logprob": -2.0}, "9": {"logprob": -0.1}},
        ]
    }
    assert _prompt_logprobs(ok, ids) == [None, -1.0, -2.0]
    with pytest.raises(MalformedResponse):
        _prompt_logprobs({"prompt_logprobs": [None, {"8": {"logprob": -1.0}}, None]}, ids)
    with pytest.raises(MalformedResponse):
        _prompt_logprobs({"text": "x"}, ids)
    echo = {"logprobs": {"token_logprobs": [None, -1.5, -0.5, -3.0]}}
    assert _prompt_logprobs(echo, ids) == [None, -1.5, -0.5]


def test_eval_with_a_remote_policy_reports_tokens(st: StandIn, tmp_path: Any) -> None:
    import json

    from typer.testing import CliRunner

    from agentq.cli import app

    st.give_logprobs = False  # as transformers serve: no log-probs, but usage
    out = tmp_path / "rep"
    args = ["eval", "--env", "toy", "--split", "test", "--policy", f"openai:{st.url}#policy"]
    args += ["--scorer", "toy-oracle", "--n", "3", "--tasks", "2", "--out", str(out)]
    r = CliRunner().invoke(app, [*args, "--no-progress"])
    assert r.exit_code == 0, r.output
    methods = json.loads((out / "report.json").read_text())["methods"]
    assert methods and all(m["tokens"]["mean"] > 0 for m in methods.values()), methods
