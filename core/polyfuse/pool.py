"""Pools: where candidates come from (one model sampled N times, or a panel of models)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .backends.base import Backend
from .errors import InvalidRequestError
from .events import FusionEvent
from .messages import ChatRequest, MessageInput, SamplingParams
from .policy import QuorumPolicy
from .results import Candidate

__all__ = ["Pool", "PoolMember"]


@dataclass(frozen=True)
class PoolMember:
    """One backend of a pool, how many samples to draw from it, and its own parameters.

    ``params`` override the request's sampling parameters for this member only (e.g. a
    per-teacher temperature).
    """

    backend: Backend
    samples: int = 1
    params: SamplingParams = field(default_factory=SamplingParams)

    def __post_init__(self) -> None:
        if not isinstance(self.backend, Backend):
            raise InvalidRequestError(
                f"{type(self.backend).__name__} is not a polyfuse Backend; use "
                "OpenAIEndpoint(base_url, model) or an adapter for your framework's model"
            )
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise InvalidRequestError(
                f"samples must be an integer >= 1 (got {self.samples!r}); use n=1 or more"
            )
        if isinstance(self.params, Mapping):
            object.__setattr__(self, "params", _params(self.params))


def _params(raw: Mapping[str, Any] | SamplingParams | None) -> SamplingParams:
    """Sampling parameters from a mapping (validated) or as they are."""
    if raw is None:
        return SamplingParams()
    if isinstance(raw, SamplingParams):
        return raw
    try:
        return SamplingParams.model_validate(dict(raw))
    except ValidationError as exc:
        raise InvalidRequestError.from_validation_error(exc, "sampling parameters") from None


class Pool:
    """The candidates' sources.

    Build one with :meth:`repeat` (test-time scaling: one model, N samples) or :meth:`panel`
    (a panel of teachers, one sample each unless told otherwise).
    """

    def __init__(self, members: Sequence[PoolMember]) -> None:
        if not members:
            raise InvalidRequestError(
                "the pool is empty; use Pool.repeat(backend, n) or Pool.panel([backend, ...])"
            )
        self.members: tuple[PoolMember, ...] = tuple(members)

    @classmethod
    def repeat(cls, backend: Backend, n: int, **params: Any) -> Pool:
        """Sample ``backend`` ``n`` times (``params`` override the request's, e.g. temperature)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidRequestError(f"n must be an integer >= 1 (got {n!r})")
        return cls([PoolMember(backend, samples=n, params=_params(params))])

    @classmethod
    def panel(
        cls, members: Sequence[Backend | PoolMember], *, samples: int = 1, **params: Any
    ) -> Pool:
        """One member per backend, each sampled ``samples`` times with shared ``params``."""
        if not members:
            raise InvalidRequestError("a panel needs at least one backend")
        shared = _params(params)
        built: list[PoolMember] = []
        for member in members:
            if isinstance(member, PoolMember):
                built.append(member)
            else:
                built.append(PoolMember(member, samples=samples, params=shared))
        return cls(built)

    @property
    def size(self) -> int:
        """N: the number of candidates one fusion samples."""
        return sum(m.samples for m in self.members)

    @property
    def backends(self) -> list[Backend]:
        """The distinct backends, in order."""
        seen: dict[int, Backend] = {}
        for member in self.members:
            seen.setdefault(id(member.backend), member.backend)
        return list(seen.values())

    def __repr__(self) -> str:
        parts = ", ".join(f"{m.backend.name}×{m.samples}" for m in self.members)
        return f"Pool([{parts}])"

    @property
    def members_per_request(self) -> int:
        """How many members one request samples: all of them (a routed pool asks its top k;
        see :class:`polyfuse.routing.RoutedPool`)."""
        return len(self.members)

    def with_members(self, members: Sequence[PoolMember]) -> Pool:
        """A pool of the same kind over ``members`` (one per current member, in order) — how
        wrappers that rebuild members (per-call callbacks, hedging) keep a pool's behaviour,
        e.g. a :class:`~polyfuse.routing.RoutedPool`'s routing."""
        if len(members) != len(self.members):
            raise InvalidRequestError(
                f"{len(members)} members to replace this pool's {len(self.members)}"
            )
        return Pool(members)

    async def for_request(self, request: ChatRequest) -> Pool:
        """The pool that samples ``request``: this one (a routed pool picks members per query;
        see :class:`polyfuse.routing.RoutedPool`)."""
        return self

    @property
    def metadata(self) -> dict[str, Any]:
        """What a fusion records about this pool in its result's ``metadata`` (e.g. routing)."""
        return {}

    async def sample(
        self,
        messages: str | Sequence[MessageInput] | ChatRequest,
        *,
        policy: QuorumPolicy | None = None,
        on_event: Callable[[FusionEvent], None] | None = None,
        **params: Any,
    ) -> list[Candidate]:
        """Draw the pool's candidates concurrently, honouring the quorum policy.

        Returns every candidate (successful, failed or cancelled) ordered by index.
        """
        from ._sampling import sample_pool

        request = (
            messages if isinstance(messages, ChatRequest) else ChatRequest.build(messages, **params)
        )
        pool = await self.for_request(request)
        return await sample_pool(pool, request, policy or QuorumPolicy(), on_event)

    async def aclose(self) -> None:
        """Close every backend's connections for the running loop."""
        for backend in self.backends:
            await backend.aclose()
