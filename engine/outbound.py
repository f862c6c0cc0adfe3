"""The outbound policy: which addresses a user-supplied URL may reach (`http.request`, webhooks).

By default a connection may go only to public (globally routable) unicast addresses. Loopback,
private, link-local, multicast, unspecified, reserved and cloud-metadata addresses are refused,
whatever the spelling of the URL's host: a name, a decimal, hex or octal IPv4 (`2130706433`,
`0x7f000001`, `0177.0.0.1`), an IPv6 literal, or an IPv4 address inside an IPv6 one (mapped,
6to4, NAT64). The check is made on the addresses a name resolves to, and the connection then goes
to the very address that was checked, so a name that answers differently the second time (DNS
rebinding) gains nothing. Redirects open new connections, and every new connection is checked.

`ORDO_OUTBOUND_ALLOW` opens what a deployment needs: comma-separated host names, IPs or CIDRs, each
optionally with `:port` (`[v6]:port` for an IPv6 address). A host name entry trusts whatever that
name resolves to; an IP or CIDR entry opens those addresses.

An asynchronous client (aiohttp) gets the same checks from `policy.connector()`.

Use:

    policy = OutboundPolicy.parse("10.1.2.0/24:443, mes.plant.local")   # once, from Settings
    with policy.client(timeout=10, follow_redirects=True) as client:   # an httpx.Client
        client.get(url)                                                 # OutboundRefused if barred
    policy.refusal("10.0.0.7", 80, host="x")   # why an address is refused, or None (no I/O)

Tools get the policy as `ctx.limits.outbound`. Tools an operator configures in a catalog (remote
tools) are trusted and do not go through it.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpcore
import httpx

from store.errors import ConfigError, Permanent

__all__ = ["OutboundPolicy", "OutboundRefused", "parse_url", "redact_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services: credentials live there. Most sit in ranges refused anyway (link-local,
# ULA, shared address space); they are named so that a refusal says what was at stake.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::23",
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HINT = (
    "loopback, private, link-local, multicast, unspecified, reserved and metadata addresses are refused "
    "unless ORDO_OUTBOUND_ALLOW lists them"
)


class OutboundRefused(Permanent):
    """A user-supplied URL leads to an address the outbound policy refuses. Retrying cannot help."""

    code = "OUTBOUND_REFUSED"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=self.code, details=details)


def address_category(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address ('loopback', 'private', ...), or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = address_category(embedded)
            return None if inner is None else f"{inner} (IPv4 {embedded} inside IPv6)"
    if ip in _METADATA:
        return "metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "reserved"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo client, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class AllowRule:
    """One ORDO_OUTBOUND_ALLOW entry: a host name or a network, and optionally a port."""

    host: str | None
    network: IPNetwork | None
    port: int | None

    def matches(self, host: str, ip: IPAddress, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.host is not None:
            return _normal_host(host) == self.host
        assert self.network is not None
        if ip.version != self.network.version and isinstance(ip, ipaddress.IPv6Address):
            ip = ip.ipv4_mapped or ip  # a v4 entry also opens that address written as v4-mapped v6
        return ip.version == self.network.version and ip in self.network

    def __str__(self) -> str:
        what = self.host or str(self.network)
        if self.port is None:
            return what
        return f"[{what}]:{self.port}" if ":" in what else f"{what}:{self.port}"


@dataclass(frozen=True)
class OutboundPolicy:
    """Default-deny for non-public addresses, opened by `allow` rules. Immutable; share it freely."""

    allow: tuple[AllowRule, ...] = ()

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> OutboundPolicy:
        """From ORDO_OUTBOUND_ALLOW (a comma-separated string) or a list of entries.
        Raises ConfigError naming the entry that is not a host, IP or CIDR with an optional port."""
        entries = text.split(",") if isinstance(text, str) else list(text)
        return cls(tuple(_parse_entry(e.strip()) for e in entries if e.strip()))

    def refusal(self, ip: str | IPAddress, port: int, *, host: str = "") -> str | None:
        """Why connecting to `ip`:`port` (for the URL host `host`) is refused, or None when allowed.
        Pure: no resolution, no connection."""
        address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        category = address_category(address)
        if category is None:
            return None
        if any(rule.matches(host or str(address), address, port) for rule in self.allow):
            return None
        return category

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses `host` resolves to that may be connected to, in resolver order.
        Raises OutboundRefused when every one is refused."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            # httpcore reports this as a connection failure, as it would without a policy.
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {e}") from None
        return self.allowed(host, port, [str(sockaddr[0]) for *_, sockaddr in infos])

    def allowed(self, host: str, port: int, addresses: Iterable[str]) -> list[str]:
        """Those of `addresses` (what `host` resolved to) that may be connected to, in order.
        Raises OutboundRefused when every one is refused."""
        allowed: list[str] = []
        refused: list[tuple[str, str]] = []
        for address in addresses:
            ip = address.split("%", 1)[0]
            why = self.refusal(ip, port, host=host)
            if why is None:
                if ip not in allowed:
                    allowed.append(ip)
            else:
                refused.append((ip, why))
        if not allowed:
            ip, why = refused[0]
            shown = host if host == ip else f"{host} ({ip})"
            raise OutboundRefused(
                f"connecting to {shown} port {port} is refused: {why} address; {_HINT}",
                details={"host": host, "address": ip, "port": port, "category": why},
            )
        return allowed

    # -- httpx --------------------------------------------------------------------------------

    def transport(self, **kwargs: Any) -> httpx.HTTPTransport:
        """An httpx transport that resolves, checks and connects through this policy. Keyword
        arguments are those of httpx.HTTPTransport (but no proxy: a proxy would connect for us)."""
        return _GuardedTransport(self, **kwargs)

    def connector(self, **kwargs: Any) -> aiohttp.TCPConnector:
        """An aiohttp connector that connects only where this policy allows (the asynchronous
        client: httpx's pools slow down badly with many requests in flight, encode/httpx#3215).
        Keyword arguments are those of aiohttp.TCPConnector."""
        return _GuardedConnector(self, **kwargs)

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx.Client whose every connection (redirects included) obeys this policy. Proxy
        settings in the environment are ignored for the same reason."""
        return httpx.Client(transport=self.transport(), trust_env=False, **kwargs)


# A task's URL is the same on every run, and httpx's parse of it is a tenth of the CPU an HTTP step
# takes: parses of URLs up to this long are kept (longer ones carry data and rarely repeat).
_CACHED_URL_CHARS = 2048


def parse_url(raw: str) -> httpx.URL:
    """httpx's parse of `raw` (raising httpx.InvalidURL, or ValueError for a host IDNA refuses)."""
    return _parse_cached(raw) if len(raw) <= _CACHED_URL_CHARS else httpx.URL(raw)


@functools.lru_cache(maxsize=1024)
def _parse_cached(raw: str) -> httpx.URL:
    return httpx.URL(raw)  # immutable: its copy_* methods return new URLs


def redact_url(url: str | httpx.URL) -> str:
    """The URL without user name and password: what may be recorded in outputs, errors and logs."""
    try:
        parsed = url if isinstance(url, httpx.URL) else parse_url(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid url>"
    if not parsed.userinfo:
        return str(parsed)
    return str(parsed.copy_with(username=None, password=None))


# -- parsing ----------------------------------------------------------------------------------


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _parse_entry(entry: str) -> AllowRule:
    host, port = entry, None
    if entry.startswith("["):  # [v6] or [v6]:port
        close = entry.find("]")
        if close < 0:
            raise _bad_entry(entry, "'[' without ']'")
        host, rest = entry[1:close], entry[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _bad_entry(entry, "expected ':port' after ']'")
            port = _port(entry, rest[1:])
    elif entry.count(":") == 1:  # name:port, v4:port, v4/len:port
        host, raw_port = entry.split(":")
        port = _port(entry, raw_port)
    if not host:
        raise _bad_entry(entry, "no host")
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        network = None
    if network is not None:
        return AllowRule(None, network, port)
    name = _normal_host(host)
    if (
        "/" in name
        or not all(part and len(part) <= 63 for part in name.split("."))
        or not all(c.isalnum() or c in "-._" for c in name)
    ):
        raise _bad_entry(entry, "not a host name, IP address or CIDR")
    return AllowRule(name, None, port)


def _port(entry: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise _bad_entry(entry, f"port {raw!r} is not 1-65535")
    return int(raw)


def _bad_entry(entry: str, why: str) -> ConfigError:
    return ConfigError(
        f"ORDO_OUTBOUND_ALLOW entry {entry!r}: {why}; entries are host names, IPs or CIDRs, each "
        "optionally with :port ([IPv6]:port), separated by commas"
    )


# -- the transport ------------------------------------------------------------------------------


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend, resolving names itself and connecting only to checked addresses."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        for ip in self.policy.resolve(host, port):
            try:
                return super().connect_tcp(ip, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as e:  # try the next address, as create_connection would
                last = e
        assert last is not None
        raise last


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """The certificate-verifying context every policy-checked transport shares: building one loads the
    CA bundle, which costs tens of milliseconds, far more than the request it serves."""
    return httpx.create_ssl_context(verify=True, trust_env=False)


def _pool_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The httpcore pool's options from httpx.HTTPTransport's arguments; `verify` in `kwargs` becomes
    an SSL context, built once for the default."""
    if kwargs.get("proxy") is not None or kwargs.get("uds") is not None:
        raise ValueError("a policy-checked transport connects by itself: no proxy, no Unix socket")
    limits: httpx.Limits = kwargs.get(
        "limits", httpx.Limits(max_connections=100, max_keepalive_connections=20)
    )
    verify = kwargs.get("verify", True)
    if not isinstance(verify, ssl.SSLContext):
        verify = (
            _default_ssl_context() if verify is True else httpx.create_ssl_context(verify, trust_env=False)
        )
    kwargs["verify"] = verify  # the parent class builds its own pool with it, then ours replaces it
    return {
        "ssl_context": verify,
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
        "http1": kwargs.get("http1", True),
        "http2": kwargs.get("http2", False),
        "retries": kwargs.get("retries", 0),
    }


class _GuardedTransport(httpx.HTTPTransport):
    # httpx builds its httpcore pool in __init__ and offers no network-backend argument: the pool is
    # rebuilt with ours. tests/unit/test_outbound.py fails loudly if httpx changes this shape.
    def __init__(self, policy: OutboundPolicy, **kwargs: Any) -> None:
        options = _pool_options(kwargs)
        super().__init__(trust_env=False, **{k: v for k, v in kwargs.items() if k not in ("trust_env",)})
        self._pool = httpcore.ConnectionPool(network_backend=_GuardedBackend(policy), **options)


class _GuardedConnector(aiohttp.TCPConnector):
    # aiohttp offers no hook between resolving a host and connecting to it: every new connection
    # (redirects included, IP literals too) goes through _resolve_host, whose answer is what the
    # connector then connects to, so the addresses are checked there. tests/unit/test_outbound.py
    # fails loudly if aiohttp changes this shape.
    def __init__(self, policy: OutboundPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[Any]:
        try:
            resolved = await super()._resolve_host(host, port, traces=traces)
        except aiohttp.InvalidUrlClientError:
            # aiohttp refuses legacy IPv4 spellings (2130706433, 127.1) itself; when the address one
            # stands for is refused too, say that, as the blocking client does.
            try:
                meant = socket.inet_ntoa(socket.inet_aton(host))
            except OSError:
                meant = None
            if meant is not None:
                self.policy.allowed(host, port, [meant])
            raise
        allowed = set(self.policy.allowed(host, port, [entry["host"] for entry in resolved]))
        return [entry for entry in resolved if entry["host"].split("%", 1)[0] in allowed]
