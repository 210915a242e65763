"""How every server client talks HTTP: nothing from the environment, TLS verified, bodies read raw and capped.

- ``trust_env=False``: ``HTTPS_PROXY``, ``ALL_PROXY``, ``SSL_CERT_FILE``, ``SSL_CERT_DIR`` and ``.netrc``
  are ignored, so whoever can set the service's environment can neither send its requests (with the
  bearer token or Basic password) through a proxy of theirs nor make it trust their certificate.
- ``Accept-Encoding: identity``, and a body sent compressed all the same is refused unread rather than
  decoded: the APIs' answers are a few KiB of JSON, so compression saves nothing worth a decoder whose
  output a server controls (1 MB of gzip inflates to 1 GiB, and httpx inflates a whole read at once).
  Refusing keeps the cap on the bytes that arrive, which are the only bytes held in memory.
- ``http://`` base URLs only to this machine (or with ``allow_insecure = true``): see ``cleartext_host``.
- Requests go straight to httpx's transport (``ServerLink``): httpx's client layer around it (cookies,
  auth and redirect machinery, URL merging) does nothing for these APIs and costs CPU on every tap.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

IDENTITY = "identity"
MAX_CACHED_URLS = 256


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


class ServerLink:
    """One server's pooled keep-alive connections; each request is handed straight to httpx's transport.

    The transport is the one ``httpx.AsyncClient(verify=True, trust_env=False)`` would build (httpcore's
    pool, TLS verified against certifi's CAs, httpx's exceptions and timeouts), so the bytes on the wire
    and the errors are the client's. What the client adds around it is skipped: it does nothing for these
    APIs and was a seventh of a tap's HTTP work (issue 10, CPU per tap): every answer's headers parsed
    for cookies (which it then sent back: a server or proxy could tag the terminal's requests), each URL
    merged with a base URL, auth and redirect machinery for requests that have neither (redirects are
    never followed: the caller sees them).
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        headers: Mapping[str, str],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._transport = transport or httpx.AsyncHTTPTransport(verify=True, trust_env=False, limits=limits)
        # httpx.Headers: its repr hides Authorization, so a link in a log line or traceback shows no secret.
        self.headers = httpx.Headers({"Connection": "keep-alive", **headers, "Accept-Encoding": IDENTITY})
        # Parsed URLs by their text: httpx checks a URL character by character, three quarters of what
        # building a request costs, and a terminal asks the same few URLs all night (issue 10, CPU per tap).
        self._urls: dict[str, httpx.URL] = {}

    async def send(
        self,
        method: str,
        url: str,
        *,
        timeout: httpx.Timeout,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, object] | None = None,
    ) -> httpx.Response:
        """Send one request with the link's headers (and ``headers``); returns once the answer's headers
        are in. Its body is still to be read (``read_capped``) and the response must be closed
        (``aclose``), which gives the connection back to the pool. ``timeout`` bounds each phase (s).

        Raises what the client would: httpx.InvalidURL for a URL that is not one, httpx.HTTPError's
        transport errors (connect, timeouts, a connection dropped) otherwise.
        """
        request = httpx.Request(
            method,
            self._parsed(url),
            headers=self.headers,
            content=content,
            extensions={**(extensions or {}), "timeout": timeout.as_dict()},
        )
        if headers:
            request.headers.update(headers)
        response = await self._transport.handle_async_request(request)
        response.request = request
        return response

    def _parsed(self, url: str) -> httpx.URL:
        """``url`` parsed, from the cache; raises httpx.InvalidURL as httpx.Request would."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= MAX_CACHED_URLS:  # a URL per card: a busy night must not grow it for ever
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def aclose(self) -> None:
        await self._transport.aclose()


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


async def read_capped(response: httpx.Response, max_bytes: int) -> RawBody:
    """Read the body of a streamed ``response``, at most ``max_bytes`` of it.

    Reading stops at the cap, so at most one network read (64 KiB) beyond it is ever held; a compressed
    body is not read at all. Raises what ``aiter_raw`` raises (httpx.HTTPError) when the connection
    breaks mid-body.
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", IDENTITY):
        return RawBody(b"", encoding="".join(c for c in encoding if c.isprintable())[:30])
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > max_bytes:
            return RawBody(bytes(body[:max_bytes]), too_large=True)
    return RawBody(bytes(body))
