"""`python -m tests.fuzzing [--cases N] [--seed S]`: Schemathesis against the real API.

The API runs as `python -m api.server` on a loopback port, on the embedded database (or
MONGODB_URL), with real accounts and real ids: a superuser the fuzzer signs in as (again
after any request that logged it out), another user, items and a session whose ids the
generated requests use half the time. Every check runs (`--checks all`), with positive
and negative data and the stateful phase. The few places a check cannot know a value
are configured narrowly below, each with its reason. Prints how many cases ran and
exits non-zero on any failure.
"""

import argparse
import math
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from pymongo import MongoClient

from api.core import embedded
from tests.fuzzing import hooks

# Cases a run makes per example asked of each operation, without the coverage phase
# (measured: 23 examples made 547 cases over this API's 27 operations).
CASES_PER_EXAMPLE = 24
ADMIN, PASSWORD = "fuzz-admin", "Fuzz-admin-pass-1"
# One client sends everything: the throttles would soon answer every sign-in, sign-up
# and mail request with a 429 and hide the code behind them (the suite tests them).
UNTHROTTLED = {
    name: "1000000"
    for name in (
        "LOGIN_MAX_FAILURES_PER_ACCOUNT_CLIENT",
        "LOGIN_MAX_FAILURES_PER_ACCOUNT",
        "LOGIN_MAX_FAILURES_PER_CLIENT",
        "SIGNUP_MAX_PER_CLIENT",
        "RECOVERY_MAX_PER_EMAIL",
        "RECOVERY_MAX_PER_CLIENT",
        "RESET_MAX_FAILURES_PER_CLIENT",
        "VERIFICATION_MAX_PER_ACCOUNT",
        "VERIFICATION_MAX_PER_CLIENT",
    )
}

# Where a check cannot know a value, and only there: the statuses schema-valid data may
# get from an operation besides the usual ones (5xx stay failures: not_a_server_error).
USUAL = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
ITEM = "/api/v1/items/{item_id}"
NARROW: list[tuple[str, str, int]] = [
    # The token only ever travels by email: a generated one is unknown, so a 400.
    ("POST", "/api/v1/auth/reset-password", 400),
    ("POST", "/api/v1/auth/verify-email", 400),
    # A WebSocket address asked as plain HTTP, which is all Schemathesis speaks: 426.
    ("GET", "/api/v1/ws/items", 426),
    # An If-Match the check makes up names no version the item has: 412 (stale ETag).
    ("PATCH", ITEM, 412),
    ("PUT", ITEM, 412),
    ("DELETE", ITEM, 412),
    ("POST", "/api/v1/items/batch", 412),  # and a batch's `if_match`
    ("POST", f"{ITEM}/versions/{{version}}/restore", 412),
    # (A made-up cursor is a 400: hooks.py keeps positive cases from sending one.)
    # Sharing an item with its own owner (hooks.py shares with the second account, which
    # owns some of the seeded items): 422 `owner-not-sharee`, which no schema can say.
    ("POST", "/api/v1/items/{item_id}/shares", 422),
    # Changing your own password or email takes your current one, which only you know.
    ("PATCH", "/api/v1/users/{user_id}", 400),
    # A webhook URL the schema admits (http or https) whose host does not resolve, or
    # resolves to an address that is not public: 422 `webhook-url-refused`.
    ("POST", "/api/v1/webhooks", 422),
    ("PATCH", "/api/v1/webhooks/{webhook_id}", 422),
]
# Settings of one operation's own, written into its [[operations]] entry above.
TUNED: dict[tuple[str, str], list[str]] = {
    # Schemathesis 4.32 fails to build batches that reuse ids from earlier responses
    # ("Cannot generate an array with 1 demanded elements", a generator error, no request
    # sent); hooks.py puts the seeded items' ids into half its operations instead.
    ("POST", "/api/v1/items/batch"): ["phases.fuzzing.extra-data-sources.responses = false"],
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__)
    parser.add_argument(
        "--cases",
        type=int,
        default=5000,
        help="about how many the examples, fuzzing and stateful phases make (the coverage "
        "phase adds its boundary cases on top, tens of thousands here)",
    )
    parser.add_argument("--seed", type=int, help="repeat a run (default: a new one)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="skip the coverage phase (boundary values of every schema: tens of thousands "
        "of cases here), as scripts/test does",
    )
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(2**63)
    with tempfile.TemporaryDirectory() as tmp, _api(Path(tmp)) as (base, mongodb_url, db):
        ids = _seed(base, mongodb_url, db)
        config = Path(tmp) / "schemathesis.toml"
        config.write_text(_config(base, ids))
        examples = max(1, math.ceil(args.cases / CASES_PER_EXAMPLE))
        command = [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file", str(config), "--no-color",
            "run", f"{base}/openapi.json",
            "--checks", "all", "--mode", "all",
            "--max-examples", str(examples), "--seed", str(seed), "--workers", "2",
            # No examples kept from earlier runs: a seed alone repeats a run, and a clean
            # clone (CI) fuzzes as this checkout does.
            "--generation-database", "none",
        ]  # fmt: skip
        if args.quick:
            command += ["--phases", "examples,fuzzing,stateful"]
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.fuzzing.hooks",
            hooks.ITEM_IDS: ",".join(ids["item_ids"]),  # for batch operations' ids
        }
        started = time.monotonic()
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        took = time.monotonic() - started
    print(run.stdout[-20000:] if run.returncode else _summary(run.stdout), file=sys.stderr)
    generated = re.search(r"(\d+) generated", run.stdout)
    cases = generated.group(1) if generated else "?"
    failures = re.search(r"(\d+) unique failures?", run.stdout)
    unique = failures.group(1) if failures else ("0" if run.returncode == 0 else "some")
    print(f"schemathesis: {cases} cases in {took:.0f}s, {unique} failures (seed {seed})")
    sys.exit(run.returncode)


