"""Files shipped with agentq.eval (the demo's Q-value model)."""
