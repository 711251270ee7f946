"""From ``polyfuse ask`` options to one fusion preset (the same model ``polyfuse serve`` uses).

Every way of asking — the embedded model, ``--endpoint`` URLs, a ``--config`` presets file —
becomes a :class:`~polyfuse.presets.PresetsConfig` holding exactly one preset and only the
endpoints it uses, run by :class:`~polyfuse.presets.PresetRegistry` (which also starts and
stops the embedded model).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from ..errors import InvalidRequestError
from ..local.catalog import local_model_spec
from ..messages import SamplingParams
from ..presets import PresetsConfig, load_config
from ..spec import FusionOptions
from ._fusion_flags import FusionFlags

__all__ = ["LOCAL_MAX_TOKENS", "AskOptions", "AskPlan", "plan_ask"]

LOCAL_MAX_TOKENS = 128
"""``max_tokens`` used with the embedded model unless a preset or ``--max-tokens`` sets one
(a 135M model on a CPU rambles; this bounds a fusion to a few seconds)."""

_PRESET = "ask"
_LOCAL = "local"
_FUSOR = "fusor"
_HEDGE = "hedge"


@dataclass
class AskOptions:
    """The options of ``polyfuse ask`` that shape the fusion (all optional).

    Flags named like a :class:`~polyfuse.FusionOptions` field (``n``, ``strategy``,
    ``quorum``, ``deadline``) or a :class:`~polyfuse.SamplingParams` field (``temperature``,
    ``max_tokens``, ``seed``) are validated by those models and override the preset's values.
    """

    n: int | None = None
    strategy: str | None = None
    endpoints: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    api_key: SecretStr | None = None
    fusor: str | None = None
    fusor_model: str | None = None
    gguf: Path | None = None
    local_model: str | None = None
    config: Path | None = None
    preset: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    quorum: int | None = None
    deadline: float | None = None
    fusion_flags: FusionFlags = field(default_factory=FusionFlags)
    """Adaptive sampling, consensus and hedging flags (``--adaptive-*``, ``--hedge-*``)."""

    def _set(self, names: Any) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name in names and getattr(self, f.name) is not None
        }

    def fusion_overrides(self) -> dict[str, Any]:
        """The :class:`~polyfuse.FusionOptions` the flags set. Plain values are validated
        here (errors name the flag); nested ones (``adaptive``, ``hedge``) once merged onto
        the preset's (:meth:`~polyfuse.FusionOptions.overridden`)."""
        overrides = {**self._set(FusionOptions.model_fields), **self.fusion_flags.overrides()}
        _validate_flags(
            FusionOptions, {k: v for k, v in overrides.items() if not isinstance(v, dict)}
        )
        return overrides

    def sampling_overrides(self) -> dict[str, Any]:
        """The sampling parameters the flags set, validated."""
        params = self._set(SamplingParams.model_fields)
        _validate_flags(SamplingParams, params)
        return params


@dataclass
class AskPlan:
    """What to run: a one-preset config, the preset's name, and the candidates' parameters."""

    config: PresetsConfig
    preset: str
    params: dict[str, Any]

    @property
    def local_models(self) -> list[str | None]:
        """The catalog models the plan serves (``None``: the default), to fetch before start."""
        return [
            spec.local_model
            for spec in self.config.endpoints.values()
            if spec.local and not spec.gguf
        ]


def plan_ask(options: AskOptions) -> AskPlan:
    """Check the options and build the plan; raise :class:`InvalidRequestError` on misuse."""
    options.fusion_overrides()
    options.sampling_overrides()
    if options.config is not None:
        return _from_file(options)
    return _from_flags(options)


def _validate_flags(
    model: type[FusionOptions] | type[SamplingParams], values: dict[str, Any]
) -> None:
    """Validate flag values with the model that owns them; errors name the flag."""
    try:
        model.model_validate(values)
    except ValidationError as exc:
        raise InvalidRequestError("; ".join(_flag_error(err) for err in exc.errors())) from None


