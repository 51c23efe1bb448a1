"""benchmarks/gpu_suite.py runs without a GPU, a hub or an install: ``--quick`` on the CPU prints
its table; sections whose packages are missing skip with the reason."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def test_quick_runs_every_section_on_the_cpu_and_prints_the_table():
    r = subprocess.run(
        [sys.executable, str(BENCH / "gpu_suite.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "agentq GPU suite on cpu (--quick" in out
    table = out[out.index("| section | measurement | result |") :].splitlines()
    rows = [ln.split(" | ")[0].strip("| ") for ln in table[2:] if ln.startswith("| ")]
    assert {"scoring", "cache", "server"} <= set(rows), out
    assert "failed" not in out and "skipped" not in out, out
    assert sum("(random weights)" in ln for ln in table if ln.startswith("| scoring")) == 2
    assert "webshop-shaped episode" in out and "tooluse-shaped episode" in out
    assert "req/s batching" in out and "peak bytes / budget" in out


def _suite(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import gpu_suite

    monkeypatch.setattr(gpu_suite, "ROWS", [])
    return gpu_suite


def test_server_section_skips_with_the_missing_packages(monkeypatch):
    gpu_suite = _suite(monkeypatch)
    monkeypatch.setattr(gpu_suite, "missing", lambda mods: [m for m in mods if m == "fastapi"])
    gpu_suite.server_section(argparse.Namespace())
    assert gpu_suite.ROWS == [
        (
            "server",
            "section",
            "skipped: missing fastapi (carry their wheels: see gpu_suite.sh)",
        )
    ]
    args = gpu_suite.parse_args(["--quick"])
    assert args.offline and args.device == "cpu" and args.large_config == "tiny-large"
    args = gpu_suite.parse_args(["--offline"])
    assert (args.small_config, args.large_config, args.device) == (
        "smollm2-135m",
        "llama-3.2-1b",
        "cuda",
    )


def test_offline_configs_are_the_named_architectures(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from offline_models import load_config, named_configs

    assert {"smollm2-135m", "llama-3.2-1b", "llama-3.2-3b", "tiny"} <= set(named_configs())
    smol = load_config("smollm2-135m")
    assert (smol["hidden_size"], smol["num_hidden_layers"], smol["vocab_size"]) == (576, 30, 49152)
    assert not any(k.startswith("_") and k != "_name_or_path" for k in smol)
    with pytest.raises(ValueError, match="unknown model config"):
        load_config("nope")


def test_padded_tokenizer_round_trips_every_id(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from offline_models import padded_tokenizer

    tok = padded_tokenizer(1000)
    assert len(tok) == 1000
    ids = [300, 999, 70, 71, 500]
    text = tok.decode(ids, skip_special_tokens=True)
    assert tok(text, add_special_tokens=False)["input_ids"] == ids


def test_checkout_imports_without_an_install():
    """A python that does not have agentq installed (the editable finder removed) imports
    agentq.envs and agentq.integrations from the checkout's layout, subprocesses too."""
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        "try:\n"
        "    import agentq.envs\n"
        "    raise SystemExit('agentq is still importable')\n"
        "except ModuleNotFoundError:\n"
        "    pass\n"
        "from checkout_imports import ensure_agentq_importable\n"
        "overlay = ensure_agentq_importable()\n"
        "assert overlay is not None\n"
        "from agentq.envs.toy import ToyEnv\n"
        "import agentq.integrations, agentq.models.prefix_cache\n"
        "assert ToyEnv().tasks('train')\n"
        "import subprocess\n"
        'child = \'import sys; sys.meta_path[:] = [f for f in sys.meta_path if "editable" '
        "not in repr(f).lower()]; import agentq.envs.toy'\n"
        "subprocess.run([sys.executable, '-c', child], check=True, cwd='/')\n"
        "print('ok', overlay)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok /")
