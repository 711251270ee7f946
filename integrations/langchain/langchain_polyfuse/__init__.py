"""LangChain and LangGraph adapters for polyfuse."""
