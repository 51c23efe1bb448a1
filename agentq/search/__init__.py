"""Search over actions: MCTS for collection, the selection step for acting."""

from agentq.search.mcts import MCTSConfig, MCTSStats, run_mcts
from agentq.search.selection import Selection, aselect, aselect_best, select, select_best

__all__ = [
    "MCTSConfig",
    "MCTSStats",
    "Selection",
    "aselect",
    "aselect_best",
    "run_mcts",
    "select",
    "select_best",
]
