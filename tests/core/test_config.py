"""Settings: production refuses weak secrets; development keeps a generated one."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from api.config import Settings


@pytest.mark.parametrize("secret", [None, "", "changethis", "short-secret"])
def test_production_refuses_missing_or_weak_secret(secret: str | None, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None, environment="production", secret_key=secret, data_dir=tmp_path)  # type: ignore[call-arg, arg-type]


def test_production_accepts_a_strong_secret(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None, environment="production", secret_key="s" * 48, data_dir=tmp_path
    )  # type: ignore[call-arg, arg-type]
    assert settings.signing_secret == "s" * 48
    assert not (tmp_path / "secret_key").exists()


def test_development_generates_and_keeps_a_secret(tmp_path: Path) -> None:
    first = Settings(_env_file=None, data_dir=tmp_path).signing_secret  # type: ignore[call-arg]
    second = Settings(_env_file=None, data_dir=tmp_path).signing_secret  # type: ignore[call-arg]
    assert first == second
    assert len(first) >= 48
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MONGODB_DB", "from_env")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("REGISTRATION_OPEN", "false")
    monkeypatch.setenv("BCRYPT_ROUNDS", "5")
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert settings.mongodb_db == "from_env"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.registration_open is False
    assert settings.bcrypt_rounds == 5
