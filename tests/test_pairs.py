"""Preference pairs from a hand-made tree: both schemes, the split, the file format."""

from __future__ import annotations

import json

import pytest

from agentq.data.pairs import build_pairs, read_pairs, split_of, write_pairs
from agentq.errors import UserInputError
from agentq.types import TaskTree, TreeNode

CTX = [{"role": "system", "content": "sys"}, {"role": "user", "content": "task"}]


def node(i, parent, action, depth, q, visits, *, reward=0.0, done=False, obs=None):
    return TreeNode(
        id=i,
        parent=parent,
        action=action,
        depth=depth,
        observation=obs or f"o{i}",
        reward=reward,
        done=done,
        visits=visits,
        value_sum=q * visits,
        stepped=True,
    )


def hand_tree() -> TaskTree:
    #            root
    #     a(.8,10)  b(.2,5)  c(.5,4)
    #   a1(1.,6, done r=1)  a2(.5,4)
    #                 a2x(.5,2) a2y(.5,2)     <- a tie at depth 2 (off the best path anyway)
    nodes = [
        node(0, None, None, 0, 0.6, 19),
        node(1, 0, "a", 1, 0.8, 10),
        node(2, 0, "b", 1, 0.2, 5),
        node(3, 0, "c", 1, 0.5, 4),
        node(4, 1, "a1", 2, 1.0, 6, reward=1.0, done=True),
        node(5, 1, "a2", 2, 0.5, 4),
        node(6, 5, "a2x", 3, 0.5, 2),
        node(7, 5, "a2y", 3, 0.5, 2),
    ]
    for n in nodes[1:]:
        nodes[n.parent].children.append(n.id)
    return TaskTree(task_id="t1", context=CTX, nodes=nodes)


def summary(pairs):
    return [(p["depth"], p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs]


def test_best_path_scheme():
    pairs = build_pairs([hand_tree()], "best-path", val_fraction=0.0)
    assert summary(pairs) == [(0, "a", "b"), (1, "a1", "a2")]
    first, second = pairs
    assert first["prompt"] == CTX
    assert second["prompt"] == CTX + [
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "Observation: o1"},
    ]
    assert (second["q_chosen"], second["q_rejected"]) == (1.0, 0.5)
    assert (second["visits_chosen"], second["visits_rejected"]) == (6, 4)
    assert all(p["task_id"] == "t1" and p["split"] == "train" for p in pairs)


def test_best_path_skips_ties():
    tree = hand_tree()
    tree.nodes[5].value_sum = 1.0 * 4  # a2 now ties a1 at depth 1
    assert summary(build_pairs([tree], "best-path")) == [(0, "a", "b")]


def test_sibling_scheme_margin_and_visits():
    pairs = build_pairs([hand_tree()], "siblings", margin=0.25, min_visits=4)
    assert sorted(summary(pairs)) == [(0, "a", "b"), (0, "a", "c"), (0, "c", "b"), (1, "a1", "a2")]
    pairs = build_pairs([hand_tree()], "siblings", margin=0.35, min_visits=4)
    assert sorted(summary(pairs)) == [(0, "a", "b"), (1, "a1", "a2")]
    pairs = build_pairs([hand_tree()], "siblings", margin=0.25, min_visits=5)
    assert summary(pairs) == [(0, "a", "b")]
    # equal Q never makes a pair, whatever the margin
    pairs = build_pairs([hand_tree()], "siblings", margin=0.0, min_visits=1)
    assert (3, "a2x", "a2y") not in summary(pairs) and (3, "a2y", "a2x") not in summary(pairs)


def test_split_is_deterministic_by_task():
    ids = [f"task-{i}" for i in range(400)]
    first = [split_of(t, 0.25) for t in ids]
    assert first == [split_of(t, 0.25) for t in ids]
    assert 60 < first.count("validation") < 140
    with pytest.raises(UserInputError):
        build_pairs([hand_tree()], "nonsense")


def test_file_loads_in_datasets_and_trl(tmp_path):
    from datasets import load_dataset
    from trl.data_utils import apply_chat_template, is_conversational

    from agentq.models.tiny import make_tiny_tokenizer

    path = tmp_path / "pairs.jsonl"
    n = write_pairs(path, build_pairs([hand_tree()], "siblings", margin=0.1))
    assert n == len(read_pairs(path)) > 0
    ds = load_dataset("json", data_files=str(path), split="train")
    assert {"prompt", "chosen", "rejected", "task_id", "q_chosen"} <= set(ds.column_names)
    example = ds[0]
    assert is_conversational(example)
    out = apply_chat_template(example, make_tiny_tokenizer())
    assert out["chosen"].strip() and out["prompt"].strip()


