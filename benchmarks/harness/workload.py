"""The workload every contender runs: one prompt, N candidates, one fusor call.

All contenders send the same question with the same sampling parameters, and build their fusor
prompt from the same text (polyfuse's default ``fuse`` prompt) with their own idiom, so that the
bytes on the wire are comparable and only the client machinery differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from polyfuse.prompts import load_prompt

__all__ = ["DEFAULT_PROMPT", "Workload"]

DEFAULT_PROMPT = (
    "Explain in a short paragraph why the sky is blue during the day and red at sunset, "
    "and name the physical effect involved."
)


@dataclass(frozen=True)
class Workload:
    """One fusion: where each candidate and the fusor are sent, and with what parameters.

    Attributes:
        candidate_urls: the base URL of each candidate (length N). All equal for one endpoint
            sampled N times; one differs in the straggler case.
        fusor_url: the fusor's base URL.
        model: the model name sent in every request.
        api_key: a bearer token for the server (the simulated one accepts anything).
        prompt: the user question.
        max_tokens: the completion budget of every call.
        temperature: the candidates' sampling temperature.
        quorum: polyfuse only: proceed when this many candidates are in (None: wait for all).
        supports_n: polyfuse only: ``None`` learns whether the server honours ``n`` (so one
            ``n``-batched request per endpoint when it does); ``False`` fans out N requests.
        max_connections: connection pool size each contender is given (sized to the
            concurrency, as the design asks of every client).
    """

    candidate_urls: tuple[str, ...]
    fusor_url: str
    model: str = "sim-model"
    api_key: str = "sk-benchmark"
    prompt: str = DEFAULT_PROMPT
    max_tokens: int = 64
    temperature: float = 0.8
    quorum: int | None = None
    supports_n: bool | None = None
    max_connections: int = 1024
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def single(cls, base_url: str, n: int = 5, **kwargs: Any) -> Workload:
        """N candidates and the fusor, all on one endpoint."""
        return cls(candidate_urls=(base_url,) * n, fusor_url=base_url, **kwargs)

    @property
    def n(self) -> int:
        """The number of candidates."""
        return len(self.candidate_urls)

    @property
    def one_endpoint(self) -> bool:
        """Whether every candidate goes to the same endpoint."""
        return len(set(self.candidate_urls)) == 1

    def with_(self, **changes: Any) -> Workload:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The workload as JSON-able fields (sent to worker processes)."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["candidate_urls"] = list(self.candidate_urls)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Workload:
        """The inverse of :meth:`to_json`."""
        return cls(**{**data, "candidate_urls": tuple(data["candidate_urls"])})

    # -------------------------------------------------------------- the shared fusor prompt

    @property
    def fusor_system(self) -> str:
        """The fusor's system message (polyfuse's default ``fuse`` prompt)."""
        return load_prompt("fuse").system

    @property
    def conversation(self) -> str:
        """The request as the fusor prompt shows it."""
        return f"<request>\n{self.prompt}\n</request>"

    def fusor_user(self, candidates: list[str]) -> str:
        """The fusor's user message for these candidate texts."""
        drafts = "\n\n".join(
            f'<draft id="{i}">\n{text.strip()}\n</draft>' for i, text in enumerate(candidates, 1)
        )
        return load_prompt("fuse").user.format(conversation=self.conversation, candidates=drafts)

    def fusor_messages(self, candidates: list[str]) -> list[dict[str, str]]:
        """The fusor call's messages for these candidate texts."""
        return [
            {"role": "system", "content": self.fusor_system},
            {"role": "user", "content": self.fusor_user(candidates)},
        ]
