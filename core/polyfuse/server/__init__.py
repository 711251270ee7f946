"""``polyfuse serve``: an OpenAI-compatible server whose models are fusion presets.

Any OpenAI client, chat UI or agent framework gets fused answers by pointing its
``base_url`` at the server and naming a preset as the model (``fusion/<preset>``)::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8090/v1", api_key="unused-or-your-key")
    client.chat.completions.create(model="fusion/fast", messages=[...], stream=True)

Needs ``pip install ".[server]"`` (in a polyfuse checkout).
"""

from __future__ import annotations

from .app import CHAT_PATH, create_app
from .catalog import MODEL_PREFIX, PresetCatalog, model_id
from .errors import APIError, error_body
from .protocol import ConnectionLimits, protocol_for
from .runner import run_server, settings_for
from .settings import ServerSettings, load_api_keys

__all__ = [
    "CHAT_PATH",
    "MODEL_PREFIX",
    "APIError",
    "ConnectionLimits",
    "PresetCatalog",
    "ServerSettings",
    "create_app",
    "error_body",
    "load_api_keys",
    "model_id",
    "protocol_for",
    "run_server",
    "settings_for",
]
