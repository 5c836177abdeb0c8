"""safe_fetch and the fetch_url tool against loopback stub servers: SSRF in every spelling,
redirects, schemes, DNS rebinding, size caps and compression bombs. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import os
import threading
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest

from agentloop import Agent, ModelResponse, read_trace
from agentloop.safety import BlockedURL, FetchFailed, blocked_reason, safe_fetch
from agentloop.testing import ScriptedModel
from toolpack import load

fetch_module = load("fetch_url")

Handler = Callable[[BaseHTTPRequestHandler], None]


class Stub:
    """A loopback HTTP server on a random port that records every request it gets."""

    def __init__(self, routes: dict[str, Handler] | None = None) -> None:
        self.routes = routes or {}
        self.hits: list[tuple[str, dict[str, str]]] = []
        stub = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                stub.hits.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = stub.routes.get(self.path.split("?")[0], _not_found)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    route(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.endpoint = ("127.0.0.1", self.port)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> Stub:
        self.routes.clear()
        self.hits.clear()
        return self


def _not_found(h: BaseHTTPRequestHandler) -> None:
    respond(h, b"not here", status=404)


def respond(
    h: BaseHTTPRequestHandler,
    body: bytes,
    *,
    status: int = 200,
    content_type: str = "text/plain; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.end_headers()
    h.wfile.write(body)


def redirect(location: str) -> Handler:
    return lambda h: respond(h, b"", status=302, headers={"Location": location})


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[Stub, Stub]]:
    servers = Stub(), Stub()
    yield servers
    for server in servers:
        server.close()


@pytest.fixture
def stub(_servers: tuple[Stub, Stub]) -> Stub:
    return _servers[0].reset()


@pytest.fixture
def other(_servers: tuple[Stub, Stub]) -> Stub:
    return _servers[1].reset()


class CountingTransport(httpx2.AsyncBaseTransport):
    """Forwards to the real transport and counts what reached it."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport(trust_env=False)
        self.requests: list[httpx2.Request] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- S3: direct SSRF in every spelling ------------------------------------------------------

SPELLINGS = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://LOCALHOST.:{port}/",
    "http://[::1]:{port}/",
    "http://0.0.0.0:{port}/",
    "http://[::]:{port}/",
    "http://2130706433:{port}/",  # decimal 127.0.0.1
    "http://0x7f.1:{port}/",  # hex, short form
    "http://0x7f000001:{port}/",
    "http://0177.0.0.1:{port}/",  # octal
    "http://127.1:{port}/",  # short form
    "http://[::ffff:127.0.0.1]:{port}/",  # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]:{port}/",
    "http://[64:ff9b::7f00:1]:{port}/",  # NAT64
    "http://[64:ff9b::127.0.0.1]:{port}/",
    "http://user:pass@127.0.0.1:{port}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://2852039166/",  # decimal 169.254.169.254
    "http://100.100.100.200/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://224.0.0.1/",
    "http://[fe80::1]/",
    "http://[ff02::1]/",
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
]


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_blocked_addresses_are_refused_before_connecting(stub: Stub, spelling: str) -> None:
    transport = CountingTransport()
    with pytest.raises(BlockedURL, match="refused"):
        await safe_fetch(spelling.format(port=stub.port), transport=transport, timeout=2)
    assert transport.requests == []
    assert stub.hits == []


async def test_the_tool_refuses_loopback_and_the_stub_sees_nothing(stub: Stub) -> None:
    stub.routes["/"] = lambda h: respond(h, b"internal admin page")
    for url in (
        f"{stub.url}/",
        f"http://localhost:{stub.port}/",
        f"http://2130706433:{stub.port}/",
    ):
        with pytest.raises(BlockedURL):
            await fetch_module.fetch_url(url=url)
    assert stub.hits == []


async def test_a_blocked_fetch_is_an_observation_for_the_model(stub: Stub, tmp_path: Path) -> None:
    model = ScriptedModel(
        [ModelResponse.tool_call("fetch_url", {"url": f"http://0x7f.1:{stub.port}/"}), "ok"]
    )
    result = await Agent(model, tools=[fetch_module.fetch_url], trace_dir=tmp_path).run("go")
    assert result.trace_path is not None
    [tool_result] = read_trace(result.trace_path).tool_results()
    assert tool_result.error == "retry"
    assert "private, loopback" in tool_result.content
    assert stub.hits == []


