"""No log line holds a token from a URL: Uvicorn prints a socket's whole URL when it
accepts or refuses it, and its access log (when a deployment turns it on) every URL."""

import asyncio
import io
import logging
from pathlib import Path

import pytest
from uvicorn.logging import AccessFormatter
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from api.core.logs import REDACTED, redact_tokens_in_urls
from tests.serving import api_env, running_api, signed_in

WS_PATH = "/api/v1/ws/items"


async def test_tokens_in_socket_urls_never_reach_the_log(mongodb_url: str, tmp_path: Path) -> None:
    env = api_env(mongodb_url, "redaction", tmp_path, LIVE_FEED="true")
    args = ("--log-level", "info")
    async with running_api(env, *args, stderr=asyncio.subprocess.PIPE) as (base, process):
        jwt = await signed_in(base, "redact")
        ws = base.replace("http", "ws") + WS_PATH
        personal = "dsk_" + "a" * 43
        async with connect(f"{ws}?tag=x&token={jwt}") as accepted:
            assert "subscribed" in await accepted.recv()
        async with connect(f"{ws}?token={personal}&tag=y") as refused:
            with pytest.raises(ConnectionClosed):
                await refused.recv()
        # The server decodes a percent-encoded name (`%74oken` is `token`): so does the log.
        async with connect(f"{ws}?%74oken={jwt}&tag=z") as encoded:
            assert "subscribed" in await encoded.recv()
        process.terminate()
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
    assert '"WebSocket /api/v1/ws/items?tag=x&token=[redacted]" [accepted]' in log
    assert f"?token={REDACTED}&tag=y" in log
    assert f"?%74oken={REDACTED}&tag=z" in log
    assert jwt not in log
    assert personal not in log


def test_the_access_log_keeps_its_format_without_the_token() -> None:
    """Uvicorn's access formatter unpacks the record's arguments: they stay five."""
    redact_tokens_in_urls()
    logger = logging.getLogger("uvicorn.access")
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(AccessFormatter(use_colors=False))
    logger.addHandler(handler)
    level = logger.level
    # setLevel, not `.level =`: it clears the logger's cached answers, which a server an
    # earlier test ran at warning level left saying no to INFO.
    logger.setLevel(logging.INFO)
    try:
        path = "/api/v1/items?access_token=secret&q=a"
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 200)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert written.getvalue() == (
        f'127.0.0.1:5000 - "GET /api/v1/items?access_token={REDACTED}&q=a HTTP/1.1" 200\n'
    )
