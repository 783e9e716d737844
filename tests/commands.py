"""The database commands a piece of code sends, counted through PyMongo's command
monitoring on a real server: round trips are a count, not a timing."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pymongo import monitoring

# Commands every client sends on its own, whatever the code under test does.
BACKGROUND = {"hello", "isMaster", "ismaster", "ping", "endSessions", "buildInfo"}


@dataclass
class Recorder(monitoring.CommandListener):
    """Registered once per process (PyMongo has no way to unregister a listener); it
    records only while a `recording()` block is open, and only its database's commands."""

    database: str | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        mine = self.database is not None and (
            event.database_name == self.database or self._touches_database(event)
        )
        if mine and event.command_name not in BACKGROUND:
            self.commands.append({"name": event.command_name, **event.command})

    def _touches_database(self, event: monitoring.CommandStartedEvent) -> bool:
        """A client-level bulk write runs on `admin` and names its collections."""
        if event.command_name != "bulkWrite":
            return False
        namespaces = [info["ns"] for info in event.command.get("nsInfo", [])]
        return any(ns.startswith(f"{self.database}.") for ns in namespaces)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


_recorder = Recorder()
monitoring.register(_recorder)  # before any client exists: clients made later report to it


@contextmanager
def recording(database: str) -> Iterator[list[dict[str, Any]]]:
    """The commands sent to `database` (by any client made after import) inside."""
    _recorder.database, _recorder.commands = database, []
    try:
        yield _recorder.commands
    finally:
        _recorder.database = None
