"""Unit tests of :mod:`worker.config`: environment, TOML file, defaults and error messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.config import DEFAULT_MODEL, PROJECT_ROOT, Settings, load_settings
from worker.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No COPYDESK_* variable from the outside, and a working directory without a copydesk.toml."""
    for name in list(os.environ):
        if name.startswith("COPYDESK_"):
            monkeypatch.delenv(name)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    settings = load_settings()
    assert settings.model == DEFAULT_MODEL
    assert settings.home == PROJECT_ROOT / "output"
    assert settings.styles_dir == PROJECT_ROOT / "styles"
    assert settings.templates_dir == PROJECT_ROOT / "templates"
    assert settings.default_style == "plain-howto"
    assert settings.device == "auto"
    assert settings.dtype == "auto"
    assert settings.batch_size is None and settings.flush_size is None  # picked for the dtype: worker.engine.engine
    assert settings.exact_rows is None  # exact where dtype is set to float32: worker.engine.placement
    assert settings.max_attempts == 2
    assert settings.store_url is None
    assert settings.broker_url is None
    assert settings.articles_dir == settings.home / "articles"


def test_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COPYDESK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COPYDESK_BATCH_SIZE", "4")
    monkeypatch.setenv("COPYDESK_DEVICE", "cpu")
    monkeypatch.setenv("COPYDESK_DTYPE", "float32")
    monkeypatch.setenv("COPYDESK_DEFAULT_STYLE", "tech-deepdive")
    monkeypatch.setenv("COPYDESK_SEED", "42")
    monkeypatch.setenv("COPYDESK_LEASE_SECONDS", "12.5")
    monkeypatch.setenv("COPYDESK_TASK_SOFT_TIME_LIMIT", "5")
    monkeypatch.setenv("COPYDESK_TASK_TIME_LIMIT", "10")
    monkeypatch.setenv("COPYDESK_STORE_URL", "sqlite:////tmp/elsewhere.db")
    settings = load_settings()
    assert settings.home == tmp_path / "home"
    assert settings.batch_size == 4
    assert settings.device == "cpu"
    assert settings.dtype == "float32"
    assert settings.default_style == "tech-deepdive"
    assert settings.seed == 42
    assert settings.lease_seconds == 12.5
    assert settings.effective_store_url == "sqlite:////tmp/elsewhere.db"


def test_keyword_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPYDESK_BATCH_SIZE", "4")
    assert load_settings(batch_size=8).batch_size == 8


def test_toml_file_from_copydesk_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = write_toml(
        tmp_path / "settings.toml",
        f'home = "{tmp_path / "tomlhome"}"\nbatch_size = 32\nmax_attempts = 3\nreviewer = "ana"\n',
    )
    monkeypatch.setenv("COPYDESK_CONFIG", str(config))
    settings = load_settings()
    assert settings.home == tmp_path / "tomlhome"
    assert settings.batch_size == 32
    assert settings.max_attempts == 3
    assert settings.reviewer == "ana"
    assert settings.seed == 20261129  # untouched fields keep their defaults


def test_environment_wins_over_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = write_toml(tmp_path / "settings.toml", "batch_size = 32\nseed = 7\n")
    monkeypatch.setenv("COPYDESK_CONFIG", str(config))
    monkeypatch.setenv("COPYDESK_BATCH_SIZE", "2")
    settings = load_settings()
    assert settings.batch_size == 2
    assert settings.seed == 7


def test_copydesk_toml_in_working_directory_is_read(clean_environment: Path) -> None:
    write_toml(clean_environment / "copydesk.toml", "batch_size = 5\n")
    assert load_settings().batch_size == 5


def test_tilde_in_paths_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("COPYDESK_HOME", "~/copydesk-home")
    assert load_settings().home == tmp_path / "copydesk-home"


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("COPYDESK_BATCH_SIZE", "0", "batch_size"),
        ("COPYDESK_BATCH_SIZE", "many", "batch_size"),
        ("COPYDESK_BATCH_SIZE", "257", "batch_size"),
        ("COPYDESK_DEVICE", "tpu", "device"),
        ("COPYDESK_DTYPE", "float16", "dtype"),
        ("COPYDESK_MAX_ATTEMPTS", "6", "max_attempts"),
        ("COPYDESK_LEASE_SECONDS", "0", "lease_seconds"),
        ("COPYDESK_THREADS", "-1", "threads"),
    ],
)
def test_invalid_environment_value_names_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert f"{field}:" in str(exc.value)
    assert str(exc.value).startswith("invalid configuration")


def test_exact_rows_are_refused_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPYDESK_EXACT_ROWS", "true")
    monkeypatch.setenv("COPYDESK_DTYPE", "bfloat16")
    with pytest.raises(ConfigError, match="exact_rows needs dtype float32"):
        load_settings()
    monkeypatch.setenv("COPYDESK_DTYPE", "float32")
    assert load_settings().exact_rows is True


def test_all_invalid_fields_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPYDESK_DEVICE", "tpu")
    monkeypatch.setenv("COPYDESK_BATCH_SIZE", "0")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "device:" in str(exc.value)
    assert "batch_size:" in str(exc.value)


def test_invalid_value_in_toml_names_the_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COPYDESK_CONFIG", str(write_toml(tmp_path / "c.toml", 'dtype = "int8"\n')))
    with pytest.raises(ConfigError, match="dtype:"):
        load_settings()


def test_unknown_key_in_toml_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COPYDESK_CONFIG", str(write_toml(tmp_path / "c.toml", "batch_sise = 4\n")))
    with pytest.raises(ConfigError, match="batch_sise"):
        load_settings()


def test_malformed_toml_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = write_toml(tmp_path / "broken.toml", "batch_size = \n")
    monkeypatch.setenv("COPYDESK_CONFIG", str(config))
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert str(config) in str(exc.value)


def test_missing_config_file_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "copydesk.toml"
    monkeypatch.setenv("COPYDESK_CONFIG", str(missing))
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert str(missing) in str(exc.value)
    assert "does not exist" in str(exc.value)


def test_config_error_is_not_a_validation_error_for_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPYDESK_SEED", "not-a-number")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert exc.value.exit_code == 16  # its own code: 2 is a usage error (a bad option)


def test_effective_store_url_defaults_to_sqlite_under_home(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "h")
    assert settings.effective_store_url == f"sqlite:///{(tmp_path / 'h').resolve() / 'copydesk.db'}"


def test_effective_store_url_resolves_a_relative_home(clean_environment: Path) -> None:
    settings = Settings(home=Path("relative-home"))
    url = settings.effective_store_url
    assert url == f"sqlite:///{clean_environment.resolve() / 'relative-home' / 'copydesk.db'}"
    assert url.startswith("sqlite:////")  # an absolute path: four slashes


def test_explicit_store_url_wins() -> None:
    settings = load_settings(store_url="postgresql+psycopg://u@db/copydesk")
    assert settings.effective_store_url == "postgresql+psycopg://u@db/copydesk"
