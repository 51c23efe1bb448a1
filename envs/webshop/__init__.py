"""WebShop (Yao et al., 2022) as an agentq environment: ``agentq.envs.make("webshop", ...)``.

Pages, the ``search[...]``/``click[...]`` grammar and compact observations live in
:mod:`~agentq.envs.webshop.engine`, the reward in :mod:`~agentq.envs.webshop.reward`, BM25 search
in :mod:`~agentq.envs.webshop.search`, the official-file loaders in
:mod:`~agentq.envs.webshop.loaders`, the shipped-data generator in
:mod:`~agentq.envs.webshop.generate` and a scripted expert in :mod:`~agentq.envs.webshop.expert`.
"""

from agentq.envs.webshop.env import SYSTEM_PROMPT, WebShopEnv

__all__ = ["SYSTEM_PROMPT", "WebShopEnv"]
