"""The HotPotQA environment of ReAct: ``search[entity]``, ``lookup[keyword]``, ``finish[answer]``.

The action is the whole assistant turn (``Thought: ... Action: search[Foo]``); the environment
executes the *last* complete ``search[...]`` / ``lookup[...]`` / ``finish[...]`` / ``think[...]``
command in it (case-insensitive, so ReAct's ``Search[...]`` works; a command nested inside
another command's brackets is part of that command's argument).

Observations follow ReAct's Wikipedia environment:

- ``search[entity]``: the first ``search_sentences`` (5) sentences of the page titled ``entity``,
  or ``Could not find entity. Similar: ['A', 'B', ...].`` (the open page stays open on a miss);
- ``lookup[keyword]``: ``(Result i / N) sentence`` for the sentences of the open page that
  contain ``keyword`` (case-insensitive), one per call while the keyword stays the same, then
  ``No more results.``;
- ``think[thought]``: ``OK.``;
- ``finish[answer]``: ends the episode with reward = exact match after SQuAD normalisation;
  ``info`` has ``em``, ``f1``, ``precision``, ``recall`` and the gold ``answer``.

Every call is a step; when ``max_steps`` steps pass without ``finish`` the episode ends with
reward 0 and ``info["step_limit"] = True``. A turn with no command, an empty ``search[]`` or
``lookup[]``, and ``lookup`` before any page is open are observations with
``info["invalid"] = True``.
"""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path
from typing import Any

from agentq.envs.hotpotqa.corpus import Corpus, SearchResult, load_questions
from agentq.envs.hotpotqa.metrics import exact_match, f1_parts

from agentq.errors import UserInputError
from agentq.protocols import FREE_TEXT
from agentq.render import observation_text
from agentq.types import Context, StepResult

DATA_DIR = Path(__file__).resolve().parent / "data"
SHIPPED_CORPUS = DATA_DIR / "world_corpus.json.gz"
SHIPPED_QUESTIONS = DATA_DIR / "world_questions.json.gz"
DEV_QUESTIONS = DATA_DIR / "hotpot_dev_v1_simplified.json.gz"

#: ReAct's evaluation sample: ``random.Random(233).shuffle`` of the dev indices, first 500.
REACT_SEED = 233
REACT_TEST_SIZE = 500

COMMANDS = ("search", "lookup", "finish", "think")
_OPENER = re.compile(r"\b(search|lookup|finish|think)\s*\[", re.IGNORECASE)
_BRACKET = re.compile(r"[\[\]]")

SYSTEM_PROMPT = """\
Answer a question by looking things up in {source}. Work in steps: in each reply write one \
short thought, then exactly one action. The actions are:
search[entity]: open the page whose title is exactly entity and show its first sentences; if \
there is no such page, you get a list of similar titles to try instead.
lookup[keyword]: show the next sentence of the open page that contains keyword.
finish[answer]: give the final answer (a short phrase, a name, a number, or yes/no) and stop.
Questions need facts from two pages. You have at most {max_steps} actions. Reply like:
Thought: I need to find out where X was born.
Action: search[X]"""


def _bracket_closers(text: str) -> dict[int, int]:
    """Index of each ``[`` in ``text`` -> index of the ``]`` that closes it (nested brackets
    counted). One pass: a ``[`` closes at the first ``]`` where the brackets after it stop
    balancing, exactly what a depth count from it finds."""
    closers: dict[int, int] = {}
    open_at: list[int] = []
    for m in _BRACKET.finditer(text):
        if m.group() == "[":
            open_at.append(m.start())
        elif open_at:
            closers[open_at.pop()] = m.start()
    return closers


def parse_action(text: str) -> tuple[str, str] | None:
    """(command, argument) of the last complete command in ``text``, or None.

    Brackets inside the argument may nest (``finish[Foo [band]]``); a command inside another
    command's argument is not a separate command. Linear in the length of ``text``.
    """
    found: tuple[str, str] | None = None
    pos = 0
    text = text or ""
    closers: dict[int, int] | None = None
    while True:
        m = _OPENER.search(text, pos)
        if m is None:
            return found
        if closers is None:
            closers = _bracket_closers(text)
        close = closers.get(m.end() - 1)
        if close is not None:
            found = (m.group(1).lower(), text[m.end() : close].strip())
            pos = close + 1
        else:
            pos = m.end()


#: Shipped-world train tasks shown as solved examples (bridge and comparison, yes and no, lookups).
FEWSHOT_IDS = ("hpw-b0000", "hpw-c0000", "hpw-b0008", "hpw-c0011", "hpw-b0005", "hpw-c0003")


