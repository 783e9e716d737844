"""The messages Docstore sends, as outbox documents (plain text and HTML).

A message that carries a token shows TOKEN_MARK where it goes: the token itself is
handed to the queue's `enqueue`, which stores it sealed.
"""

from html import escape

from api.mail.channel import TOKEN_MARK, new_message
from documents import OutboxMessage, User


def _html(paragraphs: list[str], link: str | None = None) -> str:
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    if link:
        body += f'<p><a href="{escape(link, quote=True)}">{escape(link)}</a></p>'
    return f"<!doctype html><html><body>{body}</body></html>"


def welcome(user: User, public_url: str) -> OutboxMessage:
    lines = [
        f"Hello {user.full_name or user.username},",
        f"your Docstore account {user.username} is ready. The API and its docs: {public_url}/docs",
    ]
    return new_message(
        "welcome", user.email, "Welcome to Docstore", "\n\n".join(lines), _html(lines)
    )


def email_changed(user: User, new_email: str, public_url: str) -> OutboxMessage:
    """To the old address: the account's email is now `new_email`."""
    lines = [
        f"Hello {user.full_name or user.username},",
        f"the email address of your Docstore account {user.username} was changed "
        f"from {user.email} to {new_email}. Mail about this account, password resets "
        "included, now goes there.",
        "If you did not do this, someone may be using your account: ask an administrator "
        f"of {public_url} to restore your address and end the account's logins.",
    ]
    subject = "Your Docstore email address was changed"
    return new_message("email-changed", user.email, subject, "\n\n".join(lines), _html(lines))


def _with_token(kind: str, user: User, subject: str, intro: str, link: str) -> OutboxMessage:
    lines = [
        f"Hello {user.full_name or user.username},",
        intro,
        f"Open {link} , or send this token to the API: {TOKEN_MARK}",
        "If you did not ask for this, ignore this message.",
    ]
    return new_message(kind, user.email, subject, "\n\n".join(lines), _html(lines, link))


def password_reset(user: User, public_url: str, minutes: int) -> OutboxMessage:
    link = f"{public_url}/reset-password?token={TOKEN_MARK}"
    intro = (
        "someone asked to reset your Docstore password. "
        f"This link works once, for {minutes} minutes:"
    )
    return _with_token("password-reset", user, "Reset your Docstore password", intro, link)


def verify_email(user: User, public_url: str, hours: int) -> OutboxMessage:
    link = f"{public_url}/verify-email?token={TOKEN_MARK}"
    intro = (
        f"please confirm that {user.email} is your address. "
        f"This link works once, for {hours} hours:"
    )
    return _with_token("verify-email", user, "Confirm your email for Docstore", intro, link)


def webhook_disabled(user: User, url: str, reason: str, public_url: str) -> OutboxMessage:
    """To a webhook's owner: it was turned off, and why; nothing is delivered until it is
    turned back on."""
    lines = [
        f"Hello {user.full_name or user.username},",
        f"your Docstore webhook to {url} was disabled: {reason}.",
        "Changes made while it is disabled are not delivered to it. Once the receiver "
        "works again, turn it back on (PATCH /api/v1/webhooks/<id> with "
        f'{{"enabled": true}}); its delivery log at {public_url}/docs shows what failed.',
    ]
    subject = "Your Docstore webhook was disabled"
    return new_message("webhook-disabled", user.email, subject, "\n\n".join(lines), _html(lines))
