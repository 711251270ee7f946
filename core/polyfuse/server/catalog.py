"""Model names ↔ presets: what ``/v1/models`` lists and what ``model`` may name."""

from __future__ import annotations

from pydantic import ValidationError

from ..errors import InvalidRequestError
from ..fusion import Fusion
from ..messages import ChatRequest, SamplingParams
from ..presets import PresetRegistry
from .errors import APIError

__all__ = ["MODEL_PREFIX", "PresetCatalog", "model_id"]

MODEL_PREFIX = "fusion/"


def model_id(preset: str) -> str:
    """The model id clients use for a preset: ``fusion/<preset>``."""
    return MODEL_PREFIX + preset


class PresetCatalog:
    """The presets a server offers, as OpenAI model ids ``fusion/<preset>``.

    A request may name a preset with or without the prefix. Each preset's default sampling
    parameters are validated once, here, so a bad presets file fails at startup.
    """

    def __init__(self, registry: PresetRegistry) -> None:
        self.registry = registry
        self._defaults: dict[str, SamplingParams] = {}
        for name in registry.names:
            try:
                self._defaults[name] = SamplingParams.model_validate(registry.params(name))
            except ValidationError as exc:
                details = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                raise InvalidRequestError(
                    f"preset {name!r} has invalid params ({details}); fix [presets.{name}] params"
                ) from None

    @property
    def names(self) -> list[str]:
        """Preset names, in file order."""
        return self.registry.names

    @property
    def model_ids(self) -> list[str]:
        """The model ids clients use."""
        return [model_id(name) for name in self.registry.names]

    def resolve(self, model: str) -> str:
        """The preset a model name refers to; a 404 :class:`APIError` listing the known ones
        when there is none."""
        name = model.removeprefix(MODEL_PREFIX)
        if name in self._defaults:
            return name
        known = ", ".join(self.model_ids) or "none (the presets file defines no preset)"
        raise APIError(
            404,
            f"The model {model!r} does not exist on this server; known models: {known}",
            param="model",
            code="model_not_found",
        )

    def fusion(self, name: str) -> Fusion:
        """The fusion behind a preset."""
        return self.registry.fusion(name)

    def request_for(self, name: str, request: ChatRequest) -> ChatRequest:
        """``request`` with the preset's default parameters under its own."""
        defaults = self._defaults[name]
        if not defaults.model_fields_set:
            return request
        return request.with_params(defaults.merged(request.params))
