"""HotPotQA environment: metrics, action parsing, the shipped world, loaders, Wikipedia backend."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from agentq.envs import make
from agentq.envs.hotpotqa import HotPotQAEnv, parse_action
from agentq.envs.hotpotqa.corpus import Corpus, load_pages, load_questions
from agentq.envs.hotpotqa.env import DEV_QUESTIONS, SHIPPED_CORPUS, SHIPPED_QUESTIONS
from agentq.envs.hotpotqa.expert import RandomReActPolicy, expert_plan, run_expert
from agentq.envs.hotpotqa.generate import write_world
from agentq.envs.hotpotqa.metrics import exact_match, f1_parts, f1_score, normalize_answer
from agentq.envs.hotpotqa.wikipedia import WikipediaBackend, split_sentences
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agentq.errors import RemoteError, UserInputError
from agentq.protocols import FREE_TEXT, Env, has_snapshots

SHARED_DEV = (
    Path(__file__).resolve().parents[2] / "shared/data/hotpotqa/hotpot_dev_v1_simplified.json"
)


@pytest.fixture(scope="module")
def env() -> HotPotQAEnv:
    return make("hotpotqa")


# -- metrics -----------------------------------------------------------------------------------
def test_normalisation_and_exact_match() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an Apple a day") == "apple day"
    assert exact_match("the Brindforca River.", "Brindforca River") == 1.0
    assert exact_match("Brindforca", "Brindforca River") == 0.0
    assert exact_match("YES", "yes") == 1.0


def test_f1_cases() -> None:
    # prediction "new york city" vs gold "new york": precision 2/3, recall 1, F1 0.8
    f1, p, r = f1_parts("New York City", "New York")
    assert (round(p, 4), r, round(f1, 4)) == (0.6667, 1.0, 0.8)
    assert f1_score("Brindforca River", "the Brindforca River") == 1.0
    assert f1_score("no", "yes") == 0.0
    assert f1_score("yes it is", "yes") == 0.0  # yes/no only score when identical
    assert f1_score("", "Paris") == 0.0
    assert f1_score("Paris France", "Paris, France") == 1.0


# -- action parsing ----------------------------------------------------------------------------
def test_parse_action() -> None:
    assert parse_action("Thought: go\nAction 1: Search[Foo Bar]") == ("search", "Foo Bar")
    assert parse_action("search[a] then lookup[ b ]") == ("lookup", "b")
    assert parse_action("finish[Foo [band]]") == ("finish", "Foo [band]")
    assert parse_action("think[maybe search[x] later]") == ("think", "maybe search[x] later")
    assert parse_action("search[a] finish[unclosed") == ("search", "a")
    assert parse_action("I do not know") is None
    assert parse_action("") is None


# -- the shipped world -------------------------------------------------------------------------
def test_shipped_world_shape(env: HotPotQAEnv) -> None:
    assert len(env.backend) >= 1000
    train, test = env.tasks("train"), env.tasks("test")
    assert len(train) + len(test) >= 300 and len(test) >= 100
    assert not set(train) & set(test)
    types = {env.question(t)["type"] for t in train + test}
    assert types == {"bridge", "comparison"}
    answers = [env.question(t)["answer"] for t in train + test]
    assert 0 < sum(a in ("yes", "no") for a in answers) < len(answers) / 2


def test_every_question_needs_two_pages(env: HotPotQAEnv) -> None:
    for tid in env.tasks("all"):
        q = env.question(tid)
        (ta, ia), (tb, ib) = q["supporting_facts"]
        assert ta != tb
        page_a, page_b = env.backend.get(ta)[1], env.backend.get(tb)[1]
        assert ta in q["question"]
        if q["type"] == "bridge":
            # page A's supporting sentence names page B; page B's holds the answer; A does not
            assert tb in page_a[ia] and tb not in q["question"]
            assert normalize_answer(q["answer"]) in normalize_answer(page_b[ib])
            assert normalize_answer(q["answer"]) not in normalize_answer(" ".join(page_a))
        else:
            assert tb in q["question"]
        # the official distractor format: gold pages among ten context paragraphs
        titles = [t for t, _ in q["context"]]
        assert len(titles) == 10 and ta in titles and tb in titles


def test_generator_reproduces_the_shipped_files(tmp_path: Path) -> None:
    cpath, qpath = write_world(tmp_path, seed=0)
    # compare the JSON text: gzip bytes may differ between zlib builds
    for made, shipped in ((cpath, SHIPPED_CORPUS), (qpath, SHIPPED_QUESTIONS)):
        assert gzip.decompress(made.read_bytes()) == gzip.decompress(shipped.read_bytes())


def test_expert_solves_every_shipped_task(env: HotPotQAEnv) -> None:
    lookups = 0
    for tid in env.tasks("all"):
        traj = run_expert(env, tid)
        last = traj[-1][1]
        assert last.done and last.reward == 1.0 and last.info["f1"] == 1.0, (tid, traj)
        assert len(traj) <= env.max_steps
        assert not any(r.info["invalid"] for _, r in traj)
        q = env.question(tid)
        if q["type"] == "bridge":  # the answer was on screen before finish
            seen = " ".join(r.observation for _, r in traj[:-1])
            assert normalize_answer(q["answer"]) in normalize_answer(seen)
        lookups += sum(r.info.get("command") == "lookup" for _, r in traj)
    assert lookups > 50  # some facts sit past the first five sentences


@pytest.mark.parametrize("answers", ["corpus", "seen"])
def test_random_policy_rarely_succeeds(env: HotPotQAEnv, answers: str) -> None:
    policy = RandomReActPolicy(env.backend.titles, seed=0, answers=answers)
    ids = env.tasks("all")
    rate = sum(policy.run(env, tid) for tid in ids) / len(ids)
    print(f"random policy ({answers} answers): success {rate:.4f} on {len(ids)} tasks")
    assert rate < 0.15


# -- environment behaviour ---------------------------------------------------------------------
def test_contract_and_registry(env: HotPotQAEnv) -> None:
    as_protocol: Any = env
    assert isinstance(as_protocol, Env)
    assert env.name == "hotpotqa" and env.max_steps == 7
    assert has_snapshots(env) and env.deterministic
    assert isinstance(env.backend, Corpus)  # never Wikipedia by default
    with pytest.raises(UserInputError):
        make("hotpotqa", no_such_option=1)
    with pytest.raises(UserInputError):
        env.tasks("validation")
    with pytest.raises(UserInputError):
        env.reset("no-such-task")
    with pytest.raises(UserInputError):
        HotPotQAEnv(max_steps=0)


def test_reset_search_lookup_finish(env: HotPotQAEnv) -> None:
    tid = env.tasks("test")[0]
    ctx = env.reset(tid)
    assert [m["role"] for m in ctx] == ["system", "user"]
    assert "search[entity]" in ctx[0]["content"] and "lookup[keyword]" in ctx[0]["content"]
    assert ctx[1]["content"] == f"Question: {env.question(tid)['question']}"
    assert env.valid_actions() == [f"search[{FREE_TEXT}]", f"finish[{FREE_TEXT}]"]

    title, sentences = next((t, s) for t, s in env.backend.pages.items() if len(s) >= 7)
    obs, reward, done, info = env.step(f"Thought: look.\nAction: search[{title.upper()}]")
    assert obs == " ".join(sentences[:5]) and reward == 0 and not done
    assert info["title"] == title and not info["invalid"]
    assert env.valid_actions() == [
        f"search[{FREE_TEXT}]",
        f"lookup[{FREE_TEXT}]",
        f"finish[{FREE_TEXT}]",
    ]

    hits = [s for s in sentences if "it" in s.casefold()]
    for i, s in enumerate(hits):
        obs, *_ = env.step("lookup[it]")
        assert obs == f"(Result {i + 1} / {len(hits)}) {s}"
        if env.steps_taken >= 5:
            break
    else:
        assert env.step("lookup[it]").observation == "No more results."
    obs, _, done, info = env.step("finish[nothing like it]")
    assert done and info["em"] == 0.0 and info["answer"] == env.question(tid)["answer"]
    assert info["type"] == env.question(tid)["type"]


def test_search_miss_lists_similar_titles(env: HotPotQAEnv) -> None:
    env.reset(env.tasks("train")[0])
    title = next(t for t in env.backend.titles if t.endswith(" River"))
    word = title.split()[0]
    obs, _, done, info = env.step(f"search[{word}]")
    assert obs.startswith(f"Could not find {word}. Similar: [") and not done
    assert title in info["similar"] and f"'{title}'" in obs
    assert env.page_title is None  # nothing opened
    obs, *_ = env.step("search[qqqq zzzz]")
    assert obs == "Could not find qqqq zzzz. Similar: []."


def test_invalid_actions_and_step_limit() -> None:
    env = HotPotQAEnv(max_steps=4)
    env.reset(env.tasks("test")[1])
    for action in ["I think the answer is Paris.", "search[ ]", "lookup[river]"]:
        obs, reward, done, info = env.step(action)
        assert info["invalid"] and reward == 0 and not done
        assert "search[" in obs
    obs, reward, done, info = env.step("think[let me reflect]")
    assert done and info["step_limit"] and not info["invalid"] and reward == 0
    assert obs.startswith("OK.") and "Step limit" in obs
    obs, _, done, info = env.step("finish[x]")
    assert done and info["invalid"] and env.valid_actions() == []


def test_snapshot_restore_replays_identically(env: HotPotQAEnv) -> None:
    tid = env.tasks("train")[3]
    plan = expert_plan(env, tid)
    env.reset(tid)
    env.step(plan[0])
    env.step("lookup[the]")
    snap = env.snapshot()
    first = [env.step(a) for a in ["lookup[the]", *plan[1:]]]
    env.restore(snap)
    again = [env.step(a) for a in ["lookup[the]", *plan[1:]]]
    assert first == again and again[-1].reward == 1.0


def test_unanswered_question_gives_zero(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps([{"_id": "x1", "question": "Who?"}]))
    env = HotPotQAEnv(questions=path)
    env.reset("x1")
    _, reward, done, info = env.step("finish[anyone]")
    assert done and reward == 0 and info["answer_unknown"]


# -- loaders on the official formats -----------------------------------------------------------
def _distractor_examples() -> list[dict[str, Any]]:
    ctx1 = [
        [
            "Scott Derrickson",
            [
                "Scott Derrickson (born July 16, 1966) is an American director.",
                " He lives in Los Angeles.",
            ],
        ],
        [
            "Ed Wood",
            ["Edward Davis Wood Jr. was an American filmmaker.", " He made low-budget films."],
        ],
        [
            "Doctor Strange (2016 film)",
            ["Doctor Strange is a 2016 film.", " It was directed by Scott Derrickson."],
        ],
    ]
    ctx2 = [
        [
            "Kiss and Tell (1945 film)",
            ["Kiss and Tell is a 1945 comedy.", " Shirley Temple plays Corliss Archer."],
        ],
        [
            "Shirley Temple",
            [
                "Shirley Temple was an actress.",
                " She was born in 1928.",
                " She later became a diplomat.",
                " She grew up in Santa Monica.",
                " She starred in many films.",
                " She served as Chief of Protocol of the United States.",
            ],
        ],
        [
            "Ed Wood",
            ["Edward Davis Wood Jr. was an American filmmaker.", " He made low-budget films."],
        ],
    ]
    return [
        {
            "_id": "5a8b57f25542995d1e6f1371",
            "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
            "answer": "yes",
            "type": "comparison",
            "level": "hard",
            "supporting_facts": [["Scott Derrickson", 0], ["Ed Wood", 0]],
            "context": ctx1,
        },
        {
            "_id": "5a8c7595554299585d9e36b6",
            "question": "What government position was held by the woman who portrayed Corliss Archer in the film Kiss and Tell?",
            "answer": "Chief of Protocol",
            "type": "bridge",
            "level": "medium",
            "supporting_facts": [["Kiss and Tell (1945 film)", 1], ["Shirley Temple", 5]],
            "context": ctx2,
        },
    ]


def test_loader_reads_the_distractor_format(tmp_path: Path) -> None:
    path = tmp_path / "hotpot_dev_distractor_v1.json"
    path.write_text(json.dumps(_distractor_examples()))
    pages = load_pages(path)
    assert len(pages) == 5  # "Ed Wood" appears twice, kept once
    assert pages["Shirley Temple"][1] == "She was born in 1928."  # leading spaces stripped
    env = make("hotpotqa", corpus=str(path))
    assert env.tasks("all") == ["5a8b57f25542995d1e6f1371", "5a8c7595554299585d9e36b6"]
    assert sorted(env.tasks("train") + env.tasks("test")) == sorted(env.tasks("all"))
    for tid in env.tasks("all"):
        traj = run_expert(env, tid)
        assert traj[-1][1].reward == 1.0
    # the bridge answer sits in sentence 6: the expert had to look it up
    cmds = [r.info.get("command") for _, r in run_expert(env, "5a8c7595554299585d9e36b6")]
    assert cmds == ["search", "search", "lookup", "finish"]
    ctx = HotPotQAEnv(corpus=path).reset("5a8b57f25542995d1e6f1371")
    assert ctx[1]["content"].startswith("Question: Were Scott")


def test_loader_page_formats_and_errors(tmp_path: Path) -> None:
    jsonl = tmp_path / "pages.jsonl"
    jsonl.write_text(
        json.dumps(
            {"id": "1", "title": "Alpha", "text": ["Alpha is a letter.", " It comes first."]}
        )
        + "\n"
        + json.dumps({"title": "Beta", "sentences": ["Beta is second."]})
        + "\n"
    )
    assert load_pages(jsonl) == {
        "Alpha": ("Alpha is a letter.", "It comes first."),
        "Beta": ("Beta is second.",),
    }
    mapping = tmp_path / "pages.json.gz"
    with gzip.open(mapping, "wt") as fh:
        json.dump({"Gamma": ["Gamma is third."]}, fh)
    assert Corpus.from_file(mapping).search("gamma").title == "Gamma"
    questions = tmp_path / "q.json"
    questions.write_text(
        json.dumps([{"question": "What comes first?", "answer": "Alpha", "type": "bridge"}])
    )
    env = HotPotQAEnv(corpus=jsonl, questions=questions)
    env.reset("q-0")
    assert env.step("search[alpha]").observation == "Alpha is a letter. It comes first."
    assert env.step("finish[alpha]").reward == 1.0
    with pytest.raises(UserInputError, match="holds no questions"):
        HotPotQAEnv(corpus=jsonl)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserInputError):
        load_questions(bad)
    with pytest.raises(UserInputError):
        load_questions(tmp_path / "missing.json")
    with pytest.raises(UserInputError):
        HotPotQAEnv(corpus=tmp_path / "missing.json")


def test_loader_reads_a_wikipedia_abstracts_folder(tmp_path: Path) -> None:
    import bz2

    folder = tmp_path / "enwiki-abstracts" / "AA"
    folder.mkdir(parents=True)
    lines = [
        {
            "id": "12",
            "url": "https://en.wikipedia.org/wiki?curid=12",
            "title": "Anarchism",
            "text": [
                '<a href="Political%20philosophy">Political philosophy</a> is one thing.',
                " Another.",
            ],
        },
        {
            "id": "25",
            "url": "u",
            "title": "Autism",
            "text": [["Autism is a condition."], [" It varies."]],
        },
    ]
    with bz2.open(folder / "wiki_00.bz2", "wt") as fh:
        fh.write("\n".join(json.dumps(x) for x in lines) + "\n")
    pages = load_pages(tmp_path / "enwiki-abstracts")
    assert pages == {
        "Anarchism": ("Political philosophy is one thing.", "Another."),
        "Autism": ("Autism is a condition.", "It varies."),
    }


def test_dev_questions_load_whole() -> None:
    env = HotPotQAEnv(questions="dev")
    assert len(env.tasks("all")) == 7405
    assert len(env.tasks("test")) == 500 and len(env.tasks("train")) == 6905
    assert env.tasks("dev")[0] == "hotpot_dev_v1_simplified-0"
    assert {env.question(t)["type"] for t in env.tasks("all")} == {"bridge", "comparison"}
    if SHARED_DEV.is_file():  # the shipped copy is the shared file, unchanged
        with gzip.open(DEV_QUESTIONS, "rb") as fh:
            assert fh.read() == SHARED_DEV.read_bytes()


# -- live Wikipedia backend, against a local MediaWiki API stand-in ----------------------------
WIKI_PAGES = {
    "Ada Lovelace": "Ada Lovelace was an English mathematician. She worked on the Analytical Engine.\n"
    "== Life ==\nShe was born in London. Her father was Lord Byron.",
    "Mercury": "Mercury may refer to:\nMercury (planet)\nMercury (element)",
}
WIKI_REDIRECTS = {"Lovelace": "Ada Lovelace"}


class StandIn:
    """A tiny MediaWiki ``api.php`` on 127.0.0.1 (FastAPI + uvicorn in a thread)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []
        self.agents: list[str] = []
        self.fail_next = 0
        app = FastAPI()

        @app.get("/w/api.php")
        def api(request: Request) -> Any:
            params = dict(request.query_params)
            self.calls.append(params)
            self.agents.append(request.headers.get("user-agent", ""))
            if self.fail_next:
                self.fail_next -= 1
                return JSONResponse({"error": "busy"}, status_code=503)
            if params.get("list") == "search":
                q = params["srsearch"].lower()
                hits = [{"title": t} for t in WIKI_PAGES if any(w in t.lower() for w in q.split())]
                if "ada" in q or "lovelace" in q:
                    hits.append({"title": "Analytical Engine"})
                return {"query": {"search": hits[: int(params.get("srlimit", 5))]}}
            title = WIKI_REDIRECTS.get(params["titles"], params["titles"])
            if title not in WIKI_PAGES:
                return {"query": {"pages": [{"title": params["titles"], "missing": True}]}}
            page: dict[str, Any] = {"pageid": 1, "title": title, "extract": WIKI_PAGES[title]}
            if "may refer to" in WIKI_PAGES[title]:
                page["pageprops"] = {"disambiguation": ""}
            return {"query": {"pages": [page]}}

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/w/api.php"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def wiki() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.stop()


