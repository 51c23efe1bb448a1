"""The Q-value model shipped for ``agentq demo``: LoRA adapter, qmodel.json, provenance.json."""
