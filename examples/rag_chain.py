"""A small RAG chain whose answer is fused from N candidates.

    python examples/rag_chain.py --base-url http://127.0.0.1:8000/v1 --model qwen --n 3 \
        "How long does light from the Sun take to reach Earth?"

    python examples/rag_chain.py --local "Which planet has the most moons?"

The retriever is a plain lexical (term-overlap) retriever over a few in-memory notes, so the
example needs no embedding model and no download; swap in any LangChain retriever (a vector
store's ``as_retriever()``, BM25, ...) without touching the rest of the chain. Every candidate
and the fusor see the same retrieved context.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnablePassthrough

from langchain_polyfuse import ChatFusion

NOTES = [
    Document(
        page_content="Sunlight takes about 8 minutes and 20 seconds to travel the roughly "
        "150 million kilometres from the Sun to Earth.",
        metadata={"source": "light.md"},
    ),
    Document(
        page_content="Saturn has the most known moons of any planet: 146 confirmed as of "
        "2023, ahead of Jupiter with 95.",
        metadata={"source": "moons.md"},
    ),
    Document(
        page_content="Venus is the hottest planet, with a surface near 465 degrees Celsius, "
        "because its thick carbon dioxide atmosphere traps heat.",
        metadata={"source": "venus.md"},
    ),
    Document(
        page_content="A day on Mars, called a sol, lasts 24 hours and 39 minutes.",
        metadata={"source": "mars.md"},
    ),
    Document(
        page_content="Jupiter's Great Red Spot is a storm larger than Earth that has lasted "
        "for at least 190 years.",
        metadata={"source": "jupiter.md"},
    ),
]

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be by does for from how in is it of on or the to what which".split()
)


def _terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


class LexicalRetriever(BaseRetriever):
    """Ranks documents by the query terms they contain, weighted by rarity (TF-IDF-like)."""

    documents: list[Document]
    k: int = 2

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        counts = [Counter(_terms(doc.page_content)) for doc in self.documents]
        total = len(self.documents)

        def idf(term: str) -> float:
            having = sum(1 for c in counts if term in c)
            return math.log((1 + total) / (1 + having)) + 1.0

        query_terms = set(_terms(query))
        scored = [
            (sum(idf(t) * (1 + math.log(c[t])) for t in query_terms if t in c), i)
            for i, c in enumerate(counts)
        ]
        ranked = sorted((s, i) for s, i in scored if s > 0)[::-1]
        return [self.documents[i] for _, i in ranked[: self.k]]


PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "Answer the question using only the notes below. Cite the source file in "
            "brackets. If the notes do not contain the answer, say so.\n\nNotes:\n{context}",
        ),
        ("human", "{question}"),
    ]
)


def format_docs(docs: Sequence[Document]) -> str:
    """Notes as ``[source] text`` lines."""
    return "\n".join(f"[{d.metadata.get('source', '?')}] {d.page_content}" for d in docs)


def build_rag_chain(
    llm: BaseChatModel, retriever: BaseRetriever | None = None
) -> Runnable[str, str]:
    """question -> retrieve -> prompt -> fused answer -> text."""
    retriever = retriever or LexicalRetriever(documents=NOTES)
    return (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | PROMPT
        | llm
        | StrOutputParser()
    )


def answer(base_url: str, model: str, question: str, *, n: int = 3, **settings: object) -> str:
    """Answer ``question`` from the notes with ``n`` fused samples of ``model``."""
    llm = ChatFusion(base_url=base_url, model=model, n=n, **settings)  # type: ignore[arg-type]
    return build_rag_chain(llm).invoke(question)


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
    parser.add_argument("--n", type=int, default=3)
    args = parser.parse_args(argv)
    if args.local:
        from polyfuse.local import LocalModel

        with LocalModel(slots=args.n + 1) as local:
            text = answer(
                local.base_url,
                local.model,
                args.question,
                n=args.n,
                supports_n=False,
                max_concurrency=local.slots,
                max_tokens=args.max_tokens,
            )
    else:
        if not args.model:
            parser.error("--model is required with --base-url")
        text = answer(args.base_url, args.model, args.question, n=args.n)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
