"""The embedded development database: SecantusDB run as a separate process.

SecantusDB is GPL-2.0, so it is never imported: we start `python -m secantus`
and talk to it over the MongoDB wire protocol like any other server. One server
serves a data folder; a state file (guarded by a lock) lets later processes of
the same folder (more workers, the admin scripts) attach to it instead of
starting a second one on the same files.
"""

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

STARTUP_TIMEOUT_S = 60.0


class EmbeddedServerError(RuntimeError):
    pass


@dataclass
class EmbeddedServer:
    """A running embedded server; `owned` when this process started it (and stops it)."""

    url: str
    pid: int
    owned: bool
    process: subprocess.Popen[bytes] | None = None

    def stop(self, timeout: float = 20.0) -> None:
        if not self.owned or self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_or_attach(data_dir: Path) -> EmbeddedServer:
    """Attach to the data folder's running server, or start one. Blocking: call in a thread."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with locked(data_dir / "mongo.lock"):
        state_file = data_dir / "mongo.json"
        running = running_server(state_file)
        if running:
            return running
        server = start(data_dir / "mongo", log_file=data_dir / "mongo.log")
        state_file.write_text(json.dumps({"url": server.url, "pid": server.pid}))
        return server


def start(
    storage: Path,
    log_file: Path | None = None,
    port: int | None = None,
    extra_args: Sequence[str] = (),
) -> EmbeddedServer:
    """Start a server on `storage` (a folder, or ':memory:') and wait until it answers ping.

    `extra_args` are for tests: `--enable-test-commands` (failpoints), `--standalone`.
    """
    port = port or free_port()
    command = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--storage-path", str(storage), "--sync-on-commit", "--log-level", "WARNING"]
    command += extra_args
    log = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    try:
        # Its own session: a terminal's Ctrl-C (sent to the whole foreground group) reaches
        # the API alone, which stops the database once it has drained its requests.
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        if log_file:
            log.close()  # type: ignore[union-attr]
    url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    server = EmbeddedServer(url=url, pid=process.pid, owned=True, process=process)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    # Ours must answer, and still be running: on a given port, a server of someone
    # else's could be the one answering.
    while not _answers_ping(url, timeout_ms=500) or process.poll() is not None:
        if process.poll() is not None:
            raise EmbeddedServerError(f"embedded MongoDB exited with code {process.returncode}")
        if time.monotonic() > deadline:
            server.stop()
            raise EmbeddedServerError("embedded MongoDB did not answer ping in time")
        time.sleep(0.1)
    return server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(url: str, timeout_ms: int) -> bool:
    client: MongoClient[dict[str, object]] = MongoClient(
        url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _read_state(path: Path) -> EmbeddedServer | None:
    """The server another process started for this folder, if it is still alive."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("url"), str):
        return None
    if not _pid_alive(state.get("pid")):
        return None
    return EmbeddedServer(url=state["url"], pid=state["pid"], owned=False)


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def running_server(state_file: Path) -> EmbeddedServer | None:
    """The live server a folder's state file names, if it answers."""
    running = _read_state(state_file)
    if running and _answers_ping(running.url, timeout_ms=1000):
        return running
    return None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """The folder's lock: one process at a time decides who runs its server."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