def _flag_error(err: Any) -> str:
    loc = err["loc"]
    flag = f"--{str(loc[0]).replace('_', '-')}" if loc else "options"
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if err["type"] == "greater_than_equal":
        return f"{flag} must be at least {ctx['ge']} (got {got})"
    if err["type"] == "greater_than":
        return f"{flag} must be > {ctx['gt']} (got {got})"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{flag}: {message}"


# ---------------------------------------------------------------------------------- flags


def _from_flags(options: AskOptions) -> AskPlan:
    if options.preset is not None:
        raise InvalidRequestError("--preset needs --config FILE (the presets file)")
    endpoints: dict[str, dict[str, Any]] = {}
    if options.endpoints:
        if options.gguf is not None or options.local_model is not None:
            raise InvalidRequestError(
                "--gguf and --local-model are for the embedded model; drop them or --endpoint"
            )
        for name, url, model in _members(options):
            endpoints[name] = _remote(url, model, options.api_key)
    else:
        if options.models:
            raise InvalidRequestError(
                "--model needs --endpoint URL (without --endpoint, the embedded model answers)"
            )
        if options.gguf is not None and options.local_model is not None:
            raise InvalidRequestError("give --gguf FILE or --local-model NAME, not both")
        if options.local_model is not None:
            local_model_spec(options.local_model)  # names the nearest model when misspelt
        endpoints[_LOCAL] = {
            "local": True,
            "gguf": str(options.gguf) if options.gguf else None,
            "local_model": options.local_model,
        }
    pool = list(endpoints)
    fusor = _flag_fusor(options, endpoints)
    flags = options.fusion_overrides()
    _hedge_fallback(flags, endpoints, options.api_key, pool)
    merged = FusionOptions().overridden(flags)
    n = merged.samples_per_member(len(pool))
    preset: dict[str, Any] = {**flags, "pool": pool, "n": n}
    merged.check_quorum(n * len(pool))
    if fusor is not None:
        preset["fusor"] = fusor
    config = load_config({"endpoints": endpoints, "presets": {_PRESET: preset}})
    return AskPlan(config=config, preset=_PRESET, params=_params_for(config, _PRESET, options))


def _members(options: AskOptions) -> list[tuple[str, str, str]]:
    urls, models = options.endpoints, options.models
    if not models:
        raise InvalidRequestError("--endpoint needs --model NAME (the model the server serves)")
    if len(models) not in (1, len(urls)):
        raise InvalidRequestError(
            f"got {len(urls)} --endpoint and {len(models)} --model options; "
            "give one --model per --endpoint, or one for all"
        )
    per_url = models if len(models) == len(urls) else models * len(urls)
    pairs = list(zip(urls, per_url, strict=True))
    members: list[tuple[str, str, str]] = []
    used: set[str] = set()
    for url, model in pairs:
        name, k = model, 2
        while name in used or name in (_LOCAL, _FUSOR):
            name, k = f"{model}#{k}", k + 1
        used.add(name)
        members.append((name, url, model))
    return members


def _remote(url: str, model: str, api_key: SecretStr | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"base_url": url, "model": model}
    if api_key is not None:
        spec["api_key"] = api_key
    return spec


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _flag_fusor(options: AskOptions, endpoints: dict[str, dict[str, Any]]) -> str | None:
    fusor = options.fusor
    if fusor is None:
        if options.fusor_model is not None:
            raise InvalidRequestError("--fusor-model needs --fusor URL")
        return None
    remote = [spec for spec in endpoints.values() if not spec.get("local")]
    if _is_url(fusor):
        model = options.fusor_model or (remote[0]["model"] if remote else None)
        if model is None:
            raise InvalidRequestError("--fusor URL needs --fusor-model NAME")
        endpoints[_FUSOR] = _remote(fusor, model, options.api_key)
        return _FUSOR
    if not remote:
        raise InvalidRequestError(
            f"--fusor {fusor!r} is not a URL; with the embedded model, give the fusor's URL "
            "(--fusor http://HOST:PORT/v1 --fusor-model NAME)"
        )
    endpoints[_FUSOR] = _remote(remote[0]["base_url"], fusor, options.api_key)
    return _FUSOR


# ---------------------------------------------------------------------------------- file