def a(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.255.255.254", "0.0.0.0", "10.1.2.3", "100.64.0.1", "169.254.1.1",
        "172.31.255.255", "192.168.0.1", "192.0.0.1", "198.18.0.1", "224.0.0.251",
        "239.255.255.250", "240.0.0.1", "255.255.255.255", "::", "::1", "fe80::1", "fc00::1",
        "fd00:ec2::254", "ff02::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::127.0.0.1",
        "64:ff9b::a9fe:a9fe", "64:ff9b:1::7f00:1", "2002:a00:1::", "2001:db8::1", "100::1",
    ],
)  # fmt: skip
def test_non_public_addresses_have_a_reason(address: str) -> None:
    assert blocked_reason(a(address)) is not None


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450::1"]
)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(a(address)) is None


@pytest.mark.parametrize("address", ["169.254.169.254", "100.100.100.200", "fd00:ec2::254"])
def test_cloud_metadata_is_named_and_never_allow_listed(address: str) -> None:
    assert blocked_reason(a(address)) == "a cloud metadata address"


async def test_metadata_stays_blocked_even_when_allow_listed() -> None:
    transport = CountingTransport()
    with pytest.raises(BlockedURL, match="metadata"):
        await safe_fetch(
            "http://169.254.169.254/", allow=[("169.254.169.254", 80)], transport=transport
        )
    assert transport.requests == []


async def test_a_name_resolving_to_any_private_address_is_refused(stub: Stub) -> None:
    transport = CountingTransport()

    def resolver(host: str, port: int) -> list[str]:
        return {"mixed.test": ["93.184.216.34", "127.0.0.1"], "meta.test": ["169.254.169.254"]}[
            host
        ]

    for host in ("mixed.test", "meta.test"):
        with pytest.raises(BlockedURL, match=host):
            await safe_fetch(f"http://{host}:{stub.port}/", resolver=resolver, transport=transport)
    assert transport.requests == [] and stub.hits == []


# -- S4: redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:{other}/",
        "http://localhost:{other}/",
        "http://2130706433:{other}/",
        "http://[::ffff:127.0.0.1]:{other}/",
        "http://169.254.169.254/latest/meta-data/iam/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{other}/",
    ],
)
async def test_a_redirect_to_a_blocked_address_is_refused_at_the_hop(
    stub: Stub, other: Stub, location: str
) -> None:
    stub.routes["/go"] = redirect(location.format(other=other.port))
    other.routes["/"] = lambda h: respond(h, b"internal")
    with pytest.raises(BlockedURL, match="refused"):
        await safe_fetch(f"{stub.url}/go", allow=[stub.endpoint], timeout=2)
    assert [path for path, _ in stub.hits] == ["/go"]
    assert other.hits == []


async def test_redirects_between_allowed_hosts_are_followed_and_strip_credentials(
    stub: Stub, other: Stub
) -> None:
    stub.routes["/start"] = redirect("/same-origin")
    stub.routes["/same-origin"] = redirect(f"{other.url}/landing")
    other.routes["/landing"] = lambda h: respond(h, b"you made it")
    page = await safe_fetch(
        f"{stub.url}/start",
        allow=[stub.endpoint, other.endpoint],
        headers={"Authorization": "Bearer s3cret", "Cookie": "session=s3cret", "X-Ok": "1"},
    )
    assert page.body == b"you made it"
    assert page.url == f"{other.url}/landing"
    assert [h["authorization"] for _, h in stub.hits] == ["Bearer s3cret"] * 2
    [(_, landing)] = other.hits
    assert "authorization" not in landing and "cookie" not in landing
    assert landing["x-ok"] == "1"


async def test_redirect_loops_stop_at_the_hop_limit(stub: Stub) -> None:
    stub.routes["/loop"] = redirect("/loop")
    with pytest.raises(FetchFailed, match="too many redirects"):
        await safe_fetch(f"{stub.url}/loop", allow=[stub.endpoint], max_redirects=3)
    assert len(stub.hits) == 4


# -- S5: DNS rebinding --------------------------------------------------------------------


async def test_the_connection_goes_to_the_checked_address_only(
    stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub.routes["/page"] = lambda h: respond(h, b"pinned")
    answers = iter([["127.0.0.1"], ["169.254.169.254"], ["10.0.0.1"]])  # public, then private
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    import socket

    real = socket.getaddrinfo
    looked_up: list[object] = []

    def spy(host: object, *args: object, **kwargs: object) -> object:
        looked_up.append(host)
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    page = await safe_fetch(
        f"http://rebind.test:{stub.port}/page", allow=[stub.endpoint], resolver=rebinding
    )
    assert page.body == b"pinned"
    assert asked == ["rebind.test"]  # resolved once, by the check
    assert "rebind.test" not in looked_up  # the client never resolved the name again
    [(_, headers)] = stub.hits
    assert headers["host"] == f"rebind.test:{stub.port}"


# -- S6: schemes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "gopher://127.0.0.1:70/_GET",
        "ftp://example.com/file",
        "data:text/plain,hello",
        "javascript:alert(1)",
        "dict://127.0.0.1:11211/",
        "//example.com/",
        "example.com",
    ],
)
async def test_other_schemes_are_refused(url: str) -> None:
    transport = CountingTransport()
    with pytest.raises(BlockedURL):
        await safe_fetch(url, transport=transport)
    assert transport.requests == []