@functools.lru_cache(maxsize=8)
def fewshot_examples(k: int) -> str:
    """``k`` solved examples: scripted-expert episodes on the shipped world, ReAct-style text."""
    from agentq.envs.hotpotqa.expert import run_expert

    env = HotPotQAEnv()
    blocks = []
    for task_id in FEWSHOT_IDS[:k]:
        lines = [f"Question: {env.question(task_id)['question']}"]
        for action, result in run_expert(env, task_id):
            lines.append(action)
            lines.append(observation_text(result.observation))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _format_similar(titles: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(repr(t) for t in titles) + "]"


class HotPotQAEnv:
    """HotPotQA with ReAct's actions over a local corpus or live Wikipedia (see module doc).

    Args:
        corpus: ``"shipped"`` (the generated offline world, the default), a path to a page file
            or an official HotpotQA distractor/fullwiki file (pages = every ``context``
            paragraph), ``"distractor"`` (HotpotQA's distractor setting: each task sees only
            its own ten ``context`` paragraphs), ``"wikipedia"`` (live, opt-in), or any object
            with ``search(query) -> SearchResult``.
        questions: ``"shipped"``, ``"dev"`` (the 7,405 HotpotQA dev questions of the ReAct
            repository, shipped), or a path to a question file; by default the shipped world's
            questions for the shipped corpus, the file's own questions for a corpus file, and
            ``"dev"`` for Wikipedia.
        max_steps: the step limit (ReAct uses 7).
        fewshot: how many solved examples (scripted-expert episodes on the shipped world's
            train split, at most 6) the system message shows, as ReAct's prompts do.
        seed: kept for the registry's common options; the environment draws nothing at random.
        cache_dir: on-disk cache of the Wikipedia backend.
        wikipedia_url: the MediaWiki ``api.php`` endpoint of the Wikipedia backend.
        search_sentences: how many leading sentences ``search`` shows.
        similar_k: how many titles a failed search lists.
        timeout, retries: request timeout (seconds) and retries of the Wikipedia backend.
        user_agent: the User-Agent the Wikipedia backend sends (Wikimedia asks for one that
            identifies you).
    """

    name = "hotpotqa"
    deterministic = True

    def __init__(
        self,
        corpus: str | Path | Any = "shipped",
        questions: str | Path | None = None,
        max_steps: int = 7,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        wikipedia_url: str | None = None,
        search_sentences: int = 5,
        similar_k: int = 5,
        timeout: float = 10.0,
        retries: int = 3,
        user_agent: str | None = None,
        fewshot: int = 0,
    ) -> None:
        if max_steps < 1:
            raise UserInputError(f"max_steps must be at least 1, not {max_steps}")
        self.max_steps = max_steps
        self.search_sentences = search_sentences
        if not 0 <= fewshot <= len(FEWSHOT_IDS):
            raise UserInputError(f"fewshot must be between 0 and {len(FEWSHOT_IDS)}, not {fewshot}")
        self.fewshot = fewshot
        self._seed = seed
        self._similar_k = similar_k
        self._per_task = False
        self._task_corpora: dict[str, Corpus] = {}
        self.backend: Any = None
        corpus_path: Path | None = None
        if isinstance(corpus, str) and corpus == "distractor":
            self._per_task = True
            default_q: str | Path = "shipped"
        elif isinstance(corpus, str) and corpus == "shipped":
            self.backend = Corpus.from_file(SHIPPED_CORPUS, similar_k=similar_k)
            default_q = "shipped"
        elif isinstance(corpus, str) and corpus == "wikipedia":
            from agentq.envs.hotpotqa.wikipedia import (
                DEFAULT_API_URL,
                DEFAULT_USER_AGENT,
                WikipediaBackend,
            )

            self.backend = WikipediaBackend(
                wikipedia_url or DEFAULT_API_URL,
                cache_dir=cache_dir,
                timeout=timeout,
                retries=retries,
                similar_k=similar_k,
                user_agent=user_agent or DEFAULT_USER_AGENT,
            )
            default_q = "dev"
        elif isinstance(corpus, str | Path):
            corpus_path = Path(corpus)
            self.backend = Corpus.from_file(corpus_path, similar_k=similar_k)
            default_q = corpus_path
        elif callable(getattr(corpus, "search", None)):
            self.backend = corpus
            default_q = "dev" if self._is_wikipedia() else "shipped"
        else:
            raise UserInputError(
                "corpus must be 'shipped', 'distractor', 'wikipedia', a file path or an object"
                " with search()"
            )
        q = default_q if questions is None else questions
        qpath = {"shipped": SHIPPED_QUESTIONS, "dev": DEV_QUESTIONS}.get(str(q), Path(q))
        try:
            self.questions = load_questions(qpath)
        except UserInputError as e:
            if questions is None and corpus_path is not None:
                raise UserInputError(
                    f"{corpus_path} holds no questions ({e}); pass questions='dev' or a question file"
                ) from e
            raise
        if self._per_task and not all(ex.get("context") for ex in self.questions):
            raise UserInputError(
                "corpus='distractor' needs questions with 'context' paragraphs (the official"
                " distractor format or the shipped world)"
            )
        self._by_id: dict[str, dict[str, Any]] = {}
        for i, ex in enumerate(self.questions):
            if ex["id"] in self._by_id:
                ex["id"] = f"{ex['id']}-{i}"
            self._by_id[ex["id"]] = ex
        self._splits = self._make_splits()
        self._task: dict[str, Any] | None = None
        self._reset_state()

    # -- tasks ---------------------------------------------------------------------------
    def _make_splits(self) -> dict[str, list[str]]:
        ids = [ex["id"] for ex in self.questions]
        splits: dict[str, list[str]] = {"all": ids}
        if ids and all(isinstance(ex.get("split"), str) for ex in self.questions):
            for ex in self.questions:
                splits.setdefault(ex["split"], []).append(ex["id"])
            return splits
        order = list(range(len(ids)))
        random.Random(REACT_SEED).shuffle(order)
        n_test = min(REACT_TEST_SIZE, max(1, len(ids) // 5)) if ids else 0
        test = set(order[:n_test])
        splits["test"] = [ids[i] for i in order[:n_test]]
        splits["train"] = [x for i, x in enumerate(ids) if i not in test]
        splits["dev"] = ids
        return splits

    def tasks(self, split: str) -> list[str]:
        """Task ids of ``split``.

        Files with a ``split`` field (the shipped world: ``train`` 400, ``test`` 150) use it.
        Other files: ``test`` is ReAct's sample (``random.Random(233).shuffle`` of the indices,
        the first 500, or a fifth of a smaller file), ``train`` the rest, ``dev`` and ``all``
        every question in file order.
        """
        if split not in self._splits:
            raise UserInputError(
                f"unknown split {split!r}; known: {', '.join(sorted(self._splits))}"
            )
        return list(self._splits[split])

    def question(self, task_id: str) -> dict[str, Any]:
        """The question record of ``task_id`` (``question``, ``answer``, ``type``, ...)."""
        if task_id not in self._by_id:
            raise UserInputError(f"unknown hotpotqa task {task_id!r}")
        return self._by_id[task_id]

    # -- episode -------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self._steps = 0
        self._done = False
        self._page: tuple[str, tuple[str, ...]] | None = None
        self._lookup_kw: str | None = None
        self._lookup_hits: tuple[str, ...] = ()
        self._lookup_next = 0

    def _is_wikipedia(self) -> bool:
        return type(self.backend).__name__ == "WikipediaBackend"

    def system_prompt(self) -> str:
        """The system message: the action grammar and the reply format."""
        source = "Wikipedia" if self._is_wikipedia() else "an encyclopedia"
        text = SYSTEM_PROMPT.format(source=source, max_steps=self.max_steps)
        if self.fewshot:
            text += "\n\nSolved examples:\n\n" + fewshot_examples(self.fewshot)
        return text

    def _task_corpus(self, task_id: str) -> Corpus:
        """The ten context paragraphs of ``task_id`` as a corpus (distractor setting)."""
        corpus = self._task_corpora.get(task_id)
        if corpus is None:
            if len(self._task_corpora) >= 256:
                self._task_corpora.clear()
            paragraphs = [(str(t), s) for t, s in self._by_id[task_id]["context"]]
            corpus = Corpus(paragraphs, similar_k=self._similar_k)
            self._task_corpora[task_id] = corpus
        return corpus

    def reset(self, task_id: str) -> Context:
        """Start ``task_id``: the system message with the grammar, the user message with the question."""
        self._task = self.question(task_id)
        if self._per_task:
            self.backend = self._task_corpus(task_id)
        self._reset_state()
        return [
            {"role": "system", "content": self.system_prompt()},
            {"role": "user", "content": f"Question: {self._task['question']}"},
        ]

    def step(self, action: str) -> StepResult:
        """Execute the last command in ``action`` (see the module doc)."""
        if self._task is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            return StepResult(
                "The episode is over.", 0.0, True, {"invalid": True, "error": "episode over"}
            )
        self._steps += 1
        parsed = parse_action(action)
        reward = 0.0
        done = False
        info: dict[str, Any] = {"invalid": False, "steps": self._steps}
        if parsed is None:
            obs, info["invalid"], info["error"] = self._invalid(action, "no command found")
        else:
            cmd, arg = parsed
            info["command"], info["argument"] = cmd, arg
            if cmd == "search":
                if not arg:
                    obs, info["invalid"], info["error"] = self._invalid(action, "empty search")
                else:
                    obs = self._search(arg, info)
            elif cmd == "lookup":
                if not arg:
                    obs, info["invalid"], info["error"] = self._invalid(action, "empty lookup")
                elif self._page is None:
                    obs = "No page is open: search[entity] first."
                    info["invalid"], info["error"] = True, "lookup before search"
                else:
                    obs = self._lookup(arg)
            elif cmd == "think":
                obs = "OK."
            else:
                reward, obs = self._finish(arg, info)
                done = True
        if not done and self._steps >= self.max_steps:
            done = True
            info["step_limit"] = True
            obs = f"{obs}\nStep limit reached ({self.max_steps} actions); the episode is over."
        self._done = done
        return StepResult(obs, reward, done, info)

    def _invalid(self, action: str, why: str) -> tuple[str, bool, str]:
        shown = " ".join((action or "").split())
        if len(shown) > 80:
            shown = shown[:77] + "..."
        obs = (
            f"Invalid action ({why}): {shown!r}. "
            "Use search[entity], lookup[keyword], finish[answer] or think[thought]."
        )
        return obs, True, why

    def _search(self, entity: str, info: dict[str, Any]) -> str:
        result: SearchResult = self.backend.search(entity)
        info["found"] = result.found
        if not result.found:
            info["similar"] = list(result.similar)
            return f"Could not find {entity}. Similar: {_format_similar(result.similar)}."
        assert result.title is not None
        info["title"] = result.title
        self._page = (result.title, tuple(result.sentences))
        self._lookup_kw, self._lookup_hits, self._lookup_next = None, (), 0
        shown = " ".join(result.sentences[: self.search_sentences])
        return shown or f"The page {result.title} is empty."

    def _lookup(self, keyword: str) -> str:
        assert self._page is not None
        if keyword != self._lookup_kw:
            kw = keyword.casefold()
            self._lookup_kw = keyword
            self._lookup_hits = tuple(s for s in self._page[1] if kw in s.casefold())
            self._lookup_next = 0
        if self._lookup_next >= len(self._lookup_hits):
            return "No more results."
        i = self._lookup_next
        self._lookup_next += 1
        return f"(Result {i + 1} / {len(self._lookup_hits)}) {self._lookup_hits[i]}"

    def _finish(self, answer: str, info: dict[str, Any]) -> tuple[float, str]:
        assert self._task is not None
        gold = self._task.get("answer")
        info["prediction"] = answer
        info["answer"] = gold
        info["type"] = self._task.get("type")
        if gold is None:
            info.update(em=0.0, f1=0.0, precision=0.0, recall=0.0, answer_unknown=True)
            return 0.0, "Episode finished (this question has no gold answer), reward = 0"
        em = exact_match(answer, gold)
        f1, precision, recall = f1_parts(answer, gold)
        info.update(em=em, f1=f1, precision=precision, recall=recall)
        return em, f"Episode finished, reward = {em:g}"

    def valid_actions(self) -> list[str] | None:
        """Action templates with free-text arguments: ``search[...]``, ``lookup[...]`` (only
        while a page is open) and ``finish[...]``, where ``...`` is :data:`FREE_TEXT`.

        ``think[...]`` is accepted by :meth:`step` but not listed: a thought belongs in the
        same turn as its action. After the episode ends the list is empty.
        """
        if self._done:
            return []
        out = [f"search[{FREE_TEXT}]"]
        if self._page is not None:
            out.append(f"lookup[{FREE_TEXT}]")
        out.append(f"finish[{FREE_TEXT}]")
        return out

    # -- state ---------------------------------------------------------------------------
    @property
    def page_title(self) -> str | None:
        """Title of the open page (None before the first successful search)."""
        return None if self._page is None else self._page[0]

    @property
    def steps_taken(self) -> int:
        """Actions executed in this episode."""
        return self._steps

    def snapshot(self) -> Any:
        """The episode state (pages are immutable, so this is a few references)."""
        task_id = None if self._task is None else self._task["id"]
        return (
            task_id,
            self._steps,
            self._done,
            self._page,
            self._lookup_kw,
            self._lookup_hits,
            self._lookup_next,
        )

    def restore(self, state: Any) -> None:
        """Return to a state taken by :meth:`snapshot`."""
        task_id, steps, done, page, kw, hits, nxt = state
        self._task = None if task_id is None else self._by_id[task_id]
        if self._per_task and task_id is not None:
            self.backend = self._task_corpus(task_id)
        self._steps, self._done, self._page = steps, done, page
        self._lookup_kw, self._lookup_hits, self._lookup_next = kw, hits, nxt

    def close(self) -> None:
        """Release the backend's resources (the Wikipedia HTTP client)."""
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()


__all__ = ["COMMANDS", "HotPotQAEnv", "SYSTEM_PROMPT", "parse_action"]
