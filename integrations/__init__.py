"""Framework integrations: LangGraph, LangChain middleware, OpenAI-compatible clients, server."""
