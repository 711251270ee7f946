"""polyfuse as a LlamaIndex LLM."""
