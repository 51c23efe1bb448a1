"""``python -m agentq`` runs the command line."""

from agentq.cli import main

main()
