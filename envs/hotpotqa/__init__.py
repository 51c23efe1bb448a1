"""HotPotQA in the ReAct setting: ``agentq.envs.make("hotpotqa", ...)``.

Offline by default, on a shipped generated multi-hop world; the real HotpotQA files load through
:mod:`.corpus`, and live Wikipedia (:mod:`.wikipedia`) is opt-in.
"""

from agentq.envs.hotpotqa.env import HotPotQAEnv, parse_action
from agentq.envs.hotpotqa.metrics import exact_match, f1_score, normalize_answer

__all__ = ["HotPotQAEnv", "exact_match", "f1_score", "normalize_answer", "parse_action"]
