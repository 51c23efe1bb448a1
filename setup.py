"""Package list: ``envs/`` and ``integrations/`` are installed as ``agentq.envs`` and
``agentq.integrations`` (see ``[tool.setuptools.package-dir]`` in pyproject.toml)."""

from setuptools import find_packages, setup


def _packages(top: str, folder: str) -> list[str]:
    return [top] + [f"{top}.{p}" for p in find_packages(folder)]


setup(
    packages=_packages("agentq", "agentq")
    + _packages("agentq.envs", "envs")
    + _packages("agentq.integrations", "integrations")
)
