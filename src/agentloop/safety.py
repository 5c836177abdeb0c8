"""Safety helpers for tool authors: paths and URLs that come from a model.

``safe_path`` keeps a user-given path inside one root directory. ``safe_fetch`` fetches an
http(s) URL without letting it reach the machine's own network (server-side request forgery):
it resolves the host, refuses any non-public address, connects to the address it checked, and
follows redirects by hand, checking every hop; it reads at most ``max_bytes``.

Both raise ``ToolRetry`` subclasses, so a tool that uses them turns a refusal into an observation
the model can act on without extra code.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, TypeAlias

import httpx2

from agentloop.errors import ToolRetry

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver: TypeAlias = Callable[[str, int], Sequence[str]]
"""Resolves ``(host, port)`` to IP address strings (the default uses ``getaddrinfo``)."""


# -- paths ----------------------------------------------------------------------------------


class UnsafePath(ToolRetry):
    """A path that is not a plain relative path inside the root. Every form of escape gets
    this same error, so the message does not tell an attacker which check caught it."""

    def __init__(self, user_path: str) -> None:
        super().__init__(
            f"refused path {user_path!r}: use a relative path inside the files root "
            "(no '..', no absolute paths, no links leading outside)"
        )


class HiddenPath(ToolRetry):
    """A path through a hidden file or directory (``.env``, ``.git/config``), refused unless
    the root allows hidden files."""

    def __init__(self, user_path: str) -> None:
        super().__init__(
            f"refused path {user_path!r}: hidden files and directories (names starting with "
            "'.') are not available"
        )


def safe_path(root: str | os.PathLike[str], user_path: str, *, allow_hidden: bool = False) -> Path:
    """The resolved path of ``user_path`` under ``root``, or ``UnsafePath``.

    Refused: NUL bytes, backslashes (``..\\`` on Windows), absolute paths, any ``..``
    component, and anything whose resolved path (symlinks followed, including a symlinked
    directory above a file that does not exist yet) is not inside the resolved root. The
    containment check compares path components, so ``/data-evil`` is not inside ``/data``.
    Unless ``allow_hidden``, a path with a component starting with ``.`` (as given or as
    resolved: a link to ``.env`` counts) raises ``HiddenPath``: secrets live in dotfiles.
    """
    if "\x00" in user_path or "\\" in user_path:
        raise UnsafePath(user_path)
    relative = PurePosixPath(user_path)
    if relative.is_absolute() or ".." in relative.parts or user_path.startswith("~"):
        raise UnsafePath(user_path)
    base = Path(root).resolve(strict=True)
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError):  # a symlink loop, or a name the OS refuses
        raise UnsafePath(user_path) from None
    if not target.is_relative_to(base):
        raise UnsafePath(user_path)
    if not allow_hidden:
        parts = (*relative.parts, *target.relative_to(base).parts)
        if any(part.startswith(".") for part in parts):
            raise HiddenPath(user_path)
    return target


# -- addresses ------------------------------------------------------------------------------


class BlockedURL(ToolRetry):
    """A URL ``safe_fetch`` will not fetch: another scheme, or a non-public address."""


class FetchFailed(Exception):
    """The fetch was allowed but did not work (timeout, connection error, bad encoding)."""


CLOUD_METADATA: Final[frozenset[IPAddress]] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack
        "169.254.170.2",  # AWS ECS task credentials
        "168.63.129.16",  # Azure WireServer (a public address)
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud Classic
        "fd00:ec2::254",  # AWS IPv6
        "fd20:ce::254",  # GCP IPv6
    )
)
"""Credential endpoints, refused even when an address is allow-listed."""

_BLOCKED_NETWORKS: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", 0.0.0.0
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT (holds Alibaba's metadata address)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/128",
        "::1/128",
        "100::/64",
        "2001::/23",  # IETF protocol assignments, Teredo
        "2001:db8::/32",
        "fc00::/7",  # unique local (holds the AWS/GCP IPv6 metadata addresses)
        "fe80::/10",
        "fec0::/10",  # deprecated site-local
        "ff00::/8",
    )
)

_NAT64_WELL_KNOWN: Final = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL: Final = ipaddress.ip_network("64:ff9b:1::/48")
_TRANSLATED: Final = 0xFFFF0000
"""The upper 96 bits of an IPv4-translated address, ``::ffff:0:a.b.c.d`` (RFC 2765)."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address can route to: mapped, translated, compatible, 6to4,
    NAT64 (the well-known /96, and the local-use /48 with RFC 6052's layout: bits 48-63 and
    72-87 around the zero ``u`` octet; a /96 inside it decodes to 0.0.0.0, blocked too)."""
    found = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64_WELL_KNOWN or int(ip) >> 32 in (0, _TRANSLATED):
        found.append(low32)
    if ip in _NAT64_LOCAL:
        packed = ip.packed
        found.append(ipaddress.IPv4Address(packed[6:8] + packed[9:11]))
    return found


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from, or ``None`` for a public address."""
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a scoped (link-local) address"
        candidates += _embedded_ipv4(ip)
    for address in candidates:
        if address in CLOUD_METADATA:
            return "a cloud metadata address"
        if any(address in net for net in _BLOCKED_NETWORKS) or not address.is_global:
            return "a private, loopback, link-local or reserved address"
    return None


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class _Target:
    url: httpx2.URL
    """The URL as given (host name kept): for the Host header, TLS and the page's address."""
    ip: str
    """The checked address to connect to."""


