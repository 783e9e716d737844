"""One lock for every install. The Docker image (no extras), scripts/serve (`embedded`) and the
suite (`test`) all install from uv.lock with `uv sync --frozen`, so each package must be locked
at one version for a given Python: what the suite tests is what production runs. (Before the
lock, the suite got the typer that openapi-python-client caps, production the newest one.)
scripts/test checks that the lock matches pyproject.toml (`uv lock --check`)."""

import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def locked_packages() -> dict[str, list[dict[str, Any]]]:
    with (ROOT / "uv.lock").open("rb") as file:
        lock = tomllib.load(file)
    assert "conflicts" not in lock, "extras declared as conflicting would resolve apart"
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for package in lock["package"]:
        by_name[package["name"]].append(package)
    return by_name


def test_every_install_set_gets_one_version_of_each_package() -> None:
    """A package locked twice is split by Python version only, never by an extra."""
    for name, entries in locked_packages().items():
        if len(entries) == 1:
            continue
        for entry in entries:
            markers = entry.get("resolution-markers", [])
            assert markers, f"{name} {entry['version']} is locked for every Python"
            assert not any("extra ==" in marker for marker in markers), (name, markers)
