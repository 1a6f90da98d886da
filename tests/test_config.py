"""The config file: the example is valid, typos and bad values are named, the token stays secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.config import ConfigError, load_config, redact_url

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


# ----------------------------------------------------------------- scale-out keys (PostgreSQL, S3, shards)

PG_URL = "postgresql://bot:hunter2-secret@db.example:5432/imagine"


def _with(write_config, *, discord: str = "", storage: str = "", extra: str = "") -> Path:
    """A minimal config with lines added to its [discord] and [storage] tables."""
    path = write_config(extra=extra)
    text = path.read_text(encoding="utf-8")
    text = text.replace("[discord]\n", f"[discord]\n{discord}\n", 1)
    text = text.replace(
        'database = "data/test.db"\n', f"{storage}\n" if storage else 'database = "data/test.db"\n', 1
    )
    path.write_text(text, encoding="utf-8")
    return path


def test_a_postgresql_url_is_the_database_and_its_password_shows_nowhere(write_config) -> None:
    path = _with(write_config, storage=f'database = "{PG_URL}"')
    config = load_config(path, env={})
    url = config.storage.database_url
    assert url is not None and config.storage.database_path is None
    assert url.secret() == PG_URL
    for text in (str(url), repr(url), repr(config), str(config.storage)):
        assert "hunter2-secret" not in text
    assert str(url) == "postgresql://bot:***@db.example:5432/imagine"


def test_the_services_are_built_from_a_postgresql_config(write_config) -> None:
    from bot.services import Services

    config = load_config(_with(write_config, storage=f'database = "{PG_URL}"'), env={})
    services = Services(config)  # no database folder to look for templates in
    assert services.templates.for_model(config.models[0], "txt2img").name == "txt2img"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://imagine:s3cret@db.example:5432/bot", "postgresql://imagine:***@db.example:5432/bot"),
        ("postgres://imagine@db/bot", "postgres://imagine@db/bot"),
        (
            "postgresql://u:p%40ss@h/db?sslmode=require&password=two&sslpassword=three",
            "postgresql://u:***@h/db?sslmode=require&password=***&sslpassword=***",
        ),
        ("postgresql://u@h/db?PassWord=s3cret", "postgresql://u@h/db?PassWord=***"),
        ("postgresql://u:p@ss:w@h,h2:5433/db", "postgresql://u:***@h,h2:5433/db"),
        ("postgresql://u:s3cret@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("postgresql://u:s3cret@h:not-a-port/db", "(an unparseable URL)"),
        ("postgresql://u:s3cret@[::1/db", "(an unparseable URL)"),
    ],
)
def test_redact_url_keeps_the_user_and_hides_the_password_wherever_it_is(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_environment_overrides_the_database(write_config) -> None:
    path = write_config()
    config = load_config(path, env={"COMFY_IMAGINE_DATABASE_URL": PG_URL})
    assert config.storage.database_url is not None
    assert config.storage.database_url.secret() == PG_URL


def test_a_database_url_of_another_engine_is_refused_without_echoing_it(write_config) -> None:
    path = _with(write_config, storage='database = "mysql://u:topsecret@h/db"')
    with pytest.raises(ConfigError, match=r"storage\.database: .*mysql:// is not supported") as info:
        load_config(path, env={})
    assert "topsecret" not in str(info.value)


def test_s3_section_is_read(write_config) -> None:
    path = write_config(
        extra='\n[storage.s3]\nbucket = "imagine-images"\nprefix = "prod/"\nendpoint_url = "http://minio:9000"\n'
    )
    s3 = load_config(path, env={}).storage.s3
    assert s3 is not None
    assert (s3.bucket, s3.prefix, s3.endpoint_url, s3.region) == (
        "imagine-images",
        "prod/",
        "http://minio:9000",
        None,
    )


def test_s3_endpoint_must_be_http(write_config) -> None:
    path = write_config(extra='\n[storage.s3]\nbucket = "abc"\nendpoint_url = "minio:9000"\n')
    with pytest.raises(ConfigError, match=r"storage\.s3\.endpoint_url: .*http://"):
        load_config(path, env={})


def test_shards_and_lease_are_read(write_config) -> None:
    path = _with(
        write_config, discord="shard_count = 2\nshard_ids = [1]", extra="\n[scheduler]\nlease_s = 5\n"
    )
    config = load_config(path, env={})
    assert (config.discord.shard_count, config.discord.shard_ids) == (2, [1])
    assert config.scheduler.lease_s == 5


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ("shard_ids = [0]", "shard_ids needs shard_count"),
        ("shard_count = 2\nshard_ids = [2]", r"shard_ids \[2\] are outside 0..1"),
        ("shard_count = 2\nshard_ids = [0, 0]", "lists a shard twice"),
        ("shard_count = 0", "greater than or equal to 1"),
    ],
)
def test_bad_shard_settings_are_named(write_config, shards: str, message: str) -> None:
    path = _with(write_config, discord=shards)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_the_environment_sets_the_shards_of_a_process(write_config) -> None:
    path = write_config()
    config = load_config(path, env={"COMFY_IMAGINE_SHARD_COUNT": "4", "COMFY_IMAGINE_SHARD_IDS": "1, 3"})
    assert (config.discord.shard_count, config.discord.shard_ids) == (4, [1, 3])


def test_bad_shard_ids_from_the_environment_name_the_key(write_config) -> None:
    path = write_config()
    with pytest.raises(ConfigError, match=r"discord\.shard_ids"):
        load_config(path, env={"COMFY_IMAGINE_SHARD_COUNT": "2", "COMFY_IMAGINE_SHARD_IDS": "0,x"})
