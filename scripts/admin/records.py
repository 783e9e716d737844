"""Reading seed files: a JSON array or NDJSON, each record with the line it starts on."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_decoder = json.JSONDecoder()


@dataclass
class RawRecord:
    source: str
    line: int
    value: Any = None
    error: str | None = None
    size: int = 0  # bytes of the file this record accounts for (progress)


def read_records(path: Path) -> Iterator[RawRecord]:
    """Records of a JSON array (`[{...}, ...]`) or of NDJSON (one object a line)."""
    with path.open(encoding="utf-8") as handle:
        head = handle.read(1024)
        handle.seek(0)
        if head.lstrip().startswith("["):
            yield from _json_array(str(path), handle.read())
        else:
            yield from _ndjson(str(path), handle)


def _ndjson(source: str, lines: Any) -> Iterator[RawRecord]:
    for number, line in enumerate(lines, start=1):
        size = len(line.encode("utf-8"))
        if not line.strip():
            continue
        try:
            yield RawRecord(source, number, value=json.loads(line), size=size)
        except ValueError as error:
            yield RawRecord(source, number, error=f"invalid JSON: {error}", size=size)


def _json_array(source: str, text: str) -> Iterator[RawRecord]:
    position = text.index("[") + 1
    line = 1 + text.count("\n", 0, position)
    while True:
        start = _skip_space(text, position)
        if start >= len(text) or text[start] == "]":
            return
        line += text.count("\n", position, start)
        try:
            value, end = _decoder.raw_decode(text, start)
        except ValueError as error:
            yield RawRecord(source, line, error=f"invalid JSON: {error}", size=len(text) - start)
            return
        yield RawRecord(source, line, value=value, size=len(text[position:end].encode("utf-8")))
        line += text.count("\n", start, end)
        position = _skip_space(text, end)
        if position < len(text) and text[position] == ",":
            position += 1


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position