def _from_file(options: AskOptions) -> AskPlan:
    assert options.config is not None
    if options.endpoints or options.models or options.gguf is not None or options.local_model:
        raise InvalidRequestError(
            "--endpoint, --model, --gguf and --local-model cannot be combined with --config; "
            "define endpoints in the presets file (local_model = NAME for the embedded model)"
        )
    config = load_config(options.config)
    name = options.preset or _only_preset(config, options.config)
    if name not in config.presets:
        known = ", ".join(config.presets) or "none"
        raise InvalidRequestError(
            f"no preset {name!r} in {str(options.config)!r} (known presets: {known})"
        )
    flags = options.fusion_overrides()
    added = {ref: spec.model_dump() for ref, spec in config.endpoints.items()}
    _hedge_fallback(flags, added, options.api_key, list(config.presets[name].pool))
    tuned = config.presets[name].overridden(flags)
    preset = tuned.model_dump()
    tuned.check_quorum(preset["n"] * len(preset["pool"]))
    endpoints = {ref: added[ref] for ref in tuned.endpoint_names}
    if options.fusor is not None:
        preset["fusor"] = _file_fusor(options, config, endpoints)
    narrowed = load_config({"endpoints": endpoints, "presets": {name: preset}})
    return AskPlan(config=narrowed, preset=name, params=_params_for(narrowed, name, options))


def _hedge_fallback(
    flags: dict[str, Any],
    endpoints: dict[str, dict[str, Any]],
    api_key: SecretStr | None,
    pool: list[str],
) -> None:
    """Resolve ``--hedge-fallback``: an endpoint name stays; a URL becomes an endpoint serving
    the model of the pool's first remote endpoint."""
    hedge = flags.get("hedge")
    fallback = hedge.get("fallback") if isinstance(hedge, dict) else None
    if fallback is None:
        return
    assert isinstance(hedge, dict)
    if _is_url(fallback):
        remote = [endpoints[ref] for ref in pool if not endpoints[ref].get("local")]
        if not remote:
            raise InvalidRequestError(
                "--hedge-fallback URL needs a remote pool endpoint whose model it serves "
                "(the embedded model has no URL to hedge to)"
            )
        name = _HEDGE
        while name in endpoints:
            name += "_"
        endpoints[name] = _remote(fallback, remote[0]["model"], api_key)
        hedge["fallback"] = name
    elif fallback not in endpoints:
        known = ", ".join(endpoints) or "none"
        raise InvalidRequestError(
            f"--hedge-fallback {fallback!r} is neither a URL nor an endpoint (endpoints: {known})"
        )


def _only_preset(config: PresetsConfig, path: Path) -> str:
    names = list(config.presets)
    if len(names) == 1:
        return names[0]
    known = ", ".join(names) or "none"
    raise InvalidRequestError(
        f"{str(path)!r} has several presets; pick one with --preset ({known})"
    )


def _file_fusor(
    options: AskOptions, config: PresetsConfig, endpoints: dict[str, dict[str, Any]]
) -> str:
    fusor = options.fusor
    assert fusor is not None
    if _is_url(fusor):
        if options.fusor_model is None:
            raise InvalidRequestError("--fusor URL needs --fusor-model NAME")
        name = _FUSOR
        while name in config.endpoints:
            name += "_"
        endpoints[name] = _remote(fusor, options.fusor_model, options.api_key)
        return name
    if fusor not in config.endpoints:
        known = ", ".join(config.endpoints) or "none"
        raise InvalidRequestError(
            f"--fusor {fusor!r} is neither a URL nor an endpoint of the presets file "
            f"(endpoints: {known})"
        )
    endpoints[fusor] = config.endpoints[fusor].model_dump()
    return fusor


# ---------------------------------------------------------------------------------- params


def _params_for(config: PresetsConfig, name: str, options: AskOptions) -> dict[str, Any]:
    preset = config.presets[name]
    params = dict(preset.params)
    params.update(options.sampling_overrides())
    uses_local = any(config.endpoints[ref].local for ref in preset.pool)
    if uses_local and "max_tokens" not in params:
        params["max_tokens"] = LOCAL_MAX_TOKENS
    return params
