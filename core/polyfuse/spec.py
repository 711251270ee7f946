"""``FusionSpec``: every setting of a fusion, declared once, and ``build()`` to get a ``Fusion``.

The settings are split in two layers:

* :class:`FusionOptions` — how a fusion samples and aggregates (``n``, ``strategy``, quorum,
  deadline, the fusor's and judge's parameters, ...), independent of where the models live.
  The presets file (:class:`~polyfuse.presets.PresetSpec`), LangChain's ``ChatFusion`` and
  ``polyfuse ask`` inherit these fields instead of re-declaring them, and all of them reject a
  misspelt setting naming the one that was probably meant.
* :class:`FusionSpec` — the options plus the models themselves (pool members and fusor as
  backends); :meth:`FusionSpec.build` makes the :class:`~polyfuse.Fusion`.

Adding an option (for instance a router or a thought template) means adding one optional field
to :class:`FusionOptions`, with a default that keeps today's behaviour, and reading it in
:meth:`FusionSpec.build`: presets files, ``ChatFusion``, ``polyfuse ask``/``serve``/``distill``
and the LlamaIndex classes then accept it with no further code.

Example::

    from polyfuse import FusionSpec, OpenAIEndpoint

    qwen = OpenAIEndpoint("http://127.0.0.1:8000/v1", model="qwen")
    fusion = FusionSpec(pool=[qwen], n=5, strategy="fuse", quorum=4).build()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from typing_extensions import Self

from ._validation import describe_validation_error, unknown_choice, unknown_names
from .adaptive import AdaptiveSampling, ConsensusMode
from .aggregators.base import Aggregator
from .aggregators.strategies import (
    STRATEGIES,
    VOTE_EXTRACTORS,
    Strategy,
    VoteExtractor,
    build_aggregator,
)
from .backends.base import Backend
from .errors import InvalidRequestError
from .fusion import Fusion
from .hedging import HedgeBudget, HedgedBackend, HedgeSettings
from .policy import QuorumPolicy
from .pool import Pool, PoolMember

__all__ = ["SINGLE_MODEL_SAMPLES", "FusionOptions", "FusionSpec", "RouteSpec", "check_names"]

SINGLE_MODEL_SAMPLES = 3
"""Samples drawn from a pool of one model when ``n`` is not given (a panel gets 1 each)."""


_CHOICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "strategy": ("strategy", STRATEGIES),
    "vote_extract": ("vote extractor", VOTE_EXTRACTORS),
    "answer_extract": ("answer extractor", VOTE_EXTRACTORS),
}


class RouteSpec(BaseModel):
    """Query-level routing: ask, per query, only the ``k`` pool models a router chooses.

    In a presets file: ``route = { router = "routers/router-knn.npz", scenario = "balance",
    k = 2 }``. The pool's backends must be the router's models (matched by ``model`` id, else
    by name); see :class:`polyfuse.routing.RoutedPool` (needs ``polyfuse[routing]``).
    """

    model_config = ConfigDict(extra="forbid")

    router: str = Field(min_length=1)
    """The router file (.npz) written by ``polyfuse route train``."""
    scenario: str = "performance-first"
    """``performance-first``, ``balance`` or ``cost-first``."""
    k: int = Field(default=1, ge=1)
    """Models asked per query."""
    budget_usd: float | None = Field(default=None, gt=0)
    """The most the chosen models may cost together per query (estimated)."""
    task: str | None = None
    """The queries' task, when known."""
    tolerance: float | Literal["calibrated"] | None = None
    """Prefer the cheapest model within this much of the best predicted score
    (``"calibrated"``: the router's validated ε); see ``CostAwareSelector``."""

    def routed_pool(self, pool: Pool) -> Pool:
        """``pool`` as a :class:`~polyfuse.routing.RoutedPool` over the same members."""
        from .routing.pool import RoutedPool
        from .routing.routers import load_router
        from .routing.selector import CostAwareSelector

        selector = CostAwareSelector(
            load_router(self.router),
            self.scenario,
            k=self.k,
            budget_usd=self.budget_usd,
            tolerance=self.tolerance,
        )
        return RoutedPool.from_members(pool.members, selector, task=self.task)


