"""A real SMTP server for tests (aiosmtpd on a free loopback port), collecting what it receives."""

import email
import re
from email.message import Message
from email.policy import default

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from api.core import embedded
from tests.conftest import eventually


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append(email.message_from_bytes(content, policy=default))
        return "250 Message accepted"

    async def wait_for(self, count: int = 1) -> list[Message]:
        """The messages, once `count` have arrived (they come from the server's thread)."""

        async def arrived() -> bool:
            return len(self.messages) >= count

        await eventually(arrived)
        return self.messages


class SmtpServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or embedded.free_port()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def text_of(message: Message) -> str:
    body = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    assert body is not None
    content: str = body.get_content()
    return content


def token_in(message: Message) -> str:
    match = re.search(r"send this token to the API: (\S+)", text_of(message))
    assert match is not None, text_of(message)
    return match.group(1)
