"""Building a polyfuse ``Fusion`` from ``ChatFusion``'s settings, and binding it to one call."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from polyfuse import (
    Backend,
    Fusion,
    FusionSpec,
    HedgedBackend,
    InvalidRequestError,
    OpenAIEndpoint,
    Pool,
    PoolMember,
)

from .backends import LangChainBackend

__all__ = ["FusionPlan", "member_backend", "shared_endpoint"]


_CACHE_SIZE = 128
_endpoints: OrderedDict[tuple[Any, ...], OpenAIEndpoint] = OrderedDict()
_endpoints_lock = threading.Lock()


def shared_endpoint(base_url: str, model: str, **settings: Any) -> OpenAIEndpoint:
    """An :class:`OpenAIEndpoint`, shared by every ``ChatFusion`` with the same settings.

    ``ChatFusion`` objects are cheap and often copied (``configurable_fields`` builds one per
    call); sharing endpoints keeps one connection pool and one concurrency limit per endpoint.
    The API key enters the cache key only as a SHA-256 digest.
    """
    key_parts: list[Any] = [base_url.rstrip("/"), model]
    for name, value in sorted(settings.items()):
        if name == "api_key" and value is not None:
            secret = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
            value = hashlib.sha256(secret.encode()).hexdigest()
        elif isinstance(value, Mapping):
            value = tuple(sorted(value.items()))
        key_parts.append((name, value))
    key = tuple(key_parts)
    with _endpoints_lock:
        endpoint = _endpoints.get(key)
        if endpoint is not None:
            _endpoints.move_to_end(key)
            return endpoint
    endpoint = OpenAIEndpoint(base_url, model, **settings)
    with _endpoints_lock:
        endpoint = _endpoints.setdefault(key, endpoint)
        _endpoints.move_to_end(key)
        while len(_endpoints) > _CACHE_SIZE:
            _endpoints.popitem(last=False)
    return endpoint


def member_backend(item: Any, *, where: str) -> Backend:
    """A pool member or fusor given as a LangChain chat model or a polyfuse backend."""
    if isinstance(item, BaseChatModel):
        return LangChainBackend(item)
    if isinstance(item, Backend):
        return item
    if isinstance(item, Runnable):
        raise InvalidRequestError(
            f"{where} is a {type(item).__name__}, not a chat model; pass the chat model itself "
            "(bind tools and structured output on ChatFusion, not on its members)"
        )
    raise InvalidRequestError(
        f"{where} is a {type(item).__name__}; expected a LangChain chat model (e.g. "
        "ChatOpenAI(...)) or a polyfuse backend (e.g. OpenAIEndpoint(base_url, model))"
    )


@dataclass(frozen=True)
class FusionPlan:
    """A ready ``Fusion`` plus the :class:`FusionSpec` to rebuild it around one call's callbacks.

    ``fusion`` is used as is unless a member or the fusor wraps a LangChain model and the call
    has callbacks; then :meth:`fusion_for` builds a request-scoped ``Fusion`` whose LangChain
    backends run with those callbacks (views of the same backends, so concurrent calls never
    share per-call state).
    """

    spec: FusionSpec
    fusion: Fusion
    template: Pool | None = None
    """The ready pool ``ChatFusion(pool=...)`` was given: every fusion built here samples a
    pool of its kind (:meth:`Pool.with_members`), so a routed pool keeps routing instead of
    becoming a plain pool of all its members."""
    hedged: FusionSpec | None = None
    """``spec`` with its hedging applied (:meth:`FusionSpec.hedged`): the fusions built for
    single calls hedge through views of the same wrappers, so one budget caps every call's
    extra calls and the observed times accumulate."""

    @classmethod
    def build(cls, spec: FusionSpec, template: Pool | None = None) -> FusionPlan:
        """Build the spec's fusion (raises :class:`InvalidRequestError` for bad settings)."""
        hedged = spec.hedged()
        return cls(spec, _with_template(hedged.build(), template), template, hedged)

    @property
    def pool(self) -> Pool:
        """The pool the candidates come from."""
        return self.fusion.pool

    @property
    def members(self) -> tuple[PoolMember, ...]:
        """The pool's members as given (without the hedging the fusion wraps them in)."""
        return self.spec.make_pool().members

    @property
    def fusor(self) -> Backend:
        """The aggregating model."""
        return self.spec.fusor_backend

    @property
    def wraps_langchain(self) -> bool:
        """Whether a member or the fusor is a LangChain model."""
        return isinstance(self.fusor, LangChainBackend) or any(
            isinstance(m.backend, LangChainBackend) for m in self.members
        )

    def fusion_for(self, callbacks: Callbacks) -> Fusion:
        """The fusion to run for a call whose child runs should report to ``callbacks``."""
        if callbacks is None or not self.wraps_langchain:
            return self.fusion
        views: dict[int, Backend] = {}

        def bind(backend: Backend) -> Backend:
            # one view per backend, so a model that is both member and fusor stays one model
            if id(backend) not in views:
                if isinstance(backend, LangChainBackend):
                    views[id(backend)] = backend.with_callbacks(callbacks)
                elif isinstance(backend, HedgedBackend):
                    # the view keeps the ready fusion's hedging budget and observed times
                    views[id(backend)] = backend.rebound(bind)
                else:
                    views[id(backend)] = backend
            return views[id(backend)]

        ready = self.hedged or self.spec  # its pool and fusor are the hedged ones, if any
        members = [
            PoolMember(bind(m.backend), m.samples, m.params) for m in ready.make_pool().members
        ]
        update = {"pool": members, "fusor": bind(ready.fusor_backend)}
        return _with_template(ready.model_copy(update=update).build(), self.template)


def _with_template(fusion: Fusion, template: Pool | None) -> Fusion:
    """``fusion`` sampling a pool of ``template``'s kind over the pool it was built with."""
    if template is not None:
        fusion.pool = template.with_members(fusion.pool.members)
    return fusion