def _summary(out: str) -> str:
    return out[out.find("=== SUMMARY") - 40 :] if "=== SUMMARY" in out else out[-3000:]


@contextmanager
def _api(tmp: Path) -> Iterator[tuple[str, str, str]]:
    """The API on a free loopback port: its base URL, its database's URL and name."""
    server = None
    url = os.environ.get("MONGODB_URL")
    if url is None:
        server = embedded.start(Path(":memory:"))
        url = server.url
    db = f"fuzz_{secrets.token_hex(6)}"
    port = embedded.free_port()
    env = {
        **os.environ,
        **UNTHROTTLED,
        "MONGODB_URL": url,
        "MONGODB_DB": db,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATA_DIR": str(tmp),
        "LOG_LEVEL": "ERROR",
        "BCRYPT_ROUNDS": "4",
        # The schema states this limit (maxItems): at 100 operations, each an item with
        # data nested ten deep, Hypothesis spends minutes and a gigabyte on one batch.
        "BATCH_MAX_OPERATIONS": "5",
        "RECOVERY_RESPONSE_FLOOR_MS": "0",
        # Webhooks may point at loopback (the seeded one does), and nothing is delivered:
        # a webhook the fuzzer makes may name any public address.
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "WEBHOOK_DISPATCHER": "false",
        "OUTBOX_WORKER": "false",
    }
    command = [sys.executable, "-m", "api.server", "--port", str(port), "--log-level", "error"]
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"{base}/ready", timeout=5).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit("the API did not start")
            time.sleep(0.2)
        yield base, url, db
    finally:
        process.terminate()
        process.wait()
        if server is not None:
            server.stop()


