"""The admin commands, run as a user runs them: a separate process on a database of its own."""

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import services_of

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "seed.ndjson"


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Admin:
    env: dict[str, str]
    db: AsyncDatabase[dict[str, Any]]

    async def __call__(self, *args: str | Path, stdin: str | None = None, umask: int = -1) -> Run:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scripts.admin",
            *map(str, args),
            env=self.env,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            umask=umask,  # -1: the test process's own
        )
        out, err = await process.communicate(stdin.encode() if stdin else None)
        assert process.returncode is not None
        return Run(process.returncode, out.decode(), err.decode())


def admin_env(mongodb_url: str, name: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": name,
        "DATA_DIR": str(data_dir),
        "BCRYPT_ROUNDS": "4",
        "COLUMNS": "200",
    }


@pytest.fixture
async def admin_cli(mongodb_url: str, tmp_path: Path) -> AsyncIterator[Admin]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    yield Admin(admin_env(mongodb_url, name, tmp_path), client[name])
    await client.drop_database(name)
    await client.close()


@pytest.fixture
def app_admin(app: FastAPI, mongodb_url: str, tmp_path: Path) -> Admin:
    """The admin commands on the database of the running app (`app`, `client`): for what
    users do through the API between two admin runs."""
    services = services_of(app)
    name = services.settings.mongodb_db
    return Admin(admin_env(mongodb_url, name, tmp_path), services.client[name])


async def snapshot(db: AsyncDatabase[dict[str, Any]]) -> list[Any]:
    return [doc async for doc in db.users.find().sort("_id")] + [
        doc async for doc in db.items.find().sort("_id")
    ]


def write_ndjson(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    )
    return path
