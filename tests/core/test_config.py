"""Settings: production refuses weak secrets; development keeps a generated one."""

import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.config import Settings, development_secret


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


def one_secret_for_all(folder: Path, workers: int) -> None:
    """`workers` threads ask at once: one secret for all, readable by its owner only, no
    candidate file left behind. (The function itself: Settings.signing_secret is a
    cached_property, which on Python 3.11 holds one lock across instances, and separate
    worker processes share no lock.)"""
    with ThreadPoolExecutor(workers) as pool:
        found = set(pool.map(lambda _: development_secret(folder), range(workers)))
    assert found == {(folder / "secret_key").read_text()}
    assert (folder / "secret_key").stat().st_mode & 0o777 == 0o600
    assert [path.name for path in folder.iterdir()] == ["secret_key"]


def drawn_together(monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    """Hold each of `workers` threads at a barrier as it draws its random secret, so all
    of them go on to store theirs at the same moment."""
    barrier = threading.Barrier(workers, timeout=10)
    draw = secrets.token_urlsafe

    def together(nbytes: int) -> str:
        barrier.wait()
        return draw(nbytes)

    monkeypatch.setattr(secrets, "token_urlsafe", together)


def test_workers_starting_together_share_one_development_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight workers find no secret on a fresh folder and make theirs at the same moment:
    all end up with the same one, readable by its owner only, and no candidate is left
    behind."""
    drawn_together(monkeypatch, 8)
    one_secret_for_all(tmp_path, 8)


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


@pytest.mark.parametrize("previous", ["changethis", "short-secret", "p" * 48 + ",weak"])
def test_production_refuses_a_weak_previous_key(previous: str, tmp_path: Path) -> None:
    """A retired key still verifies tokens: it must be as strong as SECRET_KEY."""
    with pytest.raises(ValidationError, match="PREVIOUS_SECRET_KEYS entry"):
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            environment="production",  # type: ignore[arg-type]
            secret_key="s" * 48,
            previous_secret_keys=previous,  # type: ignore[arg-type]
            data_dir=tmp_path,
        )


def test_production_accepts_strong_previous_keys(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="production",  # type: ignore[arg-type]
        secret_key="s" * 48,
        previous_secret_keys=f"{'p' * 48}, {'q' * 40}",  # type: ignore[arg-type]
        data_dir=tmp_path,
    )
    assert settings.previous_secret_keys == ["p" * 48, "q" * 40]


def test_a_folder_without_hard_links_still_gets_one_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some mounts refuse hard links (EPERM): the secret file is then made exclusively,
    by four workers at the same moment too."""

    def no_links(source: object, target: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    drawn_together(monkeypatch, 4)
    one_secret_for_all(tmp_path, 4)
