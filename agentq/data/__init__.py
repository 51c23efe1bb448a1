"""The files between the stages: trees.jsonl and pairs.jsonl."""

from agentq.data.pairs import build_pairs, read_pairs, write_pairs
from agentq.data.trees import TreeWriter, read_trees

__all__ = ["TreeWriter", "read_trees", "build_pairs", "read_pairs", "write_pairs"]
