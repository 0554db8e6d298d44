"""Integrations with libraries that make LLM calls; each imports its library on first use."""