async def _check(
    url: httpx2.URL, allow: Collection[tuple[str, int]], resolver: Resolver, deadline: float
) -> _Target:
    if url.scheme not in ("http", "https"):
        raise BlockedURL(f"refused {str(url)!r}: only http and https URLs can be fetched")
    host = url.host.rstrip(".")
    if not host:
        raise BlockedURL(f"refused {str(url)!r}: the URL has no host")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        # Resolution counts against the fetch's timeout (a slow resolver cannot hold the run).
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            ips = await asyncio.to_thread(resolver, host, port)
    except TimeoutError:
        raise FetchFailed(f"cannot resolve {host!r}: timed out") from None
    except (OSError, UnicodeError) as exc:
        raise FetchFailed(f"cannot resolve {host!r}: {exc}") from None
    if not ips:
        raise FetchFailed(f"cannot resolve {host!r}: no addresses")
    for text in ips:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise BlockedURL(f"refused {str(url)!r}: unexpected address {text!r}") from None
        reason = blocked_reason(ip)
        if ip in CLOUD_METADATA or (reason and (str(ip), port) not in allow):
            raise BlockedURL(
                f"refused {str(url)!r}: {host!r} is {reason or 'a cloud metadata address'}"
            )
    return _Target(url=url.copy_with(username=None, password=None), ip=ips[0])


# -- fetching -------------------------------------------------------------------------------

_BAD_URL: Final = (httpx2.InvalidURL, ValueError, TypeError, UnicodeError)
"""What httpx2 raises for a URL it cannot parse or use (a refusal the model sees)."""
_SENSITIVE_HEADERS: Final = ("authorization", "cookie", "proxy-authorization")
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchedPage:
    """What ``safe_fetch`` got: the body (at most ``max_bytes``) and where it came from."""

    url: str
    """The final URL, after redirects."""
    status: int
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool
    """The body was longer than ``max_bytes`` and was cut there."""

    def text(self) -> str:
        """The body decoded with its declared charset (UTF-8 if none or unknown)."""
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


