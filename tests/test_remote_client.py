"""The ``remote:URL`` client is its own module: importing it needs httpx, not the server."""

from __future__ import annotations

import subprocess
import sys

from agentq.integrations import remote, server


def test_importing_the_client_imports_no_server_framework() -> None:
    code = (
        "import sys\n"
        "import agentq.integrations.remote as r\n"
        "from agentq.specs import resolve_scorer\n"
        "s = resolve_scorer('remote:http://127.0.0.1:9')\n"
        "assert type(s) is r.RemoteScorer, type(s)\n"
        "bad = sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules)\n"
        "print(','.join(bad) or 'clean')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "clean", out.stdout + out.stderr


def test_the_server_module_re_exports_the_client() -> None:
    assert server.RemoteScorer is remote.RemoteScorer
    assert server.remote_scorer_from_spec is remote.remote_scorer_from_spec
