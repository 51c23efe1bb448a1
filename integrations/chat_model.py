"""``LocalChatModel``: a LangChain chat model over a local transformers model (offline).

It runs any causal LM that :func:`agentq.models.loading.load_causal_lm` loads (``smollm2`` by
default, the embedded SmolLM2-135M-Instruct), supports ``bind_tools`` without native tool
calling, streams, and samples ``n`` candidates in one ``generate`` call::

    from agentq.integrations.chat_model import LocalChatModel

    llm = LocalChatModel(model="smollm2", temperature=0.8, max_new_tokens=64)
    agent_llm = llm.bind_tools([my_tool])
    msg = agent_llm.invoke("What is 2 + 2?")   # AIMessage, tool_calls parsed from the text

Tools are rendered into the system prompt, and the model is asked to call one by writing a line
in agentq's canonical tool-call text (:func:`agentq.render.render_tool_call`)::

    Tool call: {"name": "act", "arguments": {"action": "open[A]"}}

Such lines (and ``<tool_call>{...}</tool_call>`` blocks, and bare ``{"name": ..., "arguments":
...}`` lines naming a bound tool) become ``tool_calls``; the other lines are the message content.
A line that looks like a call but does not parse becomes an ``invalid_tool_call`` and stays in the
content. ``tool_choice="any"``/``"required"`` or a tool's name makes the model's reply start with
the call's fixed prefix (so even a tiny model calls a tool). Assistant turns with tool calls in the
history are rendered with :func:`agentq.render.render_action`; tool results as
``Observation: ...`` user turns (agentq's observation format).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from agentq.integrations.langgraph.messages import message_text, to_openai_messages
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, PrivateAttr

from agentq.render import TOOL_CALL_PREFIX

TOOL_BLOCK_OPEN = "<tool_call>"
TOOL_BLOCK_CLOSE = "</tool_call>"


# --------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------
def _type_name(schema: dict[str, Any]) -> str:
    t = schema.get("type")
    if isinstance(t, list):
        return "|".join(str(x) for x in t)
    if "enum" in schema:
        return "|".join(json.dumps(v) for v in schema["enum"])
    return str(t or "any")


def render_tools(tools: Sequence[dict[str, Any]]) -> str:
    """The system-prompt text that describes ``tools`` (OpenAI tool dicts) and the call format."""
    lines = ["You can call these tools:"]
    for t in tools:
        fn = t.get("function", t)
        props = (fn.get("parameters") or {}).get("properties") or {}
        args = ", ".join(f"{k}: {_type_name(v)}" for k, v in props.items())
        desc = (fn.get("description") or "").strip().splitlines()
        lines.append(f"- {fn.get('name')}({args})" + (f": {desc[0]}" if desc else ""))
    example: dict[str, Any] = (
        dict(tools[0].get("function", tools[0])) if tools else {"name": "tool"}
    )
    names = list((example.get("parameters") or {}).get("properties") or {})
    example_args = {p: "..." for p in names[:2]}
    lines.append(
        "To call a tool, reply with one line exactly like this: "
        + TOOL_CALL_PREFIX
        + json.dumps({"name": example.get("name"), "arguments": example_args}, ensure_ascii=False)
    )
    return "\n".join(lines)


def chat_messages(
    messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]] | None = None
) -> list[dict[str, str]]:
    """The plain ``{"role", "content"}`` chat the local model's template renders.

    The messages go through the one converter
    (:func:`~agentq.integrations.langgraph.messages.to_openai_messages`) with tool results as
    ``Observation: ...`` user turns and assistant turns as their canonical action text; the
    tool description (:func:`render_tools`) is appended to the first system message (or put
    in a new one).
    """
    chat = [
        {"role": str(m.get("role", "user")), "content": str(m.get("content", ""))}
        for m in to_openai_messages(messages, tool_results="observation")
    ]
    if tools:
        desc = render_tools(tools)
        if chat and chat[0]["role"] == "system":
            chat[0] = {"role": "system", "content": (chat[0]["content"] + "\n\n" + desc).strip()}
        else:
            chat.insert(0, {"role": "system", "content": desc})
    return chat


def forced_prefix(tools: Sequence[dict[str, Any]] | None, tool_choice: Any) -> str:
    """The text the reply must start with for ``tool_choice`` ("" when the model is free)."""
    if not tools or tool_choice in (None, "auto", "none", False):
        return ""
    names = [t.get("function", t).get("name") for t in tools]
    name = None
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    elif isinstance(tool_choice, str) and tool_choice not in ("any", "required"):
        name = tool_choice
    elif len(names) == 1:
        name = names[0]
    if name is None:
        return TOOL_CALL_PREFIX + '{"name": "'
    prefix = TOOL_CALL_PREFIX + json.dumps({"name": name})[:-1] + ', "arguments": {'
    params = next(
        (
            t.get("function", t).get("parameters") or {}
            for t in tools
            if t.get("function", t).get("name") == name
        ),
        {},
    )
    props = params.get("properties") or {}
    if len(props) == 1:  # one argument: name it too, and open its string
        ((arg, schema),) = props.items()
        prefix += json.dumps(arg) + ": " + ('"' if schema.get("type") == "string" else "")
    return prefix


# --------------------------------------------------------------------------------------------
# Output parsing (shared by generate and stream, so both give the same message)
# --------------------------------------------------------------------------------------------
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:")


def _load_object(s: str) -> dict[str, Any] | None:
    """The first JSON object in ``s``; also accepts bare keys and single quotes (small models)."""
    s = s.strip()
    start = s.find("{")
    if start < 0:
        return None
    s = s[start:]
    variants = [s, _BARE_KEY.sub(r'\1"\2":', s)]
    if '"' not in s:
        variants.append(_BARE_KEY.sub(r'\1"\2":', s.replace("'", '"')))
    for v in variants:
        for tail in ("", "}", "}}", '"}}', '"}', "]}}"):  # also repair a call cut off at its end
            try:
                obj, _ = json.JSONDecoder().raw_decode(v + tail)
            except json.JSONDecodeError:
                continue
            return obj if isinstance(obj, dict) else None
    return None


class OutputParser:
    """Incremental split of generated text into content and tool calls (line by line).

    ``feed(text)`` returns the content that is safe to stream now; ``finish()`` returns the
    remaining content plus the parsed ``tool_calls`` and ``invalid_tool_calls``. Concatenating
    every returned content piece gives the final message content.
    """

    def __init__(self, tool_names: Sequence[str] | None = None) -> None:
        self.tool_names = set(tool_names or [])
        self.buf = ""
        self.line_emitted = 0  # chars of the current (partial) line already emitted as content
        self.in_block: list[str] | None = None
        self.tool_calls: list[Any] = []
        self.invalid: list[Any] = []
        self.content = ""

    def _call_start(self, stripped: str) -> bool:
        low = stripped.lower()
        return low.startswith(TOOL_CALL_PREFIX.strip().lower()) or low.startswith(TOOL_BLOCK_OPEN)

    def _maybe_call_start(self, partial: str) -> bool:
        p = partial.lstrip().lower()
        if not p:
            return True
        for marker in (TOOL_CALL_PREFIX.strip().lower(), TOOL_BLOCK_OPEN):
            if marker.startswith(p) or p.startswith(marker):
                return True
        return p.startswith("{") and bool(self.tool_names)

    def _add_call(self, raw: str) -> bool:
        obj = _load_object(raw)
        name = obj.get("name") if obj else None
        args: Any = None
        if obj is not None:
            args = obj.get("arguments", obj.get("args", obj.get("parameters", {})))
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except json.JSONDecodeError:
                    args = None
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        if not isinstance(name, str) or not isinstance(args, dict):
            self.invalid.append(
                invalid_tool_call(
                    name=name if isinstance(name, str) else None,
                    args=raw.strip(),
                    id=call_id,
                    error="could not parse the tool call",
                )
            )
            return False
        if self.tool_names and name not in self.tool_names:
            self.invalid.append(
                invalid_tool_call(
                    name=name, args=json.dumps(args), id=call_id, error=f"unknown tool {name!r}"
                )
            )
            return False
        self.tool_calls.append(tool_call(name=name, args=args, id=call_id))
        return True

    def _emit(self, s: str) -> str:
        self.content += s
        return s

    def _line(self, line: str, terminator: str) -> str:
        """Handle a complete line; return content to emit (what was not emitted already)."""
        stripped = line.strip()
        already = self.line_emitted
        self.line_emitted = 0
        if self.in_block is not None:
            if TOOL_BLOCK_CLOSE in stripped:
                self.in_block.append(stripped.split(TOOL_BLOCK_CLOSE)[0])
                raw = "\n".join(self.in_block)
                self.in_block = None
                if not self._add_call(raw):
                    return self._emit(f"{TOOL_BLOCK_OPEN}{raw}{TOOL_BLOCK_CLOSE}{terminator}")
                return ""
            self.in_block.append(stripped)
            return ""
        if already == 0:
            low = stripped.lower()
            if low.startswith(TOOL_BLOCK_OPEN):
                rest = stripped[len(TOOL_BLOCK_OPEN) :]
                if TOOL_BLOCK_CLOSE in rest:
                    raw = rest.split(TOOL_BLOCK_CLOSE)[0]
                    if self._add_call(raw):
                        return ""
                    return self._emit(line + terminator)
                self.in_block = [rest]
                return ""
            if low.startswith(TOOL_CALL_PREFIX.strip().lower()):
                if self._add_call(stripped[len(TOOL_CALL_PREFIX.strip()) :]):
                    return ""
                return self._emit(line + terminator)
            if stripped.startswith("{") and self.tool_names:
                obj = _load_object(stripped)
                if (
                    obj is not None
                    and obj.get("name") in self.tool_names
                    and self._add_call(stripped)
                ):
                    return ""
        return self._emit(line[already:] + terminator)

    def feed(self, text: str) -> str:
        """Add generated text; return the content that can be streamed now."""
        self.buf += text
        out = []
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            out.append(self._line(line, "\n"))
        if (
            self.in_block is None
            and self.buf
            and (self.line_emitted or not self._maybe_call_start(self.buf))
        ):
            out.append(self._emit(self.buf[self.line_emitted :]))
            self.line_emitted = len(self.buf)
        return "".join(out)

    def finish(self) -> str:
        """Flush the last line (and an unclosed ``<tool_call>`` block); return the content left."""
        out = []
        if self.buf or self.line_emitted:
            out.append(self._line(self.buf, ""))
            self.buf = ""
        if self.in_block is not None:
            raw = "\n".join(self.in_block)
            self.in_block = None
            if not self._add_call(raw):
                out.append(self._emit(TOOL_BLOCK_OPEN + raw))
        return "".join(out)


def parse_output(
    text: str, tool_names: Sequence[str] | None = None
) -> tuple[str, list[Any], list[Any]]:
    """(content, tool_calls, invalid_tool_calls) of a whole generated text."""
    p = OutputParser(tool_names)
    p.feed(text)
    p.finish()
    return p.content, p.tool_calls, p.invalid


def _close_string_call(text: str, prefix: str) -> tuple[str, bool]:
    """For a forced call whose prefix opens its only (string) argument: end the call at the
    argument's closing quote, so whatever the model writes after it cannot break the call."""
    opened = (
        prefix.endswith('"') and '"arguments": {' in prefix and prefix.startswith(TOOL_CALL_PREFIX)
    )
    if not opened or not text.startswith(prefix):
        return text, False
    body = text[len(prefix) :]
    i = 0
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        if body[i] == '"':
            return prefix + body[:i] + '"}}', True
        i += 1
    return text, False


