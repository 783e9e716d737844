"""The settings page is made from api.config.Settings: every setting described, none left out."""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from pydantic import Field
from pydantic_settings import BaseSettings

from api.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def load_hook() -> ModuleType:
    """docs/hooks/settings_page.py, loaded by path as MkDocs loads it (docs/ is no package)."""
    path = ROOT / "docs" / "hooks" / "settings_page.py"
    spec = importlib.util.spec_from_file_location("settings_page_hook", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = load_hook()


class FakeFile:
    src_uri = hook.PAGE


class FakePage:
    file = FakeFile()


def rendered_page() -> str:
    source = (ROOT / "docs" / hook.PAGE).read_text()
    page: str = hook.on_page_markdown(source, page=FakePage(), config=None, files=None)
    return page


def test_every_setting_has_a_description() -> None:
    assert hook.undescribed(Settings) == []


def test_a_setting_without_a_description_is_found() -> None:
    class Planted(BaseSettings):
        described: int = Field(default=1, description="Says what it does.")
        silent: int = 2

    assert hook.undescribed(Planted) == ["silent"]


def test_every_setting_has_a_row_on_the_rendered_page() -> None:
    page = rendered_page()
    rows = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", page, flags=re.MULTILINE))
    expected = {name.upper() for name in Settings.model_fields}
    assert expected - rows == set()
    assert hook.MARKER not in page


def test_a_row_shows_the_default_and_the_description() -> None:
    row = next(
        line for line in rendered_page().splitlines() if line.startswith("| `BCRYPT_ROUNDS` |")
    )
    description = Settings.model_fields["bcrypt_rounds"].description
    assert description is not None
    assert "| `12` |" in row
    assert " ".join(description.split()) in row
    assert "At least 4, at most 16." in row
