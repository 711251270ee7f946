"""polyfuse as a LlamaIndex response synthesizer."""