# -- S8: size and compression ---------------------------------------------------------------


def stream_forever(h: BaseHTTPRequestHandler) -> None:
    """A 100 MB body, sent in chunks until the client hangs up."""
    h.send_response(200)
    h.send_header("Content-Type", "text/plain")
    h.send_header("Content-Length", str(100 * 2**20))
    h.end_headers()
    chunk = b"a" * 65536
    for _ in range(1600):
        h.wfile.write(chunk)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """Under 500 KB of gzip that inflates to 100 MB of zeros."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    zeros = bytes(2**20)
    body = b"".join(packer.compress(zeros) for _ in range(100)) + packer.flush()
    assert len(body) < 500_000
    return body


async def test_a_huge_body_is_cut_at_the_cap_with_bounded_memory(stub: Stub) -> None:
    stub.routes["/huge"] = stream_forever
    tracemalloc.start()
    started = time.perf_counter()
    try:
        page = await safe_fetch(f"{stub.url}/huge", allow=[stub.endpoint], max_bytes=200_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert page.truncated and len(page.body) == 200_000
    assert peak < 8 * 2**20
    assert time.perf_counter() - started < 5


async def test_a_gzip_bomb_is_inflated_only_up_to_the_cap(stub: Stub, gzip_bomb: bytes) -> None:
    stub.routes["/bomb"] = lambda h: respond(h, gzip_bomb, headers={"Content-Encoding": "gzip"})
    tracemalloc.start()
    try:
        page = await safe_fetch(f"{stub.url}/bomb", allow=[stub.endpoint], max_bytes=500_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert page.truncated and page.body == bytes(500_000)
    assert peak < 10 * 2**20  # nowhere near the 100 MB the body inflates to
    [(_, headers)] = stub.hits
    assert headers["accept-encoding"] == "identity"


async def test_a_small_gzip_body_is_inflated(stub: Stub) -> None:
    stub.routes["/gz"] = lambda h: respond(
        h, gzip.compress(b"hello gzip"), headers={"Content-Encoding": "gzip"}
    )
    page = await safe_fetch(f"{stub.url}/gz", allow=[stub.endpoint])
    assert (page.body, page.truncated) == (b"hello gzip", False)


@pytest.mark.parametrize("encoding", ["br", "zstd", "deflate", "compress", "gzip, br"])
async def test_encodings_that_cannot_be_bounded_are_refused(stub: Stub, encoding: str) -> None:
    stub.routes["/enc"] = lambda h: respond(
        h, os.urandom(1000), headers={"Content-Encoding": encoding}
    )
    with pytest.raises(FetchFailed, match="cannot be bounded"):
        await safe_fetch(f"{stub.url}/enc", allow=[stub.endpoint])


async def test_a_stalled_server_times_out(stub: Stub) -> None:
    def stall(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"partial")
        h.wfile.flush()
        time.sleep(2)

    stub.routes["/stall"] = stall
    started = time.perf_counter()
    with pytest.raises(FetchFailed, match=r"in time|timed out"):
        await safe_fetch(f"{stub.url}/stall", allow=[stub.endpoint], timeout=0.5)
    assert time.perf_counter() - started < 1.5


# -- the fetch_url tool ---------------------------------------------------------------------

PAGE = b"""<!doctype html><html><head><title>Otters</title>
<script>document.write('tracking')</script><style>p { color: red }</style></head>
<body><h1>Sea otters</h1><p>They hold <b>hands</b> while sleeping.</p>
<ul><li>urchins</li><li>crabs</li></ul></body></html>"""


async def test_fetch_url_returns_readable_text(stub: Stub) -> None:
    stub.routes["/otters"] = lambda h: respond(h, PAGE, content_type="text/html; charset=utf-8")
    fetch = fetch_module.make_fetch_tool(allow=[stub.endpoint])
    text = await fetch(url=f"{stub.url}/otters")
    assert text.startswith(f"URL: {stub.url}/otters\n")
    assert "Sea otters" in text and "They hold hands while sleeping." in text
    assert "urchins" in text and "crabs" in text
    assert "<" not in text and "tracking" not in text and "color" not in text


async def test_fetch_url_marks_truncation(stub: Stub) -> None:
    stub.routes["/huge"] = stream_forever
    fetch = fetch_module.make_fetch_tool(allow=[stub.endpoint], max_bytes=10_000)
    text = await fetch(url=f"{stub.url}/huge")
    assert text.endswith("[truncated: the page is longer than 10000 bytes]")
    assert text.count("a") >= 10_000


async def test_fetch_url_reports_failures_as_text(stub: Stub) -> None:
    stub.routes["/img"] = lambda h: respond(h, b"\x89PNG", content_type="image/png")
    stub.routes["/br"] = lambda h: respond(h, b"xx", headers={"Content-Encoding": "br"})
    fetch = fetch_module.make_fetch_tool(allow=[stub.endpoint])
    assert "not a text or HTML page" in await fetch(url=f"{stub.url}/img")
    assert "HTTP status: 404" in await fetch(url=f"{stub.url}/missing")
    assert "Content-Encoding 'br'" in await fetch(url=f"{stub.url}/br")
    closed = Stub()
    closed.close()
    fetch = fetch_module.make_fetch_tool(allow=[closed.endpoint])
    assert (await fetch(url=f"{closed.url}/gone")).startswith("Error: could not fetch")


class _Body(httpx2.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"hello"


async def test_https_connects_to_the_checked_ip_with_the_name_for_tls() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, stream=_Body(), headers={"Content-Type": "text/plain"})

    page = await safe_fetch(
        "https://user:pw@example.test/a?b=1",
        resolver=lambda host, port: ["93.184.216.34"],
        transport=httpx2.MockTransport(handler),
    )
    [request] = seen
    assert (request.url.scheme, request.url.host, request.url.raw_path) == (
        "https",
        "93.184.216.34",
        b"/a?b=1",
    )
    assert request.headers["host"] == "example.test"
    assert request.extensions["sni_hostname"] == "example.test"
    assert "authorization" not in request.headers  # credentials in the URL are never sent
    assert (page.url, page.body) == ("https://example.test/a?b=1", b"hello")


# -- issue 13: unparseable locations, IPv6 spellings, resolution time ---------------------


@pytest.mark.parametrize("location", ["http://[::1", "//[zz]/x", "http://a\x7fb/"])
async def test_an_unparseable_location_is_a_refusal_the_model_sees(
    stub: Stub, tmp_path: Path, location: str
) -> None:
    stub.routes["/go"] = redirect(location)
    with pytest.raises(BlockedURL, match="not a valid URL"):
        await safe_fetch(f"{stub.url}/go", allow=[stub.endpoint], timeout=2)
    fetch = fetch_module.make_fetch_tool(allow=[stub.endpoint])
    model = ScriptedModel(
        [ModelResponse.tool_call("fetch_url", {"url": f"{stub.url}/go"}), "gave up"]
    )
    result = await Agent(model, tools=[fetch], trace_dir=tmp_path).run("go")
    assert result.output == "gave up"  # the run goes on
    [tool_result] = read_trace(result.trace_path).tool_results()  # type: ignore[arg-type]
    assert tool_result.error == "retry" and "not a valid URL" in tool_result.content


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
        "::ffff:0:a9fe:a9fe",  # IPv4-translated metadata
        "::ffff:0:a00:1",  # IPv4-translated 10.0.0.1
        "64:ff9b:1:7f00:0:100::",  # NAT64 local /48, RFC 6052 layout: 127.0.0.1
        "64:ff9b:1:a9fe:a9:fe00::",  # ... 169.254.169.254
        "64:ff9b:1:c0a8:1:100::",  # ... 192.168.1.1
    ],
)
def test_translated_and_nat64_48_forms_are_blocked(address: str) -> None:
    assert blocked_reason(a(address)) is not None


def test_a_public_address_in_the_nat64_48_layout_passes() -> None:
    assert blocked_reason(a("64:ff9b:1:808:8:800::")) is None  # 8.8.8.8


async def test_name_resolution_counts_against_the_timeout() -> None:
    def slow(host: str, port: int) -> list[str]:
        time.sleep(1.5)
        return ["93.184.216.34"]

    started = time.monotonic()
    with pytest.raises(FetchFailed, match="timed out"):
        await safe_fetch("http://slow.test/", timeout=0.3, resolver=slow)
    assert time.monotonic() - started < 1.0
