"""What a webhook endpoint may be: the checks on a registration or a change, shared by the API and the
CLI. Each refusal names the field. Pure: no DNS. A host written as an IP address (in any spelling the
C library accepts: `127.1`, `2130706433`, `0x7f000001`, `[::1]`) is checked against the outbound
policy here, at registration; a host name is checked on every delivery, after it is resolved.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from engine.webhook_signing import InvalidSecret, secret_key
from store.domain import TOPIC_PATTERN
from store.errors import InvalidWebhook

__all__ = ["AddressPolicy", "EndpointRules", "check_changes", "check_events", "check_new", "check_secret"]

MAX_URL = 2048
MAX_EVENTS = 100
MAX_DESCRIPTION = 1000
_TOPIC = re.compile(TOPIC_PATTERN)


class AddressPolicy(Protocol):
    """The outbound policy's pure check (engine.outbound.OutboundPolicy.refusal)."""

    def refusal(self, ip: str, port: int, *, host: str = "") -> str | None: ...


@dataclass(frozen=True)
class EndpointRules:
    policy: AddressPolicy
    require_https: bool = False  # ORDO_WEBHOOK_REQUIRE_HTTPS


def check_new(doc: Mapping[str, Any], rules: EndpointRules) -> dict[str, Any]:
    """A registration {url, events, secret?, description?} as stored (secret None: generate one)."""
    _known(doc, ("url", "events", "secret", "description"))
    for field in ("url", "events"):
        if field not in doc:
            raise InvalidWebhook(f"{field} is required", details={"path": field})
    return {
        "url": check_url(doc["url"], rules),
        "events": check_events(doc["events"]),
        "secret": None if doc.get("secret") is None else check_secret(doc["secret"]),
        "description": _description(doc.get("description", "")),
    }


def check_changes(doc: Mapping[str, Any], rules: EndpointRules) -> dict[str, Any]:
    """A change {url?, events?, description?, state?: active | paused}; only the fields given."""
    _known(doc, ("url", "events", "description", "state"))
    if not doc:
        raise InvalidWebhook(
            "nothing to change: give url, events, description or state", details={"path": ""}
        )
    out: dict[str, Any] = {}
    if "url" in doc:
        out["url"] = check_url(doc["url"], rules)
    if "events" in doc:
        out["events"] = check_events(doc["events"])
    if "description" in doc:
        out["description"] = _description(doc["description"])
    if "state" in doc:
        if doc["state"] not in ("active", "paused"):
            raise InvalidWebhook(
                f"state must be 'active' (resume, and close the breaker) or 'paused', not {doc['state']!r}",
                details={"path": "state"},
            )
        out["state"] = doc["state"]
    return out


def check_url(url: Any, rules: EndpointRules) -> str:
    if not isinstance(url, str) or not url or len(url) > MAX_URL or any(c.isspace() for c in url):
        raise _bad_url(url, f"an http(s) URL of at most {MAX_URL} characters without spaces")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as e:
        raise _bad_url(url, f"not a URL ({e})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise _bad_url(url, "an absolute http:// or https:// URL with a host")
    if rules.require_https and parsed.scheme != "https":
        raise _bad_url(url, "https:// (ORDO_WEBHOOK_REQUIRE_HTTPS is on)")
    if parsed.fragment:
        raise _bad_url(url, "a URL without a #fragment (it is never sent)")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:  # httpx parses 99999 and fails later
        raise _bad_url(url, "a URL with a port from 1 to 65535")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    ip = _ip_literal(parsed.host)
    if ip is not None:
        why = rules.policy.refusal(ip, port, host=parsed.host)
        if why is not None:
            raise InvalidWebhook(
                f"url: {parsed.host} is a {why} address, which webhooks may not reach; "
                "ORDO_OUTBOUND_ALLOW lists the non-public addresses that may be reached",
                details={"path": "url", "address": ip, "port": port, "category": why},
                code="WEBHOOK_URL_REFUSED",
            )
    return url


def check_events(events: Any) -> list[str]:
    if not isinstance(events, list) or not events:
        raise InvalidWebhook(
            "events must be a non-empty list of topics, e.g. ['plan.ready', 'run.dead']",
            details={"path": "events"},
        )
    if len(events) > MAX_EVENTS:
        raise InvalidWebhook(f"at most {MAX_EVENTS} events per endpoint", details={"path": "events"})
    seen: list[str] = []
    for i, topic in enumerate(events):
        if not isinstance(topic, str) or not _TOPIC.match(topic):
            raise InvalidWebhook(
                f"events[{i}]: {topic!r} is not a topic: 1-200 letters, digits and _ . : / - "
                "(not starting with . : / -)",
                details={"path": f"events[{i}]"},
            )
        if topic not in seen:
            seen.append(topic)
    return seen


def check_secret(secret: Any) -> str:
    try:
        secret_key(secret)
    except InvalidSecret as e:
        raise InvalidWebhook(
            f"secret: {e}; omit it to have one generated", details={"path": "secret"}
        ) from None
    return str(secret)


def _description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise InvalidWebhook(
            f"description must be text of at most {MAX_DESCRIPTION} characters",
            details={"path": "description"},
        )
    return value


def _known(doc: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    unknown = sorted(set(doc) - set(fields))
    if unknown:
        raise InvalidWebhook(
            f"unknown field {unknown[0]!r}; fields: {', '.join(fields)}", details={"path": unknown[0]}
        )


def _ip_literal(host: str) -> str | None:
    """The address a host written as an IP means, or None for a name. No DNS: numeric forms only."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return str(infos[0][4][0]).split("%", 1)[0]


def _bad_url(url: Any, expected: str) -> InvalidWebhook:
    shown = url if isinstance(url, str) and len(url) <= 200 else "<url>"
    return InvalidWebhook(f"url {shown!r} must be {expected}", details={"path": "url"})
