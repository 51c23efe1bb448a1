"""Shipped data of the tool-use environment (written by ``python -m agentq.envs.tooluse.generate``)."""
