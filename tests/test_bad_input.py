"""Every bad user input of the CLI: one ``error:`` line, exit 2, nothing written, inputs kept.

One parametrised test over the classes of bad input (out-of-range and non-finite numbers,
outputs that are inputs, outputs under a regular file, resuming onto another kind of file,
empty inputs, unknown model names, unbounded sizes, usage errors).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentq.cli import app

runner = CliRunner()


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a small trees.jsonl, its pairs.jsonl, an empty file and a regular file."""
    d = tmp_path_factory.mktemp("inputs")
    trees, pairs = d / "trees.jsonl", d / "pairs.jsonl"
    r = runner.invoke(
        app,
        ["collect", "--out", str(trees), "--tasks", "3", "--iterations", "8", "--n", "2"]
        + ["--no-progress"],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["pairs", str(trees), "--out", str(pairs), "--scheme", "siblings"])
    assert r.exit_code == 0, r.output
    (d / "empty.jsonl").write_text("")
    (d / "afile").write_text("not a folder\n")
    (d / "neg.toml").write_text("tasks = -1\n")
    return d


T, P, E, F = "{trees}", "{pairs}", "{empty}", "{afile}"
OUT = "{out}"

# (id, argv, a substring the error line must hold)
CASES: list[tuple[str, list[str], str]] = [
    # collect: numbers
    ("collect-negative-tasks", ["collect", "--tasks", "-1", "--out", OUT], "--tasks"),
    ("collect-config-negative-tasks", ["collect", "--config", "{neg}", "--out", OUT], "--tasks"),
    ("collect-c-nan", ["collect", "--c", "nan", "--out", OUT], "c "),
    ("collect-c-inf", ["collect", "--c", "inf", "--out", OUT], "c "),
    ("collect-negative-concurrency", ["collect", "--concurrency", "-1", "--out", OUT], "concur"),
    ("collect-zero-concurrency", ["collect", "--concurrency", "0", "--out", OUT], "concur"),
    ("collect-unbounded-n", ["collect", "--n", str(10**12), "--out", OUT], "n must be"),
    ("collect-zero-iterations", ["collect", "--iterations", "0", "--out", OUT], "iterations"),
    (
        "collect-depth-reward-nan",
        ["collect", "--depth-limit-reward", "nan", "--out", OUT],
        "finite",
    ),
    ("collect-negative-retries", ["collect", "--retries", "-1", "--out", OUT], "--retries"),
    # collect: environment options that make every task fail
    ("collect-doors-0", ["collect", "--env-option", "doors=0", "--out", OUT], "doors"),
    ("collect-rooms-0", ["collect", "--env-option", "rooms=0", "--out", OUT], "rooms"),
    ("collect-variant-nope", ["collect", "--env-option", "variant=nope", "--out", OUT], "variant"),
    (
        "collect-unknown-env-option",
        ["collect", "--env-option", "colour=red", "--out", OUT],
        "colour",
    ),
    # collect: files
    ("collect-resume-onto-pairs", ["collect", "--resume", "--out", P], "not a tree"),
    ("collect-out-under-a-file", ["collect", "--out", F + "/t.jsonl"], "not a directory"),
    ("collect-out-is-a-directory", ["collect", "--out", "{dir}", "--overwrite"], "directory"),
    # collect: models
    ("collect-unknown-policy", ["collect", "--policy", "nope", "--out", OUT], "nope"),
    (
        "collect-unknown-rollout-scorer",
        ["collect", "--rollout", "scorer", "--rollout-scorer", "nope", "--out", OUT],
        "nope",
    ),
    # pairs
    ("pairs-val-fraction-2", ["pairs", T, "--out", OUT, "--val-fraction", "2"], "--val-fraction"),
    (
        "pairs-val-fraction-nan",
        ["pairs", T, "--out", OUT, "--val-fraction", "nan"],
        "--val-fraction",
    ),
    ("pairs-negative-min-visits", ["pairs", T, "--out", OUT, "--min-visits", "-1"], "--min-visits"),
    ("pairs-margin-nan", ["pairs", T, "--out", OUT, "--margin", "nan"], "--margin"),
    ("pairs-out-is-input", ["pairs", T, "--out", T, "--overwrite"], "is the input"),
    ("pairs-of-a-pairs-file", ["pairs", P, "--out", OUT], "not a tree"),
    ("pairs-of-an-empty-file", ["pairs", E, "--out", OUT], "no successful trees"),
    ("pairs-out-under-a-file", ["pairs", T, "--out", F + "/p.jsonl"], "not a directory"),
    # view
    ("view-negative-limit", ["view", T, "--limit", "-1", "--out", OUT], "--limit"),
    ("view-zero-max-chars", ["view", T, "--max-chars", "0", "--out", OUT], "--max-chars"),
    ("view-out-is-input", ["view", T, "--out", T], "is the input"),
    ("view-out-under-a-file", ["view", T, "--out", F + "/v.html"], "not a directory"),
    # eval-pairs / eval-toolcomp
    ("eval-pairs-empty-file", ["eval-pairs", E, "--no-progress"], "no records"),
    ("eval-pairs-negative-limit", ["eval-pairs", P, "--limit", "-1"], "--limit"),
    ("eval-pairs-out-is-input", ["eval-pairs", P, "--out", P], "is the input"),
    ("eval-toolcomp-negative-limit", ["eval-toolcomp", P, "--limit", "-1"], "--limit"),
    # eval
    ("eval-negative-tasks", ["eval", "--tasks", "-1", "--out", OUT], "--tasks"),
    ("eval-zero-n", ["eval", "--n", "0", "--out", OUT], "--n"),
    ("eval-unbounded-n", ["eval", "--n", str(10**12), "--out", OUT], "--n"),
    ("eval-zero-concurrency", ["eval", "--concurrency", "0", "--out", OUT], "--concurrency"),
    ("eval-temperature-nan", ["eval", "--temperature", "nan", "--out", OUT], "--temperature"),
    (
        "eval-bad-qmodel",
        ["eval", "--qmodel", "{nodir}", "--out", OUT, "--no-progress"],
        "not found",
    ),
    ("eval-bad-scorer", ["eval", "--scorer", "nope", "--out", OUT, "--no-progress"], "nope"),
    ("eval-unknown-policy", ["eval", "--policy", "nope", "--out", OUT, "--no-progress"], "nope"),
    ("eval-out-under-a-file", ["eval", "--out", F + "/report"], "not a directory"),
    ("eval-rooms-0", ["eval", "--env-option", "rooms=0", "--out", OUT], "rooms"),
    # serve (fails before binding anything)
    (
        "serve-negative-max-body-bytes",
        ["serve", "--scorer", "random", "--max-body-bytes", "-1"],
        "max_body_bytes",
    ),
    (
        "serve-zero-max-items",
        ["serve", "--scorer", "random", "--max-batch-actions", "0"],
        "max_batch_actions",
    ),
    (
        "serve-negative-max-context-tokens",
        ["serve", "--scorer", "random", "--max-context-tokens", "-1"],
        "--max-context-tokens",
    ),
    (
        "serve-bad-idle-timeout",
        ["serve", "--scorer", "random", "--idle-timeout", "nan"],
        "idle_timeout",
    ),
    ("serve-bad-port", ["serve", "--scorer", "random", "--port", "0"], "--port"),
    # usage errors (typer/click): one error line too
    ("usage-not-an-integer", ["collect", "--tasks", "abc"], "--tasks"),
    ("usage-unknown-flag", ["collect", "--no-such-flag"], "--no-such-flag"),
    ("usage-missing-argument", ["pairs"], "trees"),
    ("usage-unknown-command", ["colect"], "colect"),
]


