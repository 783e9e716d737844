"""Where outbox messages go: SMTP (aiosmtplib), or files and the log in development."""

import asyncio
import logging
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from api.config import Settings
from documents import OutboxMessage

log = logging.getLogger("docstore.mail")


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


def build(settings: Settings) -> Transport:
    if settings.smtp_host:
        return SmtpTransport(settings)
    return FileTransport(settings.data_dir / "mail")


def to_email(message: OutboxMessage, sender: str) -> EmailMessage:
    email = EmailMessage()
    email["From"], email["To"], email["Subject"] = sender, message.to, message.subject
    email["Message-ID"] = message.message_id
    email.set_content(message.text)
    email.add_alternative(message.html, subtype="html")
    return email


class SmtpTransport:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> None:
        settings = self.settings
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user,
            password=settings.smtp_password,
            use_tls=settings.smtp_security == "tls",
            start_tls=settings.smtp_security == "starttls",
            timeout=30,
        )


class FileTransport:
    """Development: each message as an .eml file (named by its Message-ID) and a log line."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, message: EmailMessage) -> None:
        name = str(message["Message-ID"]).strip("<>").replace("@", "_").replace("/", "_")
        path = self.folder / f"{name}.eml"
        await asyncio.to_thread(self._write, path, message.as_bytes())
        log.info("mail to %s: %s (%s)", message["To"], message["Subject"], path)

    def _write(self, path: Path, content: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
