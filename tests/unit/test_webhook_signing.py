"""Standard Webhooks v1 signing, checked against the published reference vector and the reference
Python library (PyPI `standardwebhooks`), the one a receiver would use."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from engine.webhook_signing import (
    InvalidSecret,
    SignatureMismatch,
    new_secret,
    secret_key,
    sign,
    signed_headers,
    verify,
)

# The vector published with the upstream libraries' sign tests (shared/data/webhooks/NOTES.md).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_reference_vector_is_reproduced() -> None:
    """The signature of the published vector is exactly the published one."""
    assert sign(secret_key(SECRET), MSG_ID, TIMESTAMP, BODY) == SIGNATURE


def test_signature_equals_the_reference_library() -> None:
    """For a fresh secret and a body with non-ASCII text, the library signs exactly as we do."""
    secret = new_secret()
    body = '{"type":"plan.ready","data":{"site":"Chișinău"}}'.encode()
    ours = sign(secret_key(secret), "msg_1", 1_700_000_000, body)
    theirs = Webhook(secret).sign("msg_1", datetime.fromtimestamp(1_700_000_000, UTC), body.decode())
    assert ours == theirs


def test_signed_request_passes_the_reference_library() -> None:
    """Headers we make for a request now are accepted by the library's verify."""
    secret = new_secret()
    headers = signed_headers([secret_key(secret)], "msg_abc", int(time.time()), BODY)
    assert Webhook(secret).verify(BODY, headers) == {"test": 2432232314}


def test_rotation_overlap_signs_with_both_secrets() -> None:
    """During a rotation a request carries two entries; a receiver holding either secret accepts it,
    one holding another secret refuses it."""
    old, new = new_secret(), new_secret()
    headers = signed_headers([secret_key(new), secret_key(old)], "msg_rot", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


@pytest.mark.parametrize(
    "change",
    [
        {"body": b'{"test": 2432232315}'},
        {"msg_id": "msg_p5jXN8AQM9LWM0D4loKWxJel"},
        {"timestamp": TIMESTAMP + 1},
    ],
)
def test_verify_refuses_a_changed_request(change: dict) -> None:
    """One character of body, id or timestamp changed: no signature matches."""
    request = {"body": BODY, "msg_id": MSG_ID, "timestamp": TIMESTAMP, **change}
    headers = {
        "webhook-id": request["msg_id"],
        "webhook-timestamp": str(request["timestamp"]),
        "webhook-signature": SIGNATURE,
    }
    with pytest.raises(SignatureMismatch):
        verify([secret_key(SECRET)], headers, request["body"], now=TIMESTAMP)


def test_verify_accepts_the_reference_vector_and_enforces_the_tolerance() -> None:
    """The vector verifies at its own time and 300 s away, not 301 s away (replay protection)."""
    headers = {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(TIMESTAMP), "Webhook-Signature": SIGNATURE}
    key = secret_key(SECRET)
    assert verify([key], headers, BODY, now=TIMESTAMP) == MSG_ID
    assert verify([key], headers, BODY, now=TIMESTAMP + 300) == MSG_ID
    with pytest.raises(SignatureMismatch, match="away"):
        verify([key], headers, BODY, now=TIMESTAMP - 301)


def test_verify_skips_malformed_entries_instead_of_failing() -> None:
    """Entries without a comma, with unpadded base64, empty ones or of other versions are skipped; a
    valid entry after them still matches (the reference library raises on the first two)."""
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": "garbage  v1,g0hM9SsE v1a,AAAA " + SIGNATURE,
    }
    assert verify([secret_key(SECRET)], headers, BODY, now=TIMESTAMP) == MSG_ID


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_requires_all_three_headers(missing: str) -> None:
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP), "webhook-signature": SIGNATURE}
    del headers[missing]
    with pytest.raises(SignatureMismatch, match="missing"):
        verify([secret_key(SECRET)], headers, BODY, now=TIMESTAMP)


def test_new_secrets_are_32_random_bytes_the_library_accepts() -> None:
    a, b = new_secret(), new_secret()
    assert a != b and a.startswith("whsec_")
    assert len(secret_key(a)) == 32
    assert len(base64.b64decode(a.removeprefix("whsec_"))) == 32
    Webhook(a)


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(b"x" * 16).decode(), "24 to 64 bytes"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "24 to 64 bytes"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "padded"),
    ],
)
def test_malformed_secrets_are_refused_with_the_reason(secret: str, reason: str) -> None:
    with pytest.raises(InvalidSecret, match=reason):
        secret_key(secret)
