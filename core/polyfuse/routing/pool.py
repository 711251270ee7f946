"""``RoutedPool``: route, then fuse — ask only the models likely to answer this query well.

A :class:`RoutedPool` is a :class:`~polyfuse.pool.Pool` of every model a router knows; for each
request it embeds the last user message, lets a :class:`CostAwareSelector` choose the top-k
models within the budget, and samples only those. It composes with every aggregator (the
aggregator sees the chosen members), and the fusion result's ``metadata["routing"]`` holds the
decision: chosen models, full ranking, scenario, predicted scores, estimated costs.

Example::

    router = load_router("router.npz")
    pool = RoutedPool(
        {"qwen2.5-7b-instruct": qwen, "gemma-2-9b-it": gemma, "llama-3.1-8b-instruct": llama},
        CostAwareSelector(router, "balance", k=2, budget_usd=0.001),
    )
    result = Fusion(pool, Fuse(fusor=qwen)).run("What is 17 * 23?")
    print(result.metadata["routing"]["models"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..backends.base import Backend
from ..errors import InvalidRequestError
from ..messages import ChatRequest
from ..pool import Pool, PoolMember
from .selector import CostAwareSelector, RouteDecision

__all__ = ["RoutedPool"]


class _ChosenPool(Pool):
    """The members chosen for one request, with the decision that chose them."""

    def __init__(self, members: list[PoolMember], decision: RouteDecision) -> None:
        super().__init__(members)
        self.decision = decision

    @property
    def metadata(self) -> dict[str, Any]:
        return {"routing": self.decision.as_metadata()}


class RoutedPool(Pool):
    """A pool that samples, per query, only the models a router chooses.

    Args:
        members: one backend (or :class:`PoolMember`) per model name the router knows.
        selector: the router, scenario, ``k`` and budget (see :class:`CostAwareSelector`).
        task: the queries' task when known (helps the router); otherwise inferred.

    Raises :class:`InvalidRequestError` when a router model has no member or a member is a
    model the router never saw (it could not be scored).
    """

    def __init__(
        self,
        members: Mapping[str, Backend | PoolMember],
        selector: CostAwareSelector,
        *,
        task: str | None = None,
    ) -> None:
        if not isinstance(selector, CostAwareSelector):
            raise InvalidRequestError(
                f"selector must be a CostAwareSelector (got {type(selector).__name__})"
            )
        router_models = selector.router.models
        unknown = sorted(set(router_models) - set(members))
        if unknown:
            raise InvalidRequestError(
                f"the router routes to {', '.join(unknown)}, which the pool (or preset) does not "
                "define; add a backend for each, or train the router on the models you have"
            )
        unscored = sorted(set(members) - set(router_models))
        if unscored:
            raise InvalidRequestError(
                f"the router has no logs of {', '.join(unscored)}, so it cannot score them; "
                f"it knows {', '.join(router_models)}"
            )
        self.by_model: dict[str, PoolMember] = {
            name: m if isinstance(m, PoolMember) else PoolMember(m) for name, m in members.items()
        }
        super().__init__([self.by_model[name] for name in router_models])
        self.selector = selector
        self.task = task

    @classmethod
    def from_backends(
        cls,
        backends: Sequence[Backend],
        selector: CostAwareSelector,
        *,
        task: str | None = None,
        samples: int = 1,
    ) -> RoutedPool:
        """A routed pool from backends matched to the router's models by their ``model`` id
        (or, failing that, their ``name``); each chosen model is sampled ``samples`` times."""
        return cls.from_members(
            [PoolMember(b, samples=samples) for b in backends], selector, task=task
        )

    @classmethod
    def from_members(
        cls, members: Sequence[PoolMember], selector: CostAwareSelector, *, task: str | None = None
    ) -> RoutedPool:
        """:meth:`from_backends` for pool members (each keeps its samples and parameters) —
        how a :class:`~polyfuse.FusionSpec` with ``route`` builds its pool."""
        known = set(selector.router.models)
        by_model: dict[str, Backend | PoolMember] = {}
        for member in members:
            backend = member.backend
            key = backend.model if backend.model in known else backend.name
            if key in by_model:
                raise InvalidRequestError(f"two pool members serve {key!r}; give each model one")
            by_model[key] = member
        return cls(by_model, selector, task=task)

    @property
    def members_per_request(self) -> int:
        """The ``k`` models the selector chooses per request (fewer when over budget)."""
        return min(self.selector.k, len(self.members))

    def with_members(self, members: Sequence[PoolMember]) -> RoutedPool:
        """The same routing over replacement ``members`` (one per router model, in the order
        of :attr:`members`), e.g. the per-call views ``ChatFusion`` binds callbacks to."""
        if len(members) != len(self.members):
            raise InvalidRequestError(
                f"{len(members)} members to replace the routed pool's {len(self.members)}"
            )
        # self.members follow the router's model order (see __init__).
        replaced = dict(zip(self.selector.router.models, [*members], strict=True))
        return RoutedPool(replaced, self.selector, task=self.task)

    def __repr__(self) -> str:
        return (
            f"RoutedPool({len(self.by_model)} models, scenario={self.selector.scenario.name}, "
            f"k={self.selector.k}, budget_usd={self.selector.budget_usd})"
        )

    async def route(self, request: ChatRequest) -> RouteDecision:
        """The routing decision for ``request`` (its last user message is the query)."""
        text = request.last_user_text
        if not text.strip():
            raise InvalidRequestError("a routed pool needs a user message with text to route")
        return await self.selector.aroute(text, self.task)

    async def for_request(self, request: ChatRequest) -> Pool:
        """The chosen members for ``request``, as a pool carrying the decision."""
        decision = await self.route(request)
        return _ChosenPool([self.by_model[m] for m in decision.models], decision)
