"""How every server client talks HTTP: nothing from the environment, TLS verified, bodies read raw and capped.

- ``trust_env=False`` and ``tls_context``: ``HTTPS_PROXY``, ``ALL_PROXY``, ``SSL_CERT_FILE``,
  ``SSL_CERT_DIR`` and ``.netrc`` are ignored, so whoever can set the service's environment can neither
  send its requests (with the bearer token or Basic password) through a proxy of theirs nor make it
  trust their certificate.
- ``Accept-Encoding: identity``, and a body sent compressed all the same is refused unread rather than
  decoded: the APIs' answers are a few KiB of JSON, so compression saves nothing worth a decoder whose
  output a server controls (1 MB of gzip inflates to 1 GiB). Refusing keeps the cap on the bytes that
  arrive, which are the only bytes held in memory.
- ``http://`` base URLs only to this machine (or with ``allow_insecure = true``): see ``cleartext_host``.
- One ``aiohttp.ClientSession`` per server (``ServerLink``): aiohttp also serves the inbound side, and a
  request costs a third of the CPU httpx's did (issue 10, CPU per tap).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import yarl

from terminal.net.deadline import SendWatch, send_trace

IDENTITY = "identity"
MAX_CACHED_URLS = 256
# The request provably never left: no connection was had (refused, DNS, TLS, a connect or pool wait too long).
NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# A connection closed (or garbled) under a request: no usable answer came back. Catch NOT_SENT first
# (ClientConnectorError is a ClientOSError). ClientResponseError is a status line or header aiohttp could
# not parse (redirects are not followed and no status is raised for, so nothing else raises it).
DROPPED = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientResponseError,
)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """How every link verifies a server: hostname checked, TLS 1.2 or newer, and the system's CA store only.

    The store is the one OpenSSL was built to read (Debian, Raspberry Pi OS: ``/usr/lib/ssl/cert.pem``
    and ``/usr/lib/ssl/certs``, that is /etc/ssl/certs from the ca-certificates package, which apt keeps
    up to date), never what SSL_CERT_FILE or SSL_CERT_DIR name: ``ssl.create_default_context()`` (and so
    aiohttp's default) would honour those, letting whoever sets the service's environment make it trust
    their certificate. (httpx used certifi's bundle; on a terminal the system's is the one that is patched.)
    Made once: loading the store costs milliseconds.
    """
    paths = ssl.get_default_verify_paths()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else None
    if cafile or capath:  # neither: no CA is trusted, every https:// connect fails as "cannot connect"
        context.load_verify_locations(cafile=cafile, capath=capath)
    return context


def cleartext_host(url: str) -> str | None:
    """The host ``url`` would reach without TLS, or None when it uses https:// or stays on this machine.

    This machine is 127.0.0.0/8, ::1 and ``localhost``; names that merely resolve there are not trusted
    (DNS can change its answer). A URL that cannot be parsed answers its own text, so it is refused.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return url
    if parts.scheme.lower() != "http":
        return None
    if host == "localhost":
        return None
    try:
        return None if ipaddress.ip_address(host).is_loopback else host
    except ValueError:
        return host or url


def insecure_url_problem(table: str, url: str, sends: str) -> str | None:
    """One config-error line when ``url`` would carry ``sends`` (e.g. "the API token") in clear."""
    host = cleartext_host(url)
    if host is None:
        return None
    return (
        f"[{table}] base_url is http:// to {host}: {sends} would travel unencrypted; use https://, or set"
        f" allow_insecure = true in [{table}] if the network to it is trusted"
    )


class LinkHeaders(dict[str, str]):
    """A link's request headers; the repr hides Authorization, so a link in a log line or a traceback
    shows no secret (httpx.Headers did the same)."""

    def __repr__(self) -> str:
        shown = {k: ("[secret]" if k.lower() == "authorization" else v) for k, v in self.items()}
        return f"LinkHeaders({shown!r})"


class ServerLink:
    """One server's pooled keep-alive connections: one ``aiohttp.ClientSession``, made at the first request
    (inside the running loop) and closed by ``aclose``.

    The session is set up for these APIs and nothing else: no proxy, netrc or CA from the environment
    (``trust_env=False``, ``tls_context``), no cookies kept or sent (a server or proxy could tag the
    terminal's requests), no redirect followed (the caller sees it), nothing decompressed, and aiohttp's
    own retry of an idempotent request on a dropped connection off: the clients decide what is asked again
    (a GET once, a POST never) and whether it may have arrived (``SendWatch``).
    """

    def __init__(self, *, max_connections: int, keepalive_s: float, headers: Mapping[str, str]) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self.headers = LinkHeaders({"Connection": "keep-alive", **headers, "Accept-Encoding": IDENTITY})
        self._session: aiohttp.ClientSession | None = None
        # Parsed URLs by their text: a terminal asks the same few URLs all night (issue 10, CPU per tap).
        self._urls: dict[str, yarl.URL] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, keepalive_timeout=self._keepalive_s, ssl=tls_context()
        )
        session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trace_configs=[send_trace()],
            # No total of aiohttp's: each call's Deadline (terminal.net.deadline) bounds the whole exchange.
            timeout=aiohttp.ClientTimeout(total=None),
        )
        # aiohttp sends a GET again by itself when a connection drops under it; the clients' own rule
        # (terminal.wallet.client: a GET once more within its deadline, a POST never) is the only one.
        # Private (aiohttp has no switch for it): tests/test_wallet_client.py's
        # test_a_server_that_drops_every_request_... fails if a later aiohttp ignores it.
        session._retry_connection = False
        self._session = session
        return session

    async def send(
        self,
        method: str,
        url: str,
        *,
        timeout: aiohttp.ClientTimeout,
        watch: SendWatch | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request with the link's headers (and ``headers``); returns once the answer's headers
        are in. Its body is still to be read (``read_capped``) and the response must be released
        (``release()``), which gives the connection back to the pool (or closes it, with a body unread).
        ``timeout`` bounds the connect; ``watch`` learns whether the request may have left.

        Raises aiohttp.InvalidURL for a URL that is not one, aiohttp.ClientError otherwise (connect
        errors, a connection dropped, an answer that is not HTTP).
        """
        session = self._session or self._open()
        sent = self.headers if not headers else {**self.headers, **headers}
        return await session.request(
            method,
            self._parsed(url),
            headers=sent,
            data=content,
            timeout=timeout,
            allow_redirects=False,
            trace_request_ctx=watch,
        )

    def _parsed(self, url: str) -> yarl.URL:
        """``url`` parsed, from the cache; raises aiohttp.InvalidURL for one that is not a URL."""
        parsed = self._urls.get(url)
        if parsed is None:
            if not url.isprintable():  # a control character from a server's link: refused, as httpx did
                raise aiohttp.InvalidURL(url)
            try:
                parsed = yarl.URL(url)
            except (ValueError, TypeError) as exc:
                raise aiohttp.InvalidURL(url) from exc
            if len(self._urls) >= MAX_CACHED_URLS:  # a URL per card: a busy night must not grow it for ever
                self._urls.clear()
            self._urls[url] = parsed
        return parsed

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(frozen=True)
class RawBody:
    """A body as it arrived, never decoded: ``data`` is at most the cap; ``too_large`` when more came;
    ``encoding`` names a Content-Encoding that was refused unread (``data`` is then empty)."""

    data: bytes
    too_large: bool = False
    encoding: str | None = None

    @property
    def problem(self) -> str | None:
        """Why the body is unusable, for outcomes and logs; None for a whole, uncompressed body."""
        if self.encoding is not None:
            return f"a {self.encoding}-encoded body though an uncompressed one was asked for"
        if self.too_large:
            return f"body over {len(self.data)} bytes"
        return None


async def read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> RawBody:
    """Read the body of ``response``, at most ``max_bytes`` of it (asking for one byte more to know).

    Reading stops at the cap; what aiohttp buffers beyond it is bounded by its flow control (a few
    network reads). A compressed body is not read at all. Raises aiohttp.ClientPayloadError (or another
    aiohttp.ClientError) when the connection breaks mid-body.
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", IDENTITY):
        return RawBody(b"", encoding="".join(c for c in encoding if c.isprintable())[:30])
    body = bytearray()
    while chunk := await response.content.read(max_bytes + 1 - len(body)):
        body += chunk
        if len(body) > max_bytes:
            return RawBody(bytes(body[:max_bytes]), too_large=True)
    return RawBody(bytes(body))
