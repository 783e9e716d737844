"""What every benchmark mode shares: a database, the app and the floor serving it, a user
with a token and items to read (`running`)."""

import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import httpx2
from bson import ObjectId
from pymongo import MongoClient

from api.accounts.passwords import digest
from api.accounts.tokens import TokenSigner
from api.core import embedded
from documents.search import search_terms

SECRET = "bench-secret-" + "b" * 40
DB = "bench"


@dataclass
class Setup:
    targets: dict[str, str]  # label -> base URL
    token: str  # an access token (JWT) of a password login
    access_token: str  # a personal access token (items:read) of the same user
    user_id: ObjectId
    friend_token: str  # another user's JWT: half of their list is the first user's items
    first_item: str
    mongodb_url: str
    pids: dict[str, int]  # label -> server process id
    env: dict[str, str]  # the servers' environment (to start more of them)


@contextmanager
def running(items: int) -> Iterator[Setup]:
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = os.environ.get("MONGODB_URL")
        if url is None:
            server = embedded.start(Path(tmp) / "db")
            url = server.url
        try:
            token, access_token, user_id = _seed_user(url)
            friend_token, _, friend_id = seed_user(url, "friend")
            env = {
                **os.environ,
                "MONGODB_URL": url,
                "MONGODB_DB": DB,
                "SECRET_KEY": SECRET,
                "LOG_LEVEL": "WARNING",
                "DATA_DIR": tmp,
                # A scale check may wait far longer for the embedded server than a request should.
                "MONGODB_SOCKET_TIMEOUT_MS": "900000",
            }
            # The app first: it creates the indexes while the collection is still empty.
            app = serve(["api.server"], env)
            floor = serve(
                ["uvicorn", "--factory", "bench.floor:create_app", "--no-access-log"], env
            )
            try:
                # Every other item of the user's is shared with the friend, who owns as
                # many: the friend's list is half their own, half shared.
                first = seed_items(url, user_id, 0, items, sharee=friend_id)
                if items > 1:
                    seed_items(url, friend_id, 0, items // 2)
                targets = {"app": app[1], "floor": floor[1]}
                pids = {"app": app[0].pid, "floor": floor[0].pid}
                yield Setup(
                    targets, token, access_token, user_id, friend_token, first, url, pids, env
                )
            finally:
                for process, _ in (app, floor):
                    process.terminate()
                    process.wait()
        finally:
            if server is not None:
                server.stop()


def _seed_user(url: str) -> tuple[str, str, ObjectId]:
    client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
    with client:
        client.drop_database(DB)
    return seed_user(url, "bench")


def seed_user(url: str, name: str) -> tuple[str, str, ObjectId]:
    """A user with a live session (a JWT) and a personal access token (items:read)."""
    client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
    with client:
        user_id, session_id, token_id = ObjectId(), ObjectId(), ObjectId()
        now = datetime.now(UTC).replace(microsecond=0)
        secret = secrets.token_urlsafe(32)
        client[DB].access_tokens.insert_one(
            {
                "_id": token_id,
                "user_id": user_id,
                "name": "bench",
                "scopes": ["items:read"],
                "secret_hash": digest(secret),
                "token_version": 0,
                "created_at": now,
                "expires_at": None,
                "last_used_at": None,  # the app records use once a minute, as in service
            }
        )
        client[DB].users.insert_one(
            {
                "_id": user_id,
                "email": f"{name}@example.com",
                "username": name,
                "full_name": None,
                "hashed_password": bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode(),
                "is_active": True,
                "is_superuser": False,
                "email_verified": False,
                "token_version": 0,
                "session_ids": [session_id],
                "access_token_ids": [token_id],
                "created_at": now,
                "updated_at": now,
            }
        )
    signer = TokenSigner(SECRET, "docstore", "docstore-api", 3600)
    jwt = signer.issue(str(user_id), 0, str(session_id))
    return jwt, f"dsk_{token_id}_{secret}", user_id


def seed_users(url: str, count: int) -> tuple[list[str], list[ObjectId]]:
    """`count` users with a live session each, written raw in one batch (no password
    works for them): their JWTs and ids."""
    signer = TokenSigner(SECRET, "docstore", "docstore-api", 3600)
    now = datetime.now(UTC).replace(microsecond=0)
    users: list[dict[str, Any]] = [
        {
            "_id": ObjectId(), "email": f"watcher{n}@example.com", "username": f"watcher{n}",
            "full_name": None, "hashed_password": "!no-password:bench", "is_active": True,
            "is_superuser": False, "email_verified": False, "token_version": 0,
            "session_ids": [ObjectId()], "access_token_ids": [],
            "created_at": now, "updated_at": now,
        }
        for n in range(count)
    ]  # fmt: skip
    client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
    with client:
        client[DB].users.insert_many(users)
    tokens = [signer.issue(str(u["_id"]), 0, str(u["session_ids"][0])) for u in users]
    return tokens, [u["_id"] for u in users]


def seed_items(
    url: str, user_id: ObjectId, start: int, stop: int, sharee: ObjectId | None = None
) -> str:
    """Items number `start` to `stop` of the user (older as the number grows), raw, the
    even ones shared with `sharee` (a viewer) when given; the first one's id."""
    client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
    now = datetime.now(UTC).replace(microsecond=0)
    first = None
    started = time.monotonic()
    with client:
        for low in range(start, stop, 5000):
            batch = [
                _item(user_id, i, now, sharee if i % 2 == 0 else None)
                for i in range(low, min(low + 5000, stop))
            ]
            client[DB].items.insert_many(batch)
            first = first or str(batch[0]["_id"])
    print(f"seeded {stop - start} items in {time.monotonic() - started:.1f}s", file=sys.stderr)
    assert first is not None
    return first


def _item(owner: ObjectId, i: int, now: datetime, sharee: ObjectId | None) -> dict[str, Any]:
    title, tags = f"item {i} {WORDS[i % len(WORDS)]}", ["bench", f"t{i % 10}"]
    sharees = [] if sharee is None else [sharee]
    shares = [
        {"user_id": s, "role": "viewer", "created_at": now, "updated_at": now} for s in sharees
    ]
    return {
        "_id": ObjectId(),
        "owner_id": owner,
        "readers": [owner, *sharees],
        "shares": shares,
        "title": title,
        "description": "d",
        "tags": tags,
        "data": {"n": i, "nested": {"ok": True}},
        "search_terms": search_terms(title, "d", tags),
        "created_at": now - timedelta(seconds=i),
        "updated_at": now,
        "version": 1,
    }


WORDS = ["apple", "banana", "cherry", "damson", "elder", "fig", "grape", "hazel"]


def serve(target: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m <target>` on a free port, once it answers: the process and its URL."""
    port = embedded.free_port()
    command = [sys.executable, "-m", *target, "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx2.get(f"{base}/api/v1/items?limit=1", timeout=60)
            return process, base
        except httpx2.TransportError:
            time.sleep(0.2)
    process.kill()
    sys.exit(f"{target} did not start")
