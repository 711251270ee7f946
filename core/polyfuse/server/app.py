"""``create_app``: the FastAPI application behind ``polyfuse serve``."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..presets import PresetRegistry, PresetsConfig, load_config
from ..redaction import Redactor, install_log_redaction
from .catalog import PresetCatalog, model_id
from .chat import ChatCompletions, error_response
from .errors import APIError
from .guards import add_guards
from .limits import ConcurrencyLimiter
from .metrics import CONTENT_TYPE, ServerMetrics
from .settings import ServerSettings, load_api_keys

__all__ = ["CHAT_PATH", "create_app"]

logger = logging.getLogger("polyfuse.server")

CHAT_PATH = "/v1/chat/completions"


def _registry(presets: PresetRegistry | PresetsConfig | str | Path) -> PresetRegistry:
    if isinstance(presets, PresetRegistry):
        return presets
    if isinstance(presets, PresetsConfig):
        return PresetRegistry(presets)
    return PresetRegistry(load_config(presets))


def _upstream_secrets(registry: PresetRegistry) -> list[str]:
    secrets: list[str] = []
    for spec in registry.config.endpoints.values():
        if spec.api_key is not None:
            secrets.append(spec.api_key.get_secret_value())
        if spec.api_key_env and os.environ.get(spec.api_key_env):
            secrets.append(os.environ[spec.api_key_env])
    return secrets


def create_app(
    presets: PresetRegistry | PresetsConfig | str | Path,
    settings: ServerSettings | None = None,
) -> FastAPI:
    """Build the OpenAI-compatible fusion server.

    Args:
        presets: a presets file, a parsed :class:`PresetsConfig`, or a :class:`PresetRegistry`
            (the app takes it over: it starts it on startup and closes it on shutdown).
        settings: server settings (default: the file's ``[server]`` table).

    Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /v1/models/{id}``,
    ``GET /health`` and ``GET /metrics``. When API keys are configured, every ``/v1`` route
    needs ``Authorization: Bearer <key>``.

    Raises:
        InvalidRequestError: the presets or settings are invalid, or a named key source is
            missing.
    """
    registry = _registry(presets)
    settings = settings or ServerSettings.from_table(registry.config.server)
    keys = load_api_keys(settings)
    catalog = PresetCatalog(registry)
    metrics = ServerMetrics()
    secrets = [*_upstream_secrets(registry), *(k.get_secret_value() for k in keys)]
    redact = Redactor(secrets)
    install_log_redaction(secrets)  # the same keys are scrubbed from every log line
    limiter = ConcurrencyLimiter(settings.max_concurrent_requests)
    chat = ChatCompletions(catalog, settings, metrics, redact)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncGenerator[None, None]:
        await asyncio.to_thread(registry.start)
        if not keys and not settings.loopback_only:
            logger.warning(
                "serving on %s without API keys: anyone who can reach this port can spend "
                "your upstream tokens; set [server] api_keys_env or api_keys_file (until then "
                "only loopback Host names, and those in allowed_hosts, are answered)",
                settings.host,
            )
        logger.info("polyfuse serving models: %s", ", ".join(catalog.model_ids))
        try:
            yield
        finally:
            await registry.aclose()

    app = FastAPI(
        title="polyfuse",
        lifespan=lifespan,
        redirect_slashes=False,  # a redirect would echo the request's Host
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.limiter = limiter

    def model_card(model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": created, "owned_by": "polyfuse"}

    @app.post(CHAT_PATH, response_model=None)
    async def chat_completions(request: Request) -> Response:
        return await chat(request)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(m) for m in catalog.model_ids]}

    @app.get("/v1/models/{model:path}", response_model=None)
    async def retrieve_model(model: str) -> Response:
        try:
            preset = catalog.resolve(model)
        except APIError as exc:
            return error_response(exc)
        return JSONResponse(model_card(model_id(preset)))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": catalog.model_ids, "in_flight": limiter.in_flight}

    @app.get("/metrics", response_model=None)
    async def prometheus() -> Response:
        metrics.in_flight.set(limiter.in_flight)
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        message = "Not found" if exc.status_code == 404 else str(exc.detail)
        return error_response(APIError(exc.status_code, message, headers=dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> Response:
        logger.error("internal error while answering", exc_info=exc)
        return error_response(
            APIError(500, "internal server error; see the server log", type="server_error")
        )

    add_guards(
        app,
        settings,
        keys=keys,
        limiter=limiter,
        metrics=metrics,
        body_paths=frozenset({CHAT_PATH}),
    )
    return app