def test_split_sentences() -> None:
    assert split_sentences("A b. C d? E.\n== H ==\n\nF g.") == ("A b.", "C d?", "E.", "F g.")


def test_wikipedia_pages_similar_and_cache(wiki: StandIn, tmp_path: Path) -> None:
    backend = WikipediaBackend(wiki.url, cache_dir=tmp_path, backoff=0.01)
    hit = backend.search("Lovelace")  # a redirect
    assert hit.title == "Ada Lovelace"
    assert hit.sentences == (
        "Ada Lovelace was an English mathematician.",
        "She worked on the Analytical Engine.",
        "She was born in London.",
        "Her father was Lord Byron.",
    )
    miss = backend.search("Babbage engine")
    assert miss.title is None and miss.similar == ()
    dis = backend.search("Mercury")  # a disambiguation page is not a hit
    assert dis.title is None and dis.similar == ("Mercury",)
    n = len(wiki.calls)
    again = WikipediaBackend(wiki.url, cache_dir=tmp_path)  # a new process would see the same cache
    assert again.search("Lovelace") == hit and again.search("Babbage engine") == miss
    assert len(wiki.calls) == n and again.requests_made == 0
    backend.close()
    again.close()


def test_wikipedia_retries_then_raises(wiki: StandIn, tmp_path: Path) -> None:
    backend = WikipediaBackend(wiki.url, cache_dir=tmp_path, retries=2, backoff=0.01)
    wiki.fail_next = 2
    assert backend.search("Ada Lovelace").title == "Ada Lovelace"  # two 503s, then success
    assert backend.requests_made == 3
    wiki.fail_next = 3
    with pytest.raises(RemoteError) as err:
        backend.search("Lovelace")
    assert err.value.status_code == 503
    dead = WikipediaBackend(
        "http://127.0.0.1:9/w/api.php", cache_dir=tmp_path, retries=1, backoff=0.01, timeout=2
    )
    with pytest.raises(RemoteError, match="2 attempts"):
        dead.search("Ada Lovelace")
    backend.close()
    dead.close()


