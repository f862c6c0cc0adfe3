"""The outbound policy: the address rules on resolved addresses (no connection is made), the allow
list, and requests through the policy's transport against local servers standing in for targets.
Nothing here sends traffic off this machine."""

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from engine.outbound import OutboundPolicy, OutboundRefused, _GuardedConnector, redact_url
from store.errors import ConfigError

DEFAULT = OutboundPolicy()


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("192.0.0.192", "metadata"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "reserved"),  # carrier-grade NAT
        ("198.18.0.1", "private"),  # benchmarking (IANA: not globally reachable)
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "private"),  # documentation
        ("::ffff:127.0.0.1", "loopback (IPv4 127.0.0.1 inside IPv6)"),
        ("::ffff:169.254.169.254", "metadata (IPv4 169.254.169.254 inside IPv6)"),
        ("::ffff:10.0.0.1", "private (IPv4 10.0.0.1 inside IPv6)"),
        ("2002:7f00:1::", "loopback (IPv4 127.0.0.1 inside IPv6)"),  # 6to4
        ("64:ff9b::a9fe:a9fe", "metadata (IPv4 169.254.169.254 inside IPv6)"),  # NAT64
    ],
)
def test_non_public_addresses_are_refused_by_default(address, category):
    assert DEFAULT.refusal(address, 80) == category


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(address):
    assert DEFAULT.refusal(address, 443) is None


def test_allow_entries_open_addresses_networks_hosts_and_ports():
    policy = OutboundPolicy.parse(
        " 127.0.0.1:8080 , 10.0.0.0/8, [::1]:9000, fd00::/8, mes.plant.local ,db.local:5432"
    )
    assert policy.refusal("127.0.0.1", 8080) is None
    assert policy.refusal("127.0.0.1", 8081) == "loopback"
    assert policy.refusal("10.200.3.4", 1) is None
    assert policy.refusal("::ffff:10.200.3.4", 1) is None  # a v4 entry opens its v4-mapped spelling
    assert policy.refusal("::1", 9000) is None and policy.refusal("::1", 9001) == "loopback"
    assert policy.refusal("fd00:ec2::254", 80) is None  # explicitly opened, metadata or not
    assert policy.refusal("192.168.0.5", 80, host="MES.plant.local.") is None
    assert policy.refusal("192.168.0.5", 80, host="other.plant.local") == "private"
    assert policy.refusal("192.168.0.6", 5432, host="db.local") is None
    assert policy.refusal("192.168.0.6", 5433, host="db.local") == "private"


@pytest.mark.parametrize(
    "entry", ["10.0.0.0/33", "host:port", "127.0.0.1:0", "[::1", "[::1]x", "a b", "x/y", ":80"]
)
def test_a_malformed_allow_entry_is_a_configuration_error_naming_it(entry):
    with pytest.raises(ConfigError) as raised:
        OutboundPolicy.parse(f"127.0.0.1,{entry}")
    assert "ORDO_OUTBOUND_ALLOW" in raised.value.message and repr(entry) in raised.value.message


@pytest.mark.parametrize(
    "host", ["localhost", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0", "0.0.0.0", "::1"]
)
def test_every_spelling_of_a_local_address_is_refused_after_resolution(host):
    with pytest.raises(OutboundRefused) as raised:
        DEFAULT.resolve(host, 80)
    assert raised.value.details["category"] in ("loopback", "unspecified")
    assert raised.value.retryable is False and raised.value.code == "OUTBOUND_REFUSED"


def test_credentials_are_stripped_from_recorded_urls():
    assert redact_url("https://user:secret@example.org/a?b=1") == "https://example.org/a?b=1"
    assert redact_url("https://example.org/a") == "https://example.org/a"
    assert redact_url("not a url at all ://") == "<invalid url>" or "secret" not in redact_url("x")


# -- through the transport, against local servers ---------------------------------------------------


class _Target(BaseHTTPRequestHandler):
    """Stands in for a service an attacker wants to reach; counts what reaches it."""

    hits: list[str]
    redirect_to: str | None = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).hits.append(self.path)
        if type(self).redirect_to and self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", type(self).redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"secret"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(family: int, host: str) -> Iterator[tuple[int, type[_Target]]]:
    handler = type("Target", (_Target,), {"hits": [], "redirect_to": None})

    class Server(ThreadingHTTPServer):
        address_family = family

    server = Server((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def target() -> Iterator[tuple[int, type[_Target]]]:
    yield from _serve(socket.AF_INET, "127.0.0.1")


@pytest.fixture
def other() -> Iterator[tuple[int, type[_Target]]]:
    yield from _serve(socket.AF_INET, "127.0.0.1")


def test_the_transport_refuses_before_connecting(target):
    port, handler = target
    with DEFAULT.client(timeout=5) as client, pytest.raises(OutboundRefused):
        client.get(f"http://localhost:{port}/")
    assert handler.hits == []


def test_the_transport_connects_to_an_allowed_address(target):
    port, handler = target
    with OutboundPolicy.parse(f"127.0.0.1:{port}").client(timeout=5) as client:
        assert client.get(f"http://127.0.0.1:{port}/ok").text == "secret"
    assert handler.hits == ["/ok"]


def test_every_redirect_is_checked_again(target, other):
    port, handler = target
    other_port, other_handler = other
    handler.redirect_to = f"http://127.0.0.1:{other_port}/inside"
    policy = OutboundPolicy.parse(f"127.0.0.1:{port}")
    with policy.client(timeout=5, follow_redirects=True) as client, pytest.raises(OutboundRefused) as raised:
        client.get(f"http://127.0.0.1:{port}/redirect")
    assert handler.hits == ["/redirect"] and other_handler.hits == []
    assert raised.value.details["port"] == other_port


def test_the_connection_goes_to_the_address_that_was_checked(target, monkeypatch):
    """A name is resolved once, and the socket is opened to that very address: a resolver that
    answers differently the second time (DNS rebinding) is never asked again."""
    port, handler = target
    answers = iter(["127.0.0.1", "10.9.9.9", "10.9.9.9"])
    asked: list[str] = []
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "rebind.test":
            asked.append(host)
            host = next(answers)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with OutboundPolicy.parse(f"127.0.0.1:{port}").client(timeout=5) as client:
        assert client.get(f"http://rebind.test:{port}/ok").status_code == 200
    assert asked == ["rebind.test"] and handler.hits == ["/ok"]


def test_httpx_still_lets_the_policy_build_its_connection_pool():
    """The transport replaces httpx's connection pool with one using the policy's network backend: if
    a new httpx changes how its transport is built, this fails before any request slips through."""
    transport = DEFAULT.transport()
    backend = transport._pool._network_backend
    assert type(backend).__name__ == "_GuardedBackend"
    assert isinstance(httpx.Client(transport=transport)._transport, httpx.HTTPTransport)


def test_aiohttp_still_resolves_every_new_connection_through_the_connector():
    """The asynchronous client's checks sit in the connector's _resolve_host, which aiohttp calls for
    every new connection: if a new aiohttp stops doing so, this fails before any request slips through."""
    import inspect

    import aiohttp

    connect = inspect.getsource(aiohttp.TCPConnector._create_direct_connection)
    assert "await self._resolve_host(host, port" in connect
    ours = inspect.signature(_GuardedConnector._resolve_host).parameters
    assert list(ours) == list(inspect.signature(aiohttp.TCPConnector._resolve_host).parameters)
