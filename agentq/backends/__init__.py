"""Execution backends that run collection and evaluation work away from the driver process.

The local backend is the asyncio one in :mod:`agentq.collect`; :mod:`agentq.backends.ray`
spreads the same work over a Ray cluster (the optional ``agentq[ray]`` extra).
"""
