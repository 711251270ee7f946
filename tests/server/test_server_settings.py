"""The [server] table: validation, key sources, and the sample presets file."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfuse.errors import InvalidRequestError
from polyfuse.presets import PresetRegistry, load_config
from polyfuse.server import PresetCatalog, ServerSettings, create_app, load_api_keys

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "presets.toml"


def test_defaults_bind_loopback_without_auth() -> None:
    settings = ServerSettings.from_table({})
    assert settings.host == "127.0.0.1" and settings.loopback_only
    assert not settings.auth_enabled
    assert load_api_keys(settings) == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("::", False)],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert ServerSettings.from_table({"host": host}).loopback_only is loopback


@pytest.mark.parametrize("field", ["api_key", "api_keys"])
def test_keys_in_the_file_are_refused(field: str) -> None:
    with pytest.raises(InvalidRequestError, match="api_keys_env") as info:
        ServerSettings.from_table({field: "sk-secret-value"})
    assert "sk-secret-value" not in str(info.value)


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ({"port": 70000}, "port"),
        ({"max_concurrent_requests": 0}, "max_concurrent_requests"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"hots": "0.0.0.0"}, "hots"),
        ({"log_level": "loud"}, "log_level"),
    ],
)
def test_invalid_settings_name_the_field(table: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=r"invalid \[server\] settings") as info:
        ServerSettings.from_table(table)
    assert fragment in str(info.value)


def test_keys_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TEST_KEYS", " sk-a ,sk-b,, ")
    keys_file = tmp_path / "keys"
    keys_file.write_text("# comment\nsk-c\n\nsk-a\n")
    settings = ServerSettings.from_table({"api_keys_env": "TEST_KEYS", "api_keys_file": keys_file})
    keys = load_api_keys(settings)
    assert [k.get_secret_value() for k in keys] == ["sk-a", "sk-b", "sk-c"]
    assert "sk-a" not in repr(keys) and "sk-a" not in repr(settings)


def test_missing_key_sources_fail_at_startup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TEST_KEYS_UNSET", raising=False)
    with pytest.raises(InvalidRequestError, match=r"\$TEST_KEYS_UNSET, which is not set"):
        load_api_keys(ServerSettings.from_table({"api_keys_env": "TEST_KEYS_UNSET"}))
    monkeypatch.setenv("TEST_KEYS_EMPTY", " , ")
    with pytest.raises(InvalidRequestError, match="holds no API key"):
        load_api_keys(ServerSettings.from_table({"api_keys_env": "TEST_KEYS_EMPTY"}))
    with pytest.raises(InvalidRequestError, match="cannot be read"):
        load_api_keys(ServerSettings.from_table({"api_keys_file": tmp_path / "absent"}))
    empty = tmp_path / "empty"
    empty.write_text("# nothing here\n")
    with pytest.raises(InvalidRequestError, match="holds no key"):
        load_api_keys(ServerSettings.from_table({"api_keys_file": empty}))


def test_the_sample_presets_file_is_valid() -> None:
    config = load_config(EXAMPLE)
    settings = ServerSettings.from_table(config.server)
    assert settings.loopback_only and not settings.auth_enabled
    app = create_app(config)  # builds without starting the embedded model
    assert app.state.settings == settings
    assert PresetCatalog(PresetRegistry(config)).model_ids == [
        "fusion/fuse",
        "fusion/best-of-3",
        "fusion/vote",
    ]


def test_invalid_preset_params_fail_at_startup(fake_url: str) -> None:
    config = load_config(
        {
            "endpoints": {"e": {"base_url": fake_url, "model": "m"}},
            "presets": {"p": {"pool": ["e"], "params": {"temprature": 0.3}}},
        }
    )
    with pytest.raises(InvalidRequestError, match=r"preset 'p' has invalid params \(temprature"):
        create_app(config)
