"""Search over actions: MCTS for collection, best-of-N selection for acting."""

from agentq.search.best_of_n import aselect_best, select_best
from agentq.search.mcts import MCTSConfig, MCTSStats, run_mcts

__all__ = ["MCTSConfig", "MCTSStats", "run_mcts", "select_best", "aselect_best"]