async def safe_fetch(
    url: str,
    *,
    max_bytes: int = 2_000_000,
    timeout: float = 15.0,  # noqa: ASYNC109 (also sets httpx's per-read timeouts)
    max_redirects: int = 5,
    headers: Mapping[str, str] | None = None,
    allow: Collection[tuple[str, int]] = (),
    resolver: Resolver = _resolve,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> FetchedPage:
    """GET ``url`` safely; raise ``BlockedURL`` for a refused hop, ``FetchFailed`` otherwise.

    Every hop's host is resolved once and each of its addresses checked; the connection goes to
    the checked address (the host name still goes in the Host header and TLS SNI, so
    certificates are verified against it). Credentials are dropped when a redirect leaves the
    origin. The body is streamed and cut at ``max_bytes``; ``Accept-Encoding: identity`` is
    asked for, a gzip body is inflated under the same cap, any other encoding is refused.
    ``timeout`` bounds the whole fetch. ``allow`` lists ``(ip, port)`` endpoints to treat as
    public: for tests against loopback servers, never for production.
    """
    deadline = time.monotonic() + timeout
    try:
        current = httpx2.URL(url)
    except _BAD_URL as exc:
        raise BlockedURL(f"refused {url!r}: not a valid URL ({exc})") from None
    sent = {"Accept-Encoding": "identity", **(headers or {})}
    async with httpx2.AsyncClient(
        transport=transport, trust_env=False, follow_redirects=False, timeout=timeout
    ) as client:
        for _hop in range(max_redirects + 1):
            try:
                target = await _check(current, allow, resolver, deadline)
                response = await _send(client, target, sent, deadline)
            except _BAD_URL as exc:
                raise BlockedURL(f"refused {str(current)!r}: not a valid URL ({exc})") from None
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    try:
                        following = current.join(location)
                    except _BAD_URL as exc:
                        raise BlockedURL(
                            f"refused the redirect to {location!r}: not a valid URL ({exc})"
                        ) from None
                    if (following.scheme, following.host, following.port) != (
                        current.scheme,
                        current.host,
                        current.port,
                    ):
                        sent = {
                            k: v for k, v in sent.items() if k.lower() not in _SENSITIVE_HEADERS
                        }
                    current = following
                    continue
                body, truncated = await _read(response, max_bytes, deadline)
            finally:
                await response.aclose()
            content_type = response.headers.get("content-type", "")
            return FetchedPage(
                url=str(target.url),
                status=response.status_code,
                content_type=content_type.split(";")[0].strip().lower(),
                charset=response.charset_encoding,
                body=body,
                truncated=truncated,
            )
    raise FetchFailed(f"too many redirects (more than {max_redirects}) from {url!r}")


async def _send(
    client: httpx2.AsyncClient, target: _Target, headers: Mapping[str, str], deadline: float
) -> httpx2.Response:
    ip = ipaddress.ip_address(target.ip)
    pinned = target.url.copy_with(host=str(ip))
    host = target.url.netloc.decode("ascii").rpartition("@")[2]
    request = client.build_request(
        "GET",
        pinned,
        headers={**headers, "Host": host},
        extensions={"sni_hostname": target.url.host},
    )
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            return await client.send(request, stream=True)
    except TimeoutError:
        raise FetchFailed(f"{str(target.url)!r} timed out") from None
    except httpx2.HTTPError as exc:
        raise FetchFailed(f"{str(target.url)!r} failed: {type(exc).__name__}: {exc}") from None


async def _read(response: httpx2.Response, max_bytes: int, deadline: float) -> tuple[bytes, bool]:
    """At most ``max_bytes`` of the decoded body, and whether there was more."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    inflater: zlib._Decompress | None = None
    if encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(wbits=31)
    elif encoding not in ("", "identity"):
        raise FetchFailed(
            f"refused a body with Content-Encoding {encoding!r}: its size cannot be bounded"
        )
    chunks: list[bytes] = []
    size = raw_size = 0
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            async for raw in response.aiter_raw():
                raw_size += len(raw)
                # Inflate no more than the cap allows: a gzip bomb stops here, not in memory.
                data = raw if inflater is None else inflater.decompress(raw, max_bytes - size + 1)
                chunks.append(data)
                size += len(data)
                if size > max_bytes or raw_size > max_bytes:
                    return b"".join(chunks)[:max_bytes], True
    except TimeoutError:
        raise FetchFailed("the page did not arrive in time") from None
    except zlib.error as exc:
        raise FetchFailed(f"the gzip body is corrupt: {exc}") from None
    except httpx2.HTTPError as exc:
        raise FetchFailed(f"reading the page failed: {type(exc).__name__}") from None
    return b"".join(chunks), False
