"""Import agentq from this checkout where it is not installed (a bare GPU machine).

setuptools maps the top-level ``envs/`` and ``integrations/`` folders into ``agentq.envs`` and
``agentq.integrations`` at install time, so a plain ``PYTHONPATH=.`` finds ``agentq`` but not
those two. :func:`ensure_agentq_importable` builds that layout from symbolic links in a
temporary folder and puts it first on ``sys.path`` and ``PYTHONPATH`` (subprocesses, such as
bench_server.py's load generator, see it too). Nothing is installed; an installed agentq is
left alone. Entry points (the environment registry, ``agentq.envs.make``) need an install;
import environment classes directly instead.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PARTS = ("agentq", "agentq.envs", "agentq.integrations")


def ensure_agentq_importable() -> str | None:
    """Make ``agentq``, ``agentq.envs`` and ``agentq.integrations`` importable; return the
    folder of links it made, or None when they already were."""
    try:
        importlib.import_module("agentq.envs")
        importlib.import_module("agentq.integrations")
        return None
    except ModuleNotFoundError as e:
        if e.name not in _PARTS:
            raise
    overlay = Path(tempfile.mkdtemp(prefix="agentq-checkout-"))
    atexit.register(shutil.rmtree, overlay, True)  # the links, not what they point to
    pkg = overlay / "agentq"
    pkg.mkdir()
    for item in (ROOT / "agentq").iterdir():
        if item.name != "__pycache__":
            (pkg / item.name).symlink_to(item)
    (pkg / "envs").symlink_to(ROOT / "envs")
    (pkg / "integrations").symlink_to(ROOT / "integrations")
    sys.path.insert(0, str(overlay))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(overlay) + (os.pathsep + old if old else "")
    for name in [m for m in sys.modules if m == "agentq" or m.startswith("agentq.")]:
        del sys.modules[name]  # an agentq found on the path without its two mapped folders
    importlib.invalidate_caches()
    importlib.import_module("agentq.envs")
    importlib.import_module("agentq.integrations")
    return str(overlay)
