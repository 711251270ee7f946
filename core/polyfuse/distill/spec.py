"""What a distillation makes: the teacher panel, the fusor, the judge, the aggregations and the
record format — as plain, serialisable data, so that every worker (a Ray actor included) can
build the same panel from it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._validation import describe_validation_error
from ..aggregators.strategies import Strategy
from ..errors import InvalidRequestError
from ..presets import EndpointSpec, PresetsConfig, PresetSpec, load_config, with_overrides
from ..prompts import PROMPT_VERSION
from .errors import DistillConfigError

__all__ = [
    "METHOD_OF",
    "Chosen",
    "DistillSpec",
    "RecordFormat",
    "Strategy",
    "friendly_error",
    "parse_endpoint",
]

RecordFormat = Literal["sft", "alpaca", "preference"]
Chosen = Literal["primary", "best"]
METHOD_OF: dict[str, str] = {
    "fuse": "fuse",
    "best-of-n": "best_of_n",
    "vote": "vote",
    "usc": "usc",
    "moa": "moa",
}
"""Strategy name (CLI, presets) → the aggregator's ``method`` (records)."""

_FLAGS_PRESET = "distill"
_ENDPOINT = re.compile(r"^(?:(?P<name>[A-Za-z0-9_.:-]+)=)?(?P<model>[^@\s]+)@(?P<url>\S+)$")


def parse_endpoint(text: str) -> tuple[str | None, str, str]:
    """Split ``[NAME=]MODEL@BASE_URL`` into ``(name, model, base_url)``."""
    match = _ENDPOINT.match(text.strip())
    if match is None:
        raise DistillConfigError(
            f"{text!r} is not an endpoint; write MODEL@BASE_URL or NAME=MODEL@BASE_URL, "
            "e.g. qwen=Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1"
        )
    return match["name"], match["model"], match["url"]