def _cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    cut = len(text)
    for s in stop or []:
        i = text.find(s)
        if s and 0 <= i < cut:
            cut = i
    return text[:cut], cut < len(text)


def _halt_criteria(event: threading.Event) -> Any:
    """A transformers StoppingCriteriaList that stops generation once ``event`` is set."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Halt(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full(
                (input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return StoppingCriteriaList([_Halt()])


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
class LocalChatModel(BaseChatModel):
    """A LangChain chat model over a local transformers causal LM (``smollm2`` by default).

    Fields are the generation settings; each can also be passed per call (``bind`` or invoke
    kwargs): ``temperature`` (0 = greedy), ``top_p``, ``max_new_tokens``, ``n`` (candidates per
    call: ``generate`` returns ``n`` generations, ``invoke`` the first), ``seed`` (torch seed per
    call, offset by a call counter, for reproducible samples). The model is loaded lazily with
    :func:`agentq.models.loading.load_causal_lm` (``device``/``dtype`` automatic unless set);
    :meth:`from_pretrained_objects` wraps an already loaded model and tokenizer. Each generation's
    ``response_metadata`` holds ``logprob`` (sum of the sampled tokens' log-probs) and ``tokens``.

    ``prefix_cache`` (default True) starts each ``generate`` from the longest prefix of the
    prompt already computed (:mod:`agentq.models.prefix_cache`, the process-wide cache, shared
    with agentq's other local models); ``cache_bytes`` sets its budget. The same seed gives the
    same samples either way. Streaming runs uncached.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str = "smollm2"
    """MODEL spec: ``smollm2``, a local directory or a hub id."""
    device: str | None = None
    dtype: str | None = None
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 128
    n: int = 1
    seed: int | None = None
    max_input_tokens: int = 2048
    """Prompts longer than this are cut from the left."""
    prefix_cache: bool = True
    """Reuse cached prompt prefixes (the process-wide prefix cache) in ``generate``."""
    cache_bytes: int | str | None = None
    """Budget of the prefix cache (a positive size such as ``"512MiB"``; None: as it is)."""

    _lm: Any = PrivateAttr(default=None)
    _tok: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _calls: int = PrivateAttr(default=0)

    @classmethod
    def from_pretrained_objects(cls, model: Any, tokenizer: Any, **fields: Any) -> LocalChatModel:
        """Wrap an already loaded transformers ``model`` and ``tokenizer``."""
        obj = cls(
            **{
                "model": getattr(getattr(model, "config", None), "_name_or_path", "") or "custom",
                **fields,
            }
        )
        obj._lm, obj._tok = model, tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return obj

    @property
    def _llm_type(self) -> str:
        return "agentq-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
        }

    def _load(self) -> tuple[Any, Any]:
        if self._lm is None:
            from agentq.models.loading import load_causal_lm

            self._lm, self._tok = load_causal_lm(self.model, self.device, self.dtype, cache=True)
        return self._lm, self._tok

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        """Bind tools (LangChain tools, functions, pydantic models or OpenAI dicts).

        They are rendered into the prompt; ``tool_choice`` may be ``"auto"``, ``"none"``,
        ``"any"``/``"required"``, a tool name or an OpenAI-style dict.
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    # -- generation ------------------------------------------------------------------------
    def _settings(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {
            "temperature": float(kwargs.get("temperature", self.temperature)),
            "top_p": float(kwargs.get("top_p", self.top_p)),
            "max_new_tokens": int(kwargs.get("max_new_tokens", self.max_new_tokens)),
            "n": int(kwargs.get("n", self.n)),
            "seed": kwargs.get("seed", self.seed),
        }

    def _prompt(
        self, messages: list[BaseMessage], kwargs: dict[str, Any]
    ) -> tuple[list[int], str, list[str]]:
        tools = kwargs.get("tools") or []
        if kwargs.get("tool_choice") == "none":
            tools = []
        _, tok = self._load()
        chat = chat_messages(messages, tools)
        text = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        prefix = forced_prefix(tools, kwargs.get("tool_choice"))
        ids = list(tok(text + prefix, add_special_tokens=False)["input_ids"])
        if len(ids) > self.max_input_tokens:
            ids = ids[-self.max_input_tokens :]
        names = [str(t.get("function", t).get("name")) for t in tools]
        return ids, prefix, names

    def _gen_kwargs(
        self, s: dict[str, Any], tok: Any, stop: list[str] | None = None
    ) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": s["max_new_tokens"],
            "pad_token_id": tok.pad_token_id,
        }
        if stop:
            from agentq.models.stopping import stop_string_criteria

            kw.update(stopping_criteria=stop_string_criteria(tok, stop))
        if s["temperature"] > 0:
            kw.update(do_sample=True, temperature=s["temperature"], top_p=s["top_p"])
        else:
            kw.update(do_sample=False)
        return kw

    def _seed(self, s: dict[str, Any]) -> None:
        with self._lock:
            k = self._calls
            self._calls += 1
        if s["seed"] is not None:
            import torch

            torch.manual_seed(int(s["seed"]) + k)

    def _message(
        self, text: str, names: list[str], logprob: float | None, tokens: int, prompt_len: int
    ) -> AIMessage:
        content, calls, invalid = parse_output(text, names)
        meta: dict[str, Any] = {"model_name": self.model, "tokens": tokens}
        if logprob is not None:
            meta["logprob"] = logprob
        return AIMessage(
            content=content,
            tool_calls=calls,
            invalid_tool_calls=invalid,
            response_metadata=meta,
            usage_metadata={
                "input_tokens": prompt_len,
                "output_tokens": tokens,
                "total_tokens": prompt_len + tokens,
            },
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        import torch

        lm, tok = self._load()
        s = self._settings(kwargs)
        ids, prefix, names = self._prompt(messages, kwargs)
        self._seed(s)
        input_ids = torch.tensor([ids], device=lm.device)
        n = max(1, s["n"])
        greedy = s["temperature"] <= 0
        from agentq.models.prefix_cache import cached_generate, resolve_prefix_cache

        cache = resolve_prefix_cache(self.prefix_cache, self.cache_bytes)
        with torch.inference_mode():
            if cache is not None:  # n copies of one prompt: the same draws as num_return_sequences
                out = cached_generate(
                    lm,
                    ids,
                    1 if greedy else n,
                    cache=cache,
                    output_scores=True,
                    **self._gen_kwargs(s, tok, stop),
                )
            else:
                out = lm.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    num_return_sequences=1 if greedy else n,
                    return_dict_in_generate=True,
                    output_scores=True,
                    **self._gen_kwargs(s, tok, stop),
                )
            scores = lm.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        gens = []
        eos = {tok.eos_token_id, tok.pad_token_id}
        for row, lp_row in zip(
            out.sequences[:, len(ids) :].tolist(), scores.tolist(), strict=False
        ):
            keep = len(row)
            for j, t in enumerate(row):
                if t in eos:
                    keep = j
                    break
            text = prefix + tok.decode(row[:keep], skip_special_tokens=True)
            text, _ = _close_string_call(text, prefix)
            text, _ = _cut_at_stop(text, stop)
            lp = float(
                sum(v for v in lp_row[: keep + (1 if keep < len(row) else 0)] if v > float("-inf"))
            )
            gens.append(ChatGeneration(message=self._message(text, names, lp, keep, len(ids))))
        if greedy and n > 1:  # greedy decoding is deterministic: n identical candidates
            gens += [
                ChatGeneration(message=self._message(text, names, lp, keep, len(ids)))
                for _ in range(n - 1)
            ]
        return ChatResult(generations=gens)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        import torch
        from transformers import TextIteratorStreamer

        lm, tok = self._load()
        s = self._settings(kwargs)
        ids, prefix, names = self._prompt(messages, kwargs)
        self._seed(s)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        halt = threading.Event()
        input_ids = torch.tensor([ids], device=lm.device)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    lm.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        streamer=streamer,
                        stopping_criteria=_halt_criteria(halt),
                        **self._gen_kwargs(s, tok, stop),
                    )
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)
                streamer.on_finalized_text("", stream_end=True)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        parser = OutputParser(names)
        text = ""
        fed = 0
        exhausted = False

        def pieces() -> Iterator[str]:
            nonlocal exhausted
            if prefix:
                yield prefix
            yield from streamer
            exhausted = True

        try:
            for piece in pieces():
                text += piece
                text, closed = _close_string_call(text, prefix)
                cut, hit = _cut_at_stop(text, stop)
                hit = hit or closed
                delta = parser.feed(cut[fed:])
                fed = len(cut)
                if delta:
                    yield self._chunk(delta, run_manager)
                if hit:
                    text = cut
                    halt.set()
                    break
        finally:
            halt.set()
            if not exhausted:
                for _ in streamer:  # drain so the worker can finish
                    pass
            worker.join()
        if errors:
            raise errors[0]
        tail = parser.finish()
        n_tokens = len(tok(text[len(prefix) :], add_special_tokens=False)["input_ids"])
        chunks = [
            tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
            for i, c in enumerate(parser.tool_calls)
        ]
        final = AIMessageChunk(
            content=tail,
            tool_call_chunks=chunks,
            response_metadata={"model_name": self.model, "tokens": n_tokens},
            usage_metadata={
                "input_tokens": len(ids),
                "output_tokens": n_tokens,
                "total_tokens": len(ids) + n_tokens,
            },
            chunk_position="last",
        )
        yield self._chunk_msg(final, run_manager)

    def _chunk(
        self, delta: str, run_manager: CallbackManagerForLLMRun | None
    ) -> ChatGenerationChunk:
        return self._chunk_msg(AIMessageChunk(content=delta), run_manager)

    def _chunk_msg(
        self, msg: AIMessageChunk, run_manager: CallbackManagerForLLMRun | None
    ) -> ChatGenerationChunk:
        chunk = ChatGenerationChunk(message=msg)
        if run_manager is not None:
            run_manager.on_llm_new_token(message_text(msg.content), chunk=chunk)
        return chunk


__all__ = [
    "LocalChatModel",
    "OutputParser",
    "chat_messages",
    "forced_prefix",
    "parse_output",
    "render_tools",
]