@pytest.mark.parametrize("argv,expect", [(a, e) for _, a, e in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_exit_2_nothing_written(
    files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], expect: str
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the default: no hub download
    monkeypatch.delenv("AGENTQ_ALLOW_DOWNLOAD", raising=False)
    out_dir = tmp_path / "outputs"
    out_dir.mkdir()
    (out_dir / "adir").mkdir()
    names = {
        "trees": files / "trees.jsonl",
        "pairs": files / "pairs.jsonl",
        "empty": files / "empty.jsonl",
        "afile": files / "afile",
        "neg": files / "neg.toml",
        "out": out_dir / "out.jsonl",
        "dir": out_dir / "adir",
        "nodir": tmp_path / "no-such-qmodel",
    }
    args = [a.format(**{k: str(v) for k, v in names.items()}) for a in argv]
    before_inputs, before_outputs = _snapshot(files), _snapshot(out_dir)
    t0 = time.perf_counter()
    r = runner.invoke(app, args)
    wall = time.perf_counter() - t0
    err = r.stderr.strip()
    assert r.exit_code == 2, (args, r.exit_code, r.output, repr(r.exception))
    assert err.startswith("error: ") and "\n" not in err, err
    assert expect in err, err
    assert _snapshot(files) == before_inputs, "an input changed"
    assert _snapshot(out_dir) == before_outputs, "something was written"
    assert sorted(p.name for p in out_dir.iterdir()) == ["adir"]
    assert wall < 30, f"took {wall:.0f} s (a network attempt?)"


def test_unknown_policy_does_not_try_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--policy nope`` is refused before any hub client is asked."""
    import huggingface_hub

    calls: list[str] = []

    def no_network(*a: object, **k: object) -> None:
        calls.append("network")
        raise AssertionError("network attempted")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("AGENTQ_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    from agentq.errors import UserInputError
    from agentq.specs import resolve_policy

    with pytest.raises(UserInputError, match="unknown model 'nope'"):
        resolve_policy("nope")
    with pytest.raises(UserInputError, match="unknown model"):
        resolve_policy("some-org/some-model")
    assert calls == []
