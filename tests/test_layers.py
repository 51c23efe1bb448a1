"""The rooms of DESIGN.md, checked on the source: the core (``agentq/``) imports no environment,
no integration and no command line, and the command modules do not import ``agentq.cli`` back.

Every ``import`` and ``from ... import`` statement of ``agentq/**/*.py`` is read with ``ast``,
wherever it stands (top level or inside a function: a lazy import is an import too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "agentq"
INTEGRATIONS = CORE.parent / "integrations"
FORBIDDEN = ("agentq.envs", "agentq.integrations", "agentq.cli")

# Known violations, each naming the module and what it imports; a fixed one should be taken
# off this list. The demo is WebShop's by definition (the main job on the embedded defaults) and
# takes its held-out task ids from the WebShop class.
KNOWN: set[tuple[str, str]] = set()


def is_cli_module(rel: str) -> bool:
    """The command modules: ``agentq/cli.py``, ``agentq/__main__.py``, ``*/cli.py``,
    ``*_cli.py``. They may import anything (the CLI is the top room)."""
    name = rel.rsplit("/", 1)[-1]
    return name in ("cli.py", "__main__.py") or name.endswith("_cli.py")


def imports_of(path: Path) -> list[str]:
    """Every module ``path`` imports (``from agentq import cli`` gives ``agentq.cli``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
            out.extend(
                f"{node.module}.{a.name}"
                for a in node.names
                if f"{node.module}.{a.name}" in FORBIDDEN
            )
    return out


def hits(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(imports of an environment, an integration or the CLI from a non-CLI module;
    imports of ``agentq.cli`` from a command module other than ``agentq/__main__.py``)."""
    layer: set[tuple[str, str]] = set()
    cycle: set[tuple[str, str]] = set()
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE.parent).as_posix()
        cli = is_cli_module(rel)
        for mod in imports_of(path):
            if not cli and hits(mod, FORBIDDEN):
                layer.add((rel, mod))
            elif cli and rel not in ("agentq/cli.py", "agentq/__main__.py"):
                if hits(mod, ("agentq.cli",)):
                    cycle.add((rel, mod))
    for path in sorted(INTEGRATIONS.rglob("*.py")):  # their command modules (agentq serve)
        rel = path.relative_to(CORE.parent).as_posix()
        if is_cli_module(rel):
            cycle.update((rel, mod) for mod in imports_of(path) if hits(mod, ("agentq.cli",)))
    return layer, cycle


def test_the_walk_sees_lazy_and_from_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text(
        "import agentq.envs as envs\n"
        "def f():\n    from agentq import cli\n    from agentq.integrations.server import X\n"
    )
    found = imports_of(f)
    assert "agentq.envs" in found and "agentq.cli" in found
    assert "agentq.integrations.server" in found
    assert not hits("agentq.client", FORBIDDEN) and not hits("agentq.cli_common", FORBIDDEN)
    assert is_cli_module("agentq/models/reward_cli.py") and is_cli_module("agentq/eval/cli.py")
    assert not is_cli_module("agentq/cli_common.py") and not is_cli_module("agentq/eval/runner.py")


def test_environments_are_found_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core builds environments from the ``agentq.envs`` entry points (and run-time
    registrations) without naming one; ``agentq.envs`` re-exports the same registry."""
    import agentq.envs

    from agentq import environments, registry
    from agentq.errors import UserInputError

    assert {"toy", "webshop", "hotpotqa", "tooluse"} <= set(registry.names(registry.ENVS))
    assert agentq.envs.make is environments.make
    monkeypatch.setattr(environments, "_RUNTIME", {})
    environments.register("mine", "agentq.envs.toy:ToyEnv")
    source = environments.EnvSource("mine", {"rooms": 2})
    ids = source.task_ids("train", 2)
    assert len(ids) == 2 and source() is source.probe and source() is not source.probe
    with pytest.raises(UserInputError, match="unknown environment 'nope'"):
        environments.make("nope")
    with pytest.raises(UserInputError, match="bad options"):
        environments.make("toy", no_such_option=1)


def test_core_imports_no_environment_integration_or_cli() -> None:
    layer, _ = violations()
    new = layer - KNOWN
    assert not new, "the core imports an environment, an integration or the CLI: " + ", ".join(
        f"{f} imports {m}" for f, m in sorted(new)
    )


def test_command_modules_do_not_import_the_cli_back() -> None:
    _, cycle = violations()
    new = cycle - KNOWN
    assert not new, (
        "agentq.cli imports the command modules, so importing it back makes a cycle (use "
        "agentq.cli_common and agentq.config): " + ", ".join(f for f, _ in sorted(new))
    )


@pytest.mark.parametrize(
    "module",
    [
        "agentq.models.reward",
        "agentq.data.tara",
        "agentq.react",
        "agentq.eval.runner",
        "agentq.collect",
        "agentq.environments",
    ],
)
def test_importing_core_modules_loads_no_environment(module: str) -> None:
    """At run time too: importing these leaves ``agentq.envs`` unimported."""
    import subprocess
    import sys

    code = (
        f"import sys, {module}; "
        "bad = [m for m in sys.modules if m.startswith(('agentq.envs', 'agentq.integrations'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
