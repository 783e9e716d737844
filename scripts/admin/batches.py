"""What every seed batch shares: the run's options, its report, and the bulk write that
fills the report line by line."""

from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import BulkWriteError

from documents import Item, User
from scripts.admin.records import RawRecord


@dataclass(frozen=True)
class Options:
    bcrypt_rounds: int
    dry_run: bool = False
    overwrite: bool = False  # existing users' given fields, items wholesale
    promote: bool = False  # a record may make an existing account a superuser
    batch_size: int = 500
    history_max_versions: int = 100  # HISTORY_MAX_VERSIONS: how many an item keeps


@dataclass
class Report:
    valid: int = 0
    written: dict[str, int] = field(default_factory=lambda: {"user": 0, "item": 0})
    errors: list[tuple[str, int, str]] = field(default_factory=list)
    notices: list[tuple[str, int, str]] = field(default_factory=list)
    kept: int = 0  # records whose stored values were kept: changed since seed wrote them

    def fail(self, raw: RawRecord, reason: str) -> None:
        self.errors.append((raw.source, raw.line, reason))

    def notice(self, raw: RawRecord, text: str) -> None:
        self.notices.append((raw.source, raw.line, text))

    def error_lines(self) -> list[str]:
        """`file:line: reason`, in file order (batches find some errors later than others)."""
        return [f"{source}:{line}: {reason}" for source, line, reason in sorted(self.errors)]

    def notice_lines(self) -> list[str]:
        return [f"{source}:{line}: {text}" for source, line, text in sorted(self.notices)]


@dataclass
class Bulk:
    """Which operations of a bulk write were refused, and which inserted by upsert; the
    lines of the refused ones (each already reported)."""

    failed: set[int] = field(default_factory=set)
    upserted: set[int] = field(default_factory=set)
    failed_lines: set[tuple[str, int]] = field(default_factory=set)


async def write(
    model: type[User | Item],
    operations: list[Any],
    sources: list[RawRecord],
    kind: str,
    report: Report,
) -> Bulk:
    """One unordered bulk write; `sources[i]` is the line of `operations[i]`."""
    if not operations:
        return Bulk()
    try:
        result = await model.get_pymongo_collection().bulk_write(operations, ordered=False)
    except BulkWriteError as error:
        details = error.details
        report.written[kind] += sum(
            details.get(count, 0) for count in ("nUpserted", "nInserted", "nModified")
        )
        bulk = Bulk(upserted={upsert["index"] for upsert in details.get("upserted", [])})
        for failure in details.get("writeErrors", []):
            index = failure["index"]
            reason = "duplicate of an existing record" if failure.get("code") == 11000 else ""
            report.fail(sources[index], reason or failure.get("errmsg", "write failed"))
            bulk.failed.add(index)
            bulk.failed_lines.add((sources[index].source, sources[index].line))
        return bulk
    report.written[kind] += result.upserted_count + result.inserted_count + result.modified_count
    return Bulk(upserted=set(result.upserted_ids or {}))
