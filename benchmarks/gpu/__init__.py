"""GPU serving benchmark: polyfuse fusions over a continuous-batching ``transformers serve``.

Modules: :mod:`.model` (random-init Llama + tokenizer), :mod:`.server` (start/stop the
server), :mod:`.contenders` (direct calls, polyfuse, the LangChain and LlamaIndex adapters,
CPU-harness peers), :mod:`.load` (closed-loop and one-at-a-time drivers), :mod:`.gpumon`
(``nvidia-smi`` sampling), :mod:`.nbatch` (``n`` vs N requests), :mod:`.run` (the whole
benchmark), :mod:`.report` and :mod:`.plots` (tables and PNGs).
"""

__all__: list[str] = []
