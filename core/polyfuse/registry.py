"""``PresetRegistry``: the live side of a presets file — endpoints, embedded llama.cpp models
and the fusions built from :class:`~polyfuse.presets.PresetSpec` via
:class:`~polyfuse.FusionSpec`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from .backends import Backend, OpenAIEndpoint
from .errors import InvalidRequestError
from .fusion import Fusion
from .presets import EndpointSpec, PresetsConfig, load_config
from .spec import FusionSpec

if TYPE_CHECKING:
    from .local import LocalModel

__all__ = ["PresetRegistry"]

_MAX_LOCAL_SLOTS = 16


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
            if endpoint in preset.endpoint_names:
                slots = max(slots, preset.size + 1)
        return min(slots, _MAX_LOCAL_SLOTS)

    def start(self) -> PresetRegistry:
        """Start embedded models and build every endpoint (idempotent)."""
        for name, spec in self.config.endpoints.items():
            if name in self._backends:
                continue
            if spec.local:
                from .local import LocalModel

                model = LocalModel(spec.gguf, slots=self._slots_for(name), name=name)
                model.start()
                self._local_models[name] = model
                self._backends[name] = model.endpoint(**spec.endpoint_settings())
            else:
                assert spec.base_url and spec.model
                settings = spec.endpoint_settings()
                settings["name"] = name
                key = self._api_key(name, spec)
                if key is not None:
                    settings["api_key"] = key
                if spec.supports_n is not None:
                    settings["supports_n"] = spec.supports_n
                self._backends[name] = OpenAIEndpoint(spec.base_url, spec.model, **settings)
        return self

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

    def spec(self, name: str) -> FusionSpec:
        """The :class:`FusionSpec` of a preset, with its endpoints' backends."""
        if name not in self.config.presets:
            known = ", ".join(self.names) or "none"
            raise InvalidRequestError(f"unknown preset {name!r}; known presets: {known}")
        return self.config.presets[name].to_spec(self.backend)

    def fusion(self, name: str) -> Fusion:
        """The :class:`Fusion` for a preset (built once)."""
        fusion = self._fusions.get(name)
        if fusion is None:
            fusion = self._fusions[name] = self.spec(name).build()
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
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
