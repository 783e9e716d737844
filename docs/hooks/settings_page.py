"""The settings page's table, made from `api.config.Settings` (an MkDocs hook).

`docs/settings.md` holds a marker; at build time `on_page_markdown` puts in its place a
table of every setting: its environment variable, its default and its description (the
`Field(description=...)` in api/config.py), so the page cannot drift from the code.
`settings_table` and `undescribed` are plain functions: tests/docs call them too.
"""

from enum import Enum
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from mkdocs.exceptions import PluginError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from api.config import Settings

MARKER = "<!-- settings-table -->"
PAGE = "settings.md"


def env_name(model: type[BaseSettings], name: str) -> str:
    """The variable a field is read from: its name upper-cased, after any env_prefix."""
    return f"{model.model_config.get('env_prefix', '')}{name}".upper()


def undescribed(model: type[BaseSettings] = Settings) -> list[str]:
    """The fields that have no description (the page would have nothing to say)."""
    return [name for name, field in model.model_fields.items() if not field.description]


def settings_table(model: type[BaseSettings] = Settings) -> str:
    """A Markdown table: one row per setting, in the order the class declares them."""
    rows = ["| Variable | Default | Description |", "| --- | --- | --- |"]
    for name, field in model.model_fields.items():
        cells = (f"`{env_name(model, name)}`", _default(field), _described(field))
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, /, *, page: Any, **_: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"{PAGE} lost its marker {MARKER}: the settings table has no place")
    return markdown.replace(MARKER, settings_table())


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is PydanticUndefined or value is None:
        return "*unset*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, Path):
        shown = value.as_posix()
        return f"`{shown if value.is_absolute() else './' + shown}`"
    if isinstance(value, list | tuple):
        return ", ".join(f"`{item}`" for item in value) if value else "*none*"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _described(field: FieldInfo) -> str:
    text = " ".join((field.description or "").split())
    allowed = _allowed(field)
    return f"{text} *{allowed}.*" if allowed else text


def _allowed(field: FieldInfo) -> str:
    """The bounds the class enforces, in words."""
    low = high = None
    for rule in field.metadata:
        if isinstance(rule, Ge):
            low = f"at least {rule.ge}"
        elif isinstance(rule, Gt):
            low = f"more than {rule.gt}"
        elif isinstance(rule, Le):
            high = f"at most {rule.le}"
        elif isinstance(rule, Lt):
            high = f"less than {rule.lt}"
    words = [part for part in (low, high) if part]
    return ", ".join(words).capitalize()