class DistillSpec(BaseModel):
    """Everything that decides what a record contains.

    Args:
        presets: endpoints and presets (see :mod:`polyfuse.presets`).
        preset: the preset naming the teacher pool, samples per teacher, quorum, sampling
            parameters and the fusor endpoint.
        judge: the endpoint that scores candidates for Best-of-N and preference pairs
            (default: the preset's fusor, else its first pool endpoint).
        aggregations: the aggregations to run on the same candidates; the first is the
            *primary* one, whose answer goes into the training record (default: the preset's
            strategy). ``("fuse", "best-of-n")`` gives the paper's side-by-side comparison.
        format: ``sft`` (``{"messages": [...]}``), ``alpaca`` or ``preference`` pairs.
            ``preference`` adds ``best-of-n`` to the aggregations when it is missing: its judge
            scores pick the rejected answer.
        chosen: for ``preference``: the primary answer (e.g. the fused one) or the best-scored
            candidate is the chosen answer; the lowest-scored candidate is the rejected one.
        score_primary: also have the judge score the primary answer (as the FusioN data sets
            score the fused completion).
        params: sampling parameters for the teachers, over the preset's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    presets: PresetsConfig
    preset: str
    judge: str | None = None
    aggregations: tuple[Strategy, ...] = ()
    format: RecordFormat = "sft"
    chosen: Chosen = "primary"
    score_primary: bool = False
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> DistillSpec:
        if self.preset not in self.presets.presets:
            known = ", ".join(self.presets.presets) or "none"
            raise ValueError(f"unknown preset {self.preset!r}; known presets: {known}")
        if self.judge is not None and self.judge not in self.presets.endpoints:
            known = ", ".join(self.presets.endpoints)
            raise ValueError(f"unknown judge endpoint {self.judge!r}; known endpoints: {known}")
        if len(set(self.aggregations)) != len(self.aggregations):
            raise ValueError(f"aggregations {list(self.aggregations)} name one twice")
        if self.chosen == "best" and self.format != "preference":
            raise ValueError("chosen='best' only applies to the preference format")
        return self

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_file(cls, path: str | Path, preset: str, **options: Any) -> DistillSpec:
        """A spec from a presets TOML file and one of its presets."""
        return cls.build(presets=load_config(path), preset=preset, **options)

    @classmethod
    def from_endpoints(
        cls,
        teachers: Sequence[str],
        *,
        fusor: str | None = None,
        judge: str | None = None,
        n: int = 1,
        strategy: Strategy = "fuse",
        endpoint_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> DistillSpec:
        """A spec from ``[NAME=]MODEL@BASE_URL`` strings (what the CLI flags give).

        Args:
            teachers: the panel, one endpoint each.
            fusor: the fusor endpoint (default: the first teacher).
            judge: the judge endpoint (default: the fusor).
            n: samples per teacher.
            strategy: the primary aggregation.
            endpoint_options: :class:`~polyfuse.presets.EndpointSpec` settings for every
                endpoint, e.g. ``{"api_key_env": "MY_KEY", "max_concurrency": 32}``.
            options: the other :class:`DistillSpec` fields.
        """
        if not teachers:
            raise DistillConfigError("name at least one teacher: --teacher MODEL@BASE_URL")
        endpoints: dict[str, EndpointSpec] = {}
        by_text: dict[str, str] = {}

        def add(text: str) -> str:
            if text in by_text:
                return by_text[text]
            name, model, url = parse_endpoint(text)
            name = name or model
            unique, k = name, 2
            while unique in endpoints:
                unique, k = f"{name}-{k}", k + 1
            try:
                endpoints[unique] = EndpointSpec(
                    base_url=url, model=model, **dict(endpoint_options or {})
                )
            except ValueError as exc:
                raise DistillConfigError(f"endpoint {text!r}: {friendly_error(exc)}") from None
            by_text[text] = unique
            return unique

        pool = [add(t) for t in teachers]
        fusor_name = add(fusor) if fusor else pool[0]
        judge_name = add(judge) if judge else None
        try:
            preset = PresetSpec(pool=pool, strategy=strategy, n=n, fusor=fusor_name)
            config = PresetsConfig(endpoints=endpoints, presets={_FLAGS_PRESET: preset})
        except ValidationError as exc:
            raise DistillConfigError(f"invalid panel: {friendly_error(exc)}") from None
        return cls.build(presets=config, preset=_FLAGS_PRESET, judge=judge_name, **options)

    @classmethod
    def build(cls, **fields: Any) -> DistillSpec:
        """Validate fields into a spec, raising :class:`DistillConfigError` with a clear message."""
        try:
            return cls.model_validate(fields)
        except ValueError as exc:
            if isinstance(exc, InvalidRequestError):
                raise
            raise DistillConfigError(f"invalid distill settings: {friendly_error(exc)}") from None

    def with_fusion(self, changes: Mapping[str, Any]) -> DistillSpec:
        """This spec with :class:`~polyfuse.FusionOptions` ``changes`` (command-line flags such
        as ``{"adaptive": {"confidence": 0.9}}``) merged onto its preset's settings."""
        if not changes:
            return self
        presets = with_overrides(self.presets, self.preset, changes)
        return self.model_copy(update={"presets": presets})

    # ------------------------------------------------------------------ derived

    @property
    def preset_spec(self) -> PresetSpec:
        """The preset the panel is built from."""
        return self.presets.presets[self.preset]

    @property
    def strategies(self) -> tuple[str, ...]:
        """The aggregations to run, primary first (``best-of-n`` added for preferences)."""
        chosen: tuple[str, ...] = self.aggregations or (self.preset_spec.strategy,)
        if self.format == "preference" and "best-of-n" not in chosen:
            chosen = (*chosen, "best-of-n")
        return chosen

    @property
    def primary(self) -> str:
        """The method whose answer becomes the training answer (e.g. ``fuse``)."""
        return METHOD_OF[self.strategies[0]]

    @property
    def fusor_endpoint(self) -> str:
        """The endpoint name of the fusor (and of USC/MoA aggregators)."""
        spec = self.preset_spec
        return spec.fusor or spec.pool[0]

    @property
    def judge_endpoint(self) -> str:
        """The endpoint name of the judge."""
        return self.judge or self.fusor_endpoint

    def sampling_params(self) -> dict[str, Any]:
        """The teachers' sampling parameters: the preset's, then this spec's on top."""
        return {**self.preset_spec.params, **self.params}

    def fingerprint(self) -> str:
        """A hash of what shapes the records (not where the endpoints live, nor their keys).

        Resuming into an output file made with another fingerprint is refused, so that one file
        never mixes records from two configurations without you asking for it.
        """

        def endpoint(name: str) -> dict[str, Any]:
            spec = self.presets.endpoints[name]
            return {"model": spec.model, "local": spec.local, "params": spec.params}

        preset = self.preset_spec.model_dump(exclude={"description"})
        names = {*preset["pool"], self.fusor_endpoint, self.judge_endpoint}
        payload = {
            "preset": preset,
            "endpoints": {name: endpoint(name) for name in sorted(names)},
            "judge": self.judge_endpoint,
            "strategies": list(self.strategies),
            "format": self.format,
            "chosen": self.chosen,
            "score_primary": self.score_primary,
            "params": self.sampling_params(),
            "prompt_version": PROMPT_VERSION,
        }
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def friendly_error(exc: ValueError) -> str:
    """A validation error as one line: ``field: problem; ...``."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    return describe_validation_error(exc)
