"""The config file: the example is valid, typos and bad values are named, the token stays secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_is_valid_and_complete() -> None:
    config = load_config(ROOT / "config.example.toml", env={})
    assert config.backends[0].base_url == "http://127.0.0.1:8188"
    assert config.default_model.name == "sd15"
    assert config.progress.edit_interval_s == 2.0
    assert config.token is None


def test_minimal_config_gets_defaults_and_resolves_paths_beside_the_file(write_config) -> None:
    path = write_config()
    config = load_config(path, env={})
    assert config.backends[0].max_running == 1
    assert config.storage.database == path.parent / "data" / "test.db"
    assert config.limits.per_user_active >= 1
    assert config.model("TINY") is config.default_model


def test_unknown_key_is_named_with_a_suggestion(write_config) -> None:
    path = write_config(extra="\n[progress]\nedit_intervall_s = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message
    assert "progress.edit_intervall_s: unknown key; did you mean 'edit_interval_s'?" in message


def test_unknown_key_inside_a_list_of_tables_names_its_index(write_config) -> None:
    path = write_config(extra='\n[[backends]]\nname = "b"\nurl = "http://x:1"\nmax_runing = 2\n')
    with pytest.raises(ConfigError, match=r"backends\[1\]\.max_runing: unknown key"):
        load_config(path, env={})


def test_bad_url_names_the_key_and_the_value(write_config) -> None:
    path = write_config(url="htp://x")
    with pytest.raises(ConfigError, match=r"backends\[0\]\.url: invalid URL 'htp://x'"):
        load_config(path, env={})


def test_model_size_must_be_a_multiple_of_eight(write_config) -> None:
    path = write_config(extra='\n[[models]]\nname = "odd"\ncheckpoint = "x"\nwidth = 500\n')
    with pytest.raises(ConfigError, match=r"models\[1\]\.width: .*multiple of 8"):
        load_config(path, env={})


def test_duplicate_backend_names_are_refused(write_config) -> None:
    path = write_config(extra='\n[[backends]]\nname = "GPU0"\nurl = "http://x:1"\n')
    with pytest.raises(ConfigError, match=r"backends\[1\]\.name: 'GPU0' is already used by backends\[0\]"):
        load_config(path, env={})


def test_missing_backends_and_bad_toml_are_config_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="backends: required key is missing"):
        load_config(empty, env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[discord\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken, env={})
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", env={})


def test_environment_token_overrides_the_file(write_config) -> None:
    path = write_config()
    path.write_text(path.read_text().replace('token = ""', 'token = "from-file"'))
    assert load_config(path, env={}).token == "from-file"
    assert load_config(path, env={"DISCORD_TOKEN": "from-env"}).token == "from-env"


def test_token_never_appears_in_repr_str_logs_or_errors(write_config, caplog) -> None:
    secret = "MTIz.secret-token-value.XYZ"
    path = write_config()
    config = load_config(path, env={"DISCORD_TOKEN": secret})
    assert config.token == secret
    assert secret not in repr(config)
    assert secret not in str(config)
    assert secret not in config.model_dump_json()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("config loaded: %s %r", config, config.discord)
    assert secret not in caplog.text
    bad = path.read_text().replace('token = ""', "token = 12")
    path.write_text(bad + '\n[limits]\nper_user_active = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"DISCORD_TOKEN": secret})
    assert secret not in str(info.value)