def _seed(base: str, mongodb_url: str, db: str) -> dict[str, list[str]]:
    """Accounts and items through the API itself; the ids the fuzzer may use."""
    with httpx2.Client(base_url=f"{base}/api/v1", timeout=30) as api:
        admin = _sign_up(api, ADMIN, PASSWORD)
        other = _sign_up(api, "fuzz-other", "Fuzz-other-pass-1")
        with MongoClient(mongodb_url) as client:  # the one superuser starts by hand
            client[db].users.update_one({"username": ADMIN}, {"$set": {"is_superuser": True}})
        token = _log_in(api, "fuzz-other", "Fuzz-other-pass-1")
        headers = {"Authorization": f"Bearer {token}"}
        items = [
            api.post("/items", json={"title": f"seed {n}", "tags": ["fuzz"]}, headers=headers)
            for n in range(3)
        ]
        _log_in(api, ADMIN, PASSWORD)
        admin_token = _log_in(api, ADMIN, PASSWORD)
        admin_items = [
            api.post(
                "/items", json={"title": "mine"}, headers={"Authorization": f"Bearer {admin_token}"}
            )
        ]
        # A share to list, change and end: the admin's item, with the other account.
        shared = api.post(
            f"/items/{admin_items[0].json()['id']}/shares",
            json={"user": "fuzz-other", "role": "editor"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert shared.status_code == 201, shared.text
        sessions = api.get("/auth/sessions", headers=headers).json()["items"]
        admin_headers = {"Authorization": f"Bearer {admin_token}"}
        hook = api.post("/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=admin_headers)
        assert hook.status_code == 201, hook.text
        ping = api.post(f"/webhooks/{hook.json()['id']}/ping", headers=admin_headers)
        assert ping.status_code == 202, ping.text
    return {
        "webhook_ids": [hook.json()["id"]],
        "delivery_ids": [ping.json()["id"]],
        "user_ids": [admin, other],
        "item_ids": [item.json()["id"] for item in [*items, *admin_items]],
        "session_ids": [session["id"] for session in sessions],
    }


def _sign_up(api: httpx2.Client, username: str, password: str) -> str:
    body = {"email": f"{username}@example.com", "username": username, "password": password}
    created = api.post("/users", json=body)
    assert created.status_code == 201, created.text
    user_id: str = created.json()["id"]
    return user_id


def _log_in(api: httpx2.Client, username: str, password: str) -> str:
    response = api.post("/auth/login", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _config(base: str, ids: dict[str, list[str]]) -> str:
    lines = [
        f'base-url = "{base}"',
        "",
        "[cache]",
        "enabled = false  # every run starts from the seed it is given, and leaves no files",
        "",
        "[auth.dynamic.openapi.OAuth2PasswordBearer]",
        'path = "/api/v1/auth/login"',
        f'payload = {{ username = "{ADMIN}", password = "{PASSWORD}" }}',
        'payload_content_type = "application/x-www-form-urlencoded"',
        'extract_selector = "/access_token"',
        "retry_on = [401]  # a generated logout, or session delete, ended the login",
        "",
        "[parameters]",
    ]
    names = {
        "user_ids": "user_id",
        "item_ids": "item_id",
        "session_ids": "session_id",
        "webhook_ids": "webhook_id",
        "delivery_ids": "delivery_id",
    }
    lines += [f'"path.{names[key]}" = {{ dictionary = "{key}", probability = 0.5 }}' for key in ids]
    for key, values in ids.items():
        lines += ["", f"[dictionaries.{key}]", f"values = {_toml_list(values)}"]
    for method, path, status in NARROW:
        lines += [
            "",
            "[[operations]]",
            f'include-name = "{method} {path}"',  # one selector: separate ones would OR
            f"checks.positive_data_acceptance.expected-statuses = {_toml_list([*USUAL, status])}",
            *TUNED.get((method, path), []),
        ]
    return "\n".join(lines) + "\n"


def _toml_list(values: list[Any]) -> str:
    return "[" + ", ".join(f'"{value}"' for value in values) + "]"


if __name__ == "__main__":
    main()