def test_env_on_wikipedia_stand_in(wiki: StandIn, tmp_path: Path) -> None:
    questions = tmp_path / "q.json"
    questions.write_text(
        json.dumps(
            [{"question": "Who was Ada's father?", "answer": "Lord Byron", "type": "bridge"}]
        )
    )
    env = make(
        "hotpotqa",
        corpus="wikipedia",
        wikipedia_url=wiki.url,
        cache_dir=str(tmp_path / "c"),
        questions=str(questions),
        user_agent="agentq-tests/1.0 (tests@example.org)",
    )
    ctx = env.reset("q-0")
    assert "Wikipedia" in ctx[0]["content"]
    assert env.step("Action: Search[Lovelace]").observation.startswith(
        "Ada Lovelace was an English"
    )
    assert env.step("lookup[father]").observation == "(Result 1 / 1) Her father was Lord Byron."
    assert env.step("lookup[father]").observation == "No more results."
    assert (
        env.step("search[Mercury]").observation == "Could not find Mercury. Similar: ['Mercury']."
    )
    assert env.page_title == "Ada Lovelace"  # a miss leaves the open page open
    obs, reward, done, info = env.step("finish[lord byron]")
    assert reward == 1.0 and done and info["f1"] == 1.0
    assert wiki.agents[-1] == "agentq-tests/1.0 (tests@example.org)"
    assert HotPotQAEnv(corpus=env.backend).tasks("all")[0].startswith("hotpot_dev")  # dev default
    env.close()


