"""Deliveries are signed to the Standard Webhooks specification: checked with its
reference library (`standardwebhooks`), as receivers check them, not with our code."""

import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from api.webhooks import signing

BODY = b'{"type": "item.updated", "data": {"item": {"id": "x"}}}'


def test_a_delivery_verifies_with_the_reference_library() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    headers = signing.headers([secret], "msg_1", int(time.time()), BODY)
    assert Webhook(secret).verify(BODY, headers) == {
        "type": "item.updated",
        "data": {"item": {"id": "x"}},
    }


def test_during_a_rotation_both_secrets_verify() -> None:
    new, old = signing.new_secret(), signing.new_secret()
    headers = signing.headers([new, old], "msg_2", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        Webhook(secret).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(BODY, headers)


def test_a_changed_body_id_or_timestamp_fails_verification() -> None:
    secret = signing.new_secret()
    now = int(time.time())
    headers = signing.headers([secret], "msg_3", now, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_4"})
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-timestamp": str(now + 1)})


def test_a_stored_secret_is_sealed_and_opens_only_for_its_webhook() -> None:
    secret = signing.new_secret()
    stored = signing.sealed(secret, "k" * 40, "webhook-a")
    assert secret not in stored
    assert secret.removeprefix("whsec_") not in stored
    assert signing.opened(stored, ["k" * 40], "webhook-a") == secret
    assert signing.opened(stored, ["k" * 40], "webhook-b") is None  # bound to its webhook
    assert signing.opened(stored, ["other" * 8], "webhook-a") is None
    assert signing.opened(stored, ["new" * 14, "k" * 40], "webhook-a") == secret  # rotated key