def test_read_pairs_rejects_bad_records(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = {
        "prompt": CTX,
        "chosen": [{"role": "assistant", "content": "x"}],
        "rejected": [{"role": "assistant", "content": "y"}],
    }
    path.write_text(
        json.dumps(good)
        + "\n"
        + json.dumps({**good, "rejected": [{"role": "assistant", "content": " "}]})
        + "\n"
    )
    with pytest.raises(UserInputError, match="pair 2 has an empty 'rejected'"):
        read_pairs(path)
    path.write_text(json.dumps({"prompt": CTX}) + "\n")
    with pytest.raises(UserInputError, match="no 'chosen'"):
        read_pairs(path)


def test_max_value_ranks_by_the_best_return_found_below():
    #          root
    #     a(q .3, 10)                b(q .5, 10)
    #  a1(done r=1, 1) a2(q .2, 9)   b1(done r=.5, 10)
    nodes = [
        node(0, None, None, 0, 0.4, 20),
        node(1, 0, "a", 1, 0.3, 10),
        node(2, 0, "b", 1, 0.5, 10),
        node(3, 1, "a1", 2, 1.0, 1, reward=1.0, done=True),
        node(4, 1, "a2", 2, 0.2, 9),
        node(5, 2, "b1", 2, 0.5, 10, reward=0.5, done=True),
    ]
    for n in nodes[1:]:
        nodes[n.parent].children.append(n.id)
    tree = TaskTree(task_id="t1", context=CTX, nodes=nodes)
    from agentq.data.pairs import max_returns

    assert max_returns(tree) == {0: 1.0, 1: 1.0, 2: 0.5, 3: 1.0, 4: 0.2, 5: 0.5}
    mean = build_pairs([tree], "siblings", margin=0.1, val_fraction=0.0)
    best = build_pairs([tree], "siblings", margin=0.1, val_fraction=0.0, value="max")
    assert (0, "b", "a") in summary(mean) and (0, "a", "b") in summary(best)
    assert [p["q_chosen"] for p in best if p["depth"] == 0] == [1.0]
    with pytest.raises(UserInputError, match="unknown value"):
        build_pairs([tree], "siblings", value="median")


def test_discount_prefers_the_shorter_way_to_the_same_reward():
    # an item page: buy now earns .6 at once; an option click can still buy later, for 1.0;
    # a "wait" click (re-select) leads to the same buy now two steps later.
    #                 root
    #   buy(done r=.6)   opt(q .6)           wait(q .6)
    #                    opt_buy(done r=1)   wait_buy(done r=.6)
    nodes = [
        node(0, None, None, 0, 0.6, 12),
        node(1, 0, "buy", 1, 0.6, 4, reward=0.6, done=True),
        node(2, 0, "opt", 1, 0.6, 4),
        node(3, 0, "wait", 1, 0.6, 4),
        node(4, 2, "opt_buy", 2, 1.0, 3, reward=1.0, done=True),
        node(5, 3, "wait_buy", 2, 0.6, 3, reward=0.6, done=True),
    ]
    for n in nodes[1:]:
        nodes[n.parent].children.append(n.id)
    tree = TaskTree(task_id="t1", context=CTX, nodes=nodes)
    from agentq.data.pairs import max_returns

    flat = max_returns(tree)
    assert flat[1] == flat[3] == 0.6  # without a discount waiting is worth as much as buying
    q = max_returns(tree, gamma=0.9)
    assert q[2] == pytest.approx(0.9) and q[1] == pytest.approx(0.6)
    assert q[3] == pytest.approx(0.54)  # waiting now costs a step
    pairs = build_pairs([tree], "siblings", margin=0.05, val_fraction=0.0, value="max", gamma=0.9)
    assert set(summary(pairs)) == {(0, "opt", "buy"), (0, "opt", "wait"), (0, "buy", "wait")}
    with pytest.raises(UserInputError, match="gamma"):
        build_pairs([tree], "siblings", value="max", gamma=0.0)


def test_pairs_flags_are_the_pairs_config_fields(tmp_path):
    """``agentq pairs``' flags, defaults and help come from PairsConfig; a bad value from the
    command line or a --config file is one error line and exit code 2."""
    import typer
    from typer.testing import CliRunner

    from agentq.cli import app
    from agentq.config import from_options, options
    from agentq.data.pairs import PairsConfig

    params = {p.name: p for p in typer.main.get_command(app).commands["pairs"].params}
    opts = [o for o in options(PairsConfig) if o.cli]
    assert set(params) == {o.name for o in opts} | {"config"}
    for o in opts:
        assert params[o.name].help == o.help, o.name
        assert o.argument or params[o.name].default == o.default, o.name
    assert params["trees"].required and params["scheme"].default == "best-path"
    for bad, flag in (
        ({"val_fraction": 2.0}, "--val-fraction"),
        ({"gamma": 0.0}, "--gamma"),
        ({"scheme": "nope"}, "scheme"),
        ({"trees": "t.jsonl", "margin": -1.0}, "--margin"),
    ):
        with pytest.raises(UserInputError, match=flag):
            from_options(PairsConfig, {"trees": "t.jsonl", **bad})
    trees = tmp_path / "trees.jsonl"
    trees.write_text("")
    cfg = tmp_path / "p.toml"
    cfg.write_text("min_visits = -1\n")
    r = CliRunner().invoke(app, ["pairs", str(trees), "--config", str(cfg)])
    assert r.exit_code == 2 and r.stderr.strip() == "error: --min-visits must be >= 0, not -1"
    cfg.write_text('scheme = "siblings"\n')
    r = CliRunner().invoke(app, ["pairs", str(trees), "--config", str(cfg), "--out", "x"])
    assert r.exit_code == 2 and "no successful trees" in r.stderr
