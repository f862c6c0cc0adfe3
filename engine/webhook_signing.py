"""Standard Webhooks v1 (symmetric): secrets, the signature a sender puts on a request, and the check
a receiver makes. Pure: the time is an argument.

    signed content = "{webhook-id}.{webhook-timestamp}.{body}"
    signature      = base64(HMAC-SHA256(key, signed content)),  sent as "v1,<signature>"

A secret is `whsec_` + base64 of 24 to 64 random bytes; the HMAC key is the decoded bytes. While a
rotated-out secret is still valid, a request carries one `v1,` entry per secret, separated by a space,
and a receiver holding either accepts it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping

__all__ = [
    "SECRET_PREFIX",
    "TOLERANCE_S",
    "InvalidSecret",
    "SignatureMismatch",
    "new_secret",
    "secret_key",
    "sign",
    "signed_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300  # a receiver refuses timestamps further than this from its clock (replay protection)
_SECRET_BYTES = 32
_MIN_KEY, _MAX_KEY = 24, 64
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


class InvalidSecret(ValueError):
    """A secret that is not `whsec_` + base64 of 24 to 64 bytes."""


class SignatureMismatch(ValueError):
    """A request a receiver must refuse: headers missing, timestamp out of tolerance, no valid v1 entry."""


def new_secret() -> str:
    """A fresh secret: 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret. Raises InvalidSecret saying what is wrong."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret(f"a secret starts with {SECRET_PREFIX!r} followed by base64")
    encoded = secret[len(SECRET_PREFIX) :]
    if not _BASE64.match(encoded) or len(encoded) % 4:
        raise InvalidSecret(f"the part after {SECRET_PREFIX!r} is not padded standard base64")
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error as e:
        raise InvalidSecret(f"the part after {SECRET_PREFIX!r} is not base64: {e}") from None
    if not _MIN_KEY <= len(key) <= _MAX_KEY:
        raise InvalidSecret(f"a secret holds {_MIN_KEY} to {_MAX_KEY} bytes, not {len(key)}")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature entry."""
    content = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def signed_headers(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt, signed with every key (newest first)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(key, msg_id, timestamp, body) for key in keys),
    }


def verify(keys: Iterable[bytes], headers: Mapping[str, str], body: bytes, now: float) -> str:
    """Check a received request (`now` in Unix seconds); returns its webhook-id.

    Raises SignatureMismatch when a header is missing, the timestamp is more than TOLERANCE_S away
    from `now`, or no `v1` entry matches any key. Malformed entries are skipped, never an error."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signature = (
        lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and stamp and signature):
        raise SignatureMismatch("missing webhook-id, webhook-timestamp or webhook-signature")
    if not stamp.isdigit():
        raise SignatureMismatch(f"webhook-timestamp {stamp[:40]!r} is not integer Unix seconds")
    timestamp = int(stamp)
    if abs(now - timestamp) > TOLERANCE_S:
        raise SignatureMismatch(f"webhook-timestamp is {now - timestamp:+.0f} s away from this clock")
    presented = []
    for entry in signature.split(" "):
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue
        try:
            presented.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            continue
    for key in keys:
        expected = base64.b64decode(sign(key, msg_id, timestamp, body)[3:])
        if any(hmac.compare_digest(expected, candidate) for candidate in presented):
            return msg_id
    raise SignatureMismatch("no v1 signature matches")