class FusionOptions(BaseModel):
    """How a fusion samples and aggregates: everything but where the models are.

    Unknown names are rejected with the closest valid one (``quorom`` → ``quorum``), so a typo
    fails loudly instead of silently keeping a default.
    """

    model_config = ConfigDict(extra="forbid")

    n: int | None = Field(default=None, ge=1)
    """Samples per pool member (default: 3 for a single model, 1 per member of a panel)."""
    strategy: Strategy = "fuse"
    """``fuse`` (Fusion-of-N), ``best-of-n``, ``vote``, ``usc`` or ``moa``."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Default sampling parameters of the candidates (``temperature``, ``max_tokens``, ...);
    a call's own parameters override them."""
    fusor_params: dict[str, Any] = Field(default_factory=dict)
    """Sampling parameters of the fusor and of the MoA aggregator, e.g. ``{"temperature": 0}``."""
    judge_params: dict[str, Any] = Field(default_factory=dict)
    """Sampling parameters of the Best-of-N judge and the USC selector (default: their own)."""
    quorum: int | None = Field(default=None, ge=1)
    """Aggregate as soon as this many candidates succeeded; cancel the rest."""
    deadline: float | None = Field(default=None, gt=0)
    """Seconds after which stragglers are cancelled (once ``min_candidates`` succeeded)."""
    min_candidates: int = Field(default=1, ge=1)
    """The fewest successful candidates worth aggregating."""
    stream_candidates: bool = False
    """Sample candidates with streaming requests (records each one's time to first token)."""
    vote_extract: VoteExtractor = "last_number"
    """What ``vote`` compares across candidates."""
    moa_layers: int = Field(default=2, ge=1)
    """Layers of Mixture-of-Agents (the last one is the aggregator)."""
    answer_extract: VoteExtractor | None = None
    """How adaptive sampling and the consensus shortcut read a candidate's final answer
    (default: ``vote_extract`` for ``vote``; for other strategies none, i.e. open-ended text)."""
    adaptive: AdaptiveSampling | None = None
    """Sample in rounds and stop once the answers are settled, up to ``n`` per member
    (``{"first": 3, "step": 1, "confidence": 0.8, "agreement": 0.8}``; see
    :mod:`polyfuse.adaptive`). Default: draw every sample at once."""
    consensus: ConsensusMode = "auto"
    """Skip the fusor/judge/USC selector when the candidates agree: ``auto`` (only when an
    answer extractor decides agreement), ``on`` (also near-identical text), ``off``."""
    consensus_similarity: float = Field(default=0.9, gt=0.0, le=1.0)
    """Word 3-gram agreement at which texts count as near-identical (``consensus="on"``)."""
    hedge: HedgeSettings | None = None
    """Duplicate a call (candidate or aggregator) with no first token after ``after`` seconds,
    take the first answer, cancel the other; ``budget`` caps the extra calls as a fraction of
    the calls made (``{"after": 2.0, "budget": 0.25}``; see :mod:`polyfuse.hedging`)."""
    route: RouteSpec | None = None
    """Ask, per query, only the pool models a router chooses (see :class:`RouteSpec`)."""

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_names(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = _accepted_names(cls)
            unknown = [str(key) for key in data if key not in known]  # pyright: ignore[reportUnknownVariableType]
            if unknown:
                raise ValueError(unknown_names(unknown, _public_names(cls)))
        return data  # pyright: ignore[reportUnknownVariableType]

    @field_validator("strategy", "vote_extract", "answer_extract", mode="before")
    @classmethod
    def _known_choice(cls, value: Any, info: ValidationInfo) -> Any:
        what, choices = _CHOICES[info.field_name or ""]
        if value is None and info.field_name == "answer_extract":
            return value
        if value not in choices:
            raise ValueError(unknown_choice(value, choices, what=what))
        return value

    # ------------------------------------------------------------------ derived

    def overridden(self, changes: Mapping[str, Any]) -> Self:
        """A validated copy with ``changes`` (e.g. from command-line flags) applied.

        Nested settings (``adaptive``, ``hedge``, ``route``) merge field by field, so
        ``{"adaptive": {"confidence": 0.9}}`` keeps the other adaptive settings of a preset, and
        ``{"adaptive": {}}`` turns adaptive sampling on (with the defaults) or leaves it as set.
        Raises :class:`InvalidRequestError` naming a bad field.
        """
        data = {name: getattr(self, name) for name in type(self).model_fields}
        for name, value in changes.items():
            current = data.get(name)
            if isinstance(value, Mapping) and isinstance(current, BaseModel):
                value = {**current.model_dump(exclude_unset=True), **value}
            data[name] = value
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            raise InvalidRequestError.from_validation_error(exc, "fusion settings") from None

    def fusion_options(self) -> dict[str, Any]:
        """Just the :class:`FusionOptions` fields, by name (also on subclasses)."""
        return {name: getattr(self, name) for name in FusionOptions.model_fields}

    def samples_per_member(self, members: int) -> int:
        """``n``, or its default for a pool of ``members`` backends."""
        if self.n is not None:
            return self.n
        return SINGLE_MODEL_SAMPLES if members == 1 else 1

    def policy(self) -> QuorumPolicy:
        """The quorum, deadline and streaming rules as a :class:`QuorumPolicy`."""
        try:
            return QuorumPolicy(
                quorum=self.quorum,
                deadline=self.deadline,
                min_candidates=self.min_candidates,
                stream_candidates=self.stream_candidates,
            )
        except ValidationError as exc:
            raise InvalidRequestError(describe_validation_error(exc)) from None

    def extractor(self) -> VoteExtractor | None:
        """The answer extractor adaptive sampling and the consensus shortcut use (or none)."""
        if self.answer_extract is not None:
            return self.answer_extract
        return self.vote_extract if self.strategy == "vote" else None

    def aggregator(self, backend: Backend, *, strategy: str | None = None) -> Aggregator:
        """The aggregator of ``strategy`` (default: this one's) with ``backend`` as its model."""
        return build_aggregator(
            strategy or self.strategy,
            backend,
            vote_extract=self.vote_extract,
            moa_layers=self.moa_layers,
            fusor_params=self.fusor_params,
            judge_params=self.judge_params,
        )

    def check_quorum(self, candidates: int) -> None:
        """Raise :class:`InvalidRequestError` when ``quorum`` exceeds the pool's candidates."""
        if self.quorum is not None and self.quorum > candidates:
            raise InvalidRequestError(
                f"quorum {self.quorum} exceeds the {candidates} candidates the pool samples; "
                "lower quorum or raise n"
            )


class FusionSpec(FusionOptions):
    """A whole fusion as data: the pool's models, the fusor and every :class:`FusionOptions`.

    Args:
        pool: the candidates' models: backends (each sampled ``n`` times) and/or
            :class:`~polyfuse.PoolMember` objects (which keep their own samples and params).
        fusor: the model of the fusor, judge, USC selector or MoA aggregator (default: the
            first pool member).

    Invalid settings raise :class:`~polyfuse.errors.InvalidRequestError` naming the field.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    pool: list[InstanceOf[PoolMember] | InstanceOf[Backend]] = Field(min_length=1)
    fusor: InstanceOf[Backend] | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidRequestError.from_validation_error(exc, "fusion settings") from None

    @property
    def fusor_backend(self) -> Backend:
        """The aggregating model: ``fusor``, else the first pool member."""
        if self.fusor is not None:
            return self.fusor
        first = self.pool[0]
        return first.backend if isinstance(first, PoolMember) else first

    def make_pool(self) -> Pool:
        """The :class:`Pool`: bare backends get ``n`` samples, pool members keep theirs."""
        samples = self.samples_per_member(len(self.pool))
        return Pool(
            [m if isinstance(m, PoolMember) else PoolMember(m, samples=samples) for m in self.pool]
        )

    def hedged(self) -> FusionSpec:
        """These settings with their hedging applied: each distinct backend of the pool and the
        fusor wrapped once in a :class:`~polyfuse.HedgedBackend` (all sharing one budget), and
        ``hedge`` cleared. Its :meth:`build` gives the same fusion as this spec's; keep it to
        build again with the same hedging state (budget, observed times). Without ``hedge``,
        this spec itself."""
        if self.hedge is None:
            return self
        wrap = _hedger(self.hedge)
        members = [
            PoolMember(wrap(m.backend), m.samples, m.params) for m in self.make_pool().members
        ]
        fusor = wrap(self.fusor_backend)
        return self.model_copy(update={"pool": members, "fusor": fusor, "hedge": None})

    def build(self) -> Fusion:
        """The :class:`~polyfuse.Fusion` these settings describe."""
        if self.hedge is not None:
            return self.hedged().build()
        pool = self.make_pool()
        fusor = self.fusor_backend
        if self.route is not None:
            pool = self.route.routed_pool(pool)
        self.check_quorum(pool.size)
        if self.adaptive is not None and self.quorum is not None:
            raise InvalidRequestError(
                "adaptive sampling and quorum both decide when to stop sampling; set only one"
            )
        return Fusion(
            pool,
            self.aggregator(fusor),
            self.policy(),
            params=self.params,
            adaptive=self.adaptive,
            extract=self.extractor(),
            consensus=self.consensus,
            consensus_similarity=self.consensus_similarity,
        )


def check_names(given: Iterable[str], known: Iterable[str], *, where: str) -> None:
    """Raise :class:`InvalidRequestError` naming each of ``given`` not in ``known`` and the
    known name it most likely meant (for adapters that take settings as ``**kwargs``)."""
    choices = set(known)
    unknown = [name for name in given if name not in choices]
    if unknown:
        raise InvalidRequestError(f"invalid {where}: {unknown_names(unknown, choices)}")


def _hedger(settings: HedgeSettings) -> Callable[[Backend], Backend]:
    """Wraps each distinct backend once, all sharing one :class:`HedgeBudget`."""
    budget = HedgeBudget(fraction=settings.budget)
    wrapped: dict[int, Backend] = {}
    fallback = settings.fallback
    if isinstance(fallback, str):
        raise InvalidRequestError(
            f"hedge.fallback {fallback!r} is an endpoint name, which only a presets file can "
            "resolve; in Python pass the backend itself: hedge={'after': ..., 'fallback': backend}"
        )

    def wrap(backend: Backend) -> Backend:
        if isinstance(backend, HedgedBackend):  # already hedged (a per-call view): never twice
            return backend
        if id(backend) not in wrapped:
            wrapped[id(backend)] = HedgedBackend(
                backend,
                after=settings.after,
                budget=budget,
                percentile=settings.percentile,
                fallback=fallback,
            )
        return wrapped[id(backend)]

    return wrap


def _accepted_names(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if info.alias:
            names.add(info.alias)
        if isinstance(info.validation_alias, str):
            names.add(info.validation_alias)
    return names


def _public_names(model: type[BaseModel]) -> list[str]:
    return [name for name in _accepted_names(model) if not name.startswith("_")]