def test_core_random_policy_over_valid_actions(env: HotPotQAEnv) -> None:
    from agentq.policies import RandomProposer

    proposer = RandomProposer(seed=0)
    ids = env.tasks("test")
    wins = 0.0
    for tid in ids:
        ctx = env.reset(tid)
        for _ in range(env.max_steps):
            action = proposer.propose(ctx, 1, valid_actions=env.valid_actions())[0].text
            result = env.step(action)
            if result.done:
                wins += result.reward
                break
    print(
        f"agentq 'random' policy over valid_actions(): success {wins / len(ids):.4f} on {len(ids)} tasks"
    )
    assert wins / len(ids) < 0.15


def test_distractor_setting_sees_only_the_task_context() -> None:
    env = HotPotQAEnv(corpus="distractor")
    ids = env.tasks("test")[:20]
    for tid in ids:
        assert run_expert(env, tid)[-1][1].reward == 1.0
    tid = ids[0]
    env.reset(tid)
    assert len(env.backend) == 10
    outsider = next(t for t in make("hotpotqa").backend.titles if t not in env.backend)
    assert env.step(f"search[{outsider}]").observation.startswith(f"Could not find {outsider}.")
    snap = env.snapshot()
    env.reset(ids[1])
    env.restore(snap)  # back to the first task's own ten paragraphs
    assert env.backend is env._task_corpus(tid)
    with pytest.raises(UserInputError, match="context"):
        HotPotQAEnv(corpus="distractor", questions="dev")


def test_fewshot_examples_come_from_train() -> None:
    from agentq.envs.hotpotqa.env import FEWSHOT_IDS

    env = HotPotQAEnv(fewshot=3)
    assert set(FEWSHOT_IDS) <= set(env.tasks("train"))
    system = env.reset(env.tasks("test")[0])[0]["content"]
    assert system.count("Question: ") == 3 and system.count("reward = 1") == 3
    assert "Action: lookup[" in system
    assert "Question:" not in HotPotQAEnv().system_prompt()
    with pytest.raises(UserInputError):
        HotPotQAEnv(fewshot=7)
