"""WalletClient: the pretix wallet PointOfSale API over one pooled keep-alive HTTP connection.

Works against the document (``{"data": ...}`` wrappers, string product ids, paths without a
trailing slash) and the real pretix plugin (flat objects, a paginated product list, integer ids,
trailing slashes required): the shape is recognised from each response, and the slash style from
the server's redirect, never from a config switch.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import quote, urljoin, urlsplit

import aiohttp

from terminal.model import Permission, Product, ProductId, TerminalInfo, printable
from terminal.net.deadline import Deadline, SendWatch
from terminal.net.transport import DROPPED, NOT_SENT, ServerLink, read_capped
from terminal.service.secret import Secret
from terminal.wallet.outcomes import (
    Applied,
    Found,
    InfoLoaded,
    InfoOutcome,
    NotFound,
    Refused,
    TransactionOutcome,
    Unauthorized,
    Unavailable,
    WalletOutcome,
)
from terminal.wallet.parse import BadBody, error_reason, is_for_token, parse_terminal, parse_wallet

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
MAX_PRODUCT_PAGES = 40
CONNECT_TIMEOUT_S = 3.0  # a connect that takes longer fails fast, as provably never sent
USER_AGENT = "taptill/0.1"
# Header names: HTTP and aiohttp read them in any case, so an upper- or lower-cased name is the same
# request (module constants, which mutmut leaves alone: its case mutants of them could never be caught).
ACCEPT = "Accept"
AUTHORIZATION = "Authorization"
CONTENT_TYPE = "Content-Type"
RETRY_AFTER = "Retry-After"
LOCATION = "Location"
USER_AGENT_HEADER = "User-Agent"
# quote()'s safe characters in a token's path segment: none, so "/" and "?" are escaped. A constant for the
# same reason: quote() never escapes letters, so mutmut's safe="XXXX" would be the same as "".
SEGMENT_SAFE = ""
Method = Literal[
    "GET", "POST"
]  # what the client sends, spelt as HTTP does (the type keeps a lower-case mutant out)


class _Body:
    """A response read with a size cap; ``json`` is None when the body is not the API's JSON."""

    def __init__(self, status: int, headers: Mapping[str, str], raw: bytes, unusable: str | None) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        self.json: object = None
        self.problem = ""
        ctype = headers.get(CONTENT_TYPE, "").split(";")[0].strip().lower()
        if unusable is not None:  # cut at MAX_BODY_BYTES, or compressed (see terminal.net.transport)
            self.problem = unusable
        elif ctype != "application/json" and not ctype.endswith("+json"):
            # printable: a header's value is the server's text (h11 lets ESC and C1 controls through)
            self.problem = f"not JSON ({printable(ctype, 60) or 'no content type'})"
        else:
            try:
                self.json = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError):  # bad UTF-8, bad JSON, a 5000-digit number
                self.problem = "malformed JSON"

    def retry_after(self) -> float | None:
        value = self.headers.get(RETRY_AFTER)
        if not value:
            return None
        try:
            return max(0.0, min(float(value), 3600.0))
        except ValueError:
            when = email.utils.parsedate_tz(value)
            if when is None:
                return None
            return max(0.0, min(email.utils.mktime_tz(when) - time.time(), 3600.0))


def _same_origin(url: str, base_url: str) -> bool:
    try:
        a, b = urlsplit(url), urlsplit(base_url)
    except ValueError:  # e.g. "http://[broken" from a server
        return False
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


class WalletClient:
    """Async client of one wallet server; every call returns a typed outcome within one overall deadline.

    A call's deadline (``timeout``, else ``timeout_s``; seconds) covers everything it sends and reads:
    connecting, sending, the headers and the whole body, every redirect and product page. A server that
    drips its answer gets Unavailable at the deadline, never later. ``timeout_s`` is also the longest a
    transaction may take: the sale sender waits that long (plus slack) before it reconciles by balance,
    so it has no default: the caller gives the configured one (``[wallet] timeout_s``).
    """

    def __init__(
        self,
        base_url: str,
        token: Secret,
        *,
        timeout_s: float,
        default_permission: Permission = "debit",
        trailing_slash: bool | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s
        self.default_permission = default_permission
        # Real pretix needs a trailing slash; learnt from its 301 at the first GET. Until then
        # guess from the URL: pretix API prefixes look like /api/v1/organizers/<o>/events/<e>/...
        self.trailing_slash = (
            trailing_slash if trailing_slash is not None else "/api/v1/organizers/" in self.base_url
        )
        self._http = ServerLink(
            max_connections=4,
            # when an idle connection is closed, which no outcome depends on (one the server closed first
            # is asked again); 300 s against 301 s or never could only be told apart by waiting
            keepalive_s=300.0,  # pragma: no mutate
            headers={
                AUTHORIZATION: f"Bearer {token.reveal()}",
                ACCEPT: "application/json",
                USER_AGENT_HEADER: USER_AGENT,
            },
        )

    def use_token(self, token: Secret) -> bool:
        """Send ``token`` from now on (a token file rewritten while running); False if it is the same."""
        if token == self._token:
            return False
        self._token = token
        self._http.headers[AUTHORIZATION] = f"Bearer {token.reveal()}"
        return True

    async def aclose(self) -> None:
        await self._http.aclose()

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}{'/' if self.trailing_slash else ''}"

    def _deadline(self, timeout: float | None) -> Deadline:
        return Deadline.after(self.timeout_s if timeout is None else timeout)

    async def _request(
        self, method: Method, url: str, *, deadline: Deadline, body: object = None
    ) -> _Body | Unavailable:
        """One exchange, over by ``deadline``; a GET the server dropped unanswered is asked once more.

        A kept-alive connection the server (or a proxy) closed while idle fails the next request with no
        answer at all. A GET moves no money, so it is sent again on a fresh connection within the same
        deadline; a POST is never repeated here (its caller reconciles).
        """
        for _ in range(2):
            watch = SendWatch()
            try:
                return await self._exchange(method, url, deadline, body, watch)
            except DROPPED as exc:
                dropped = Unavailable(
                    f"connection trouble ({type(exc).__name__})",
                    # A connection drops under a request only once its headers began to leave, so this is
                    # always True, the default: a mutant dropping it could never be caught.
                    maybe_applied=watch.may_have_arrived,  # pragma: no mutate
                )
                if method != "GET" or not deadline.left_s():  # left_s() is never below 0
                    break
        return dropped

    async def _exchange(
        self, method: Method, url: str, deadline: Deadline, body: object, watch: SendWatch
    ) -> _Body | Unavailable:
        """One exchange, over by ``deadline``: connect, send, headers and the body (up to MAX_BODY_BYTES).
        Raises one of DROPPED when the connection closed with no answer."""
        content = json.dumps(body).encode() if body is not None else None
        headers = {CONTENT_TYPE: "application/json"} if content is not None else None
        try:
            async with deadline.scope():
                resp = await self._http.send(
                    method,
                    url,
                    content=content,
                    headers=headers,
                    timeout=deadline.client_timeout(CONNECT_TIMEOUT_S),
                    watch=watch,
                )
                try:
                    raw = await read_capped(resp, MAX_BODY_BYTES)
                finally:
                    resp.release()
                return _Body(resp.status, resp.headers, raw.data, raw.problem)
        except NOT_SENT as exc:  # refused, DNS, TLS, or no connection within the connect timeout
            return Unavailable(f"cannot connect ({type(exc).__name__})", maybe_applied=False)
        except TimeoutError:  # the deadline (a socket timeout is one too; reads have none here)
            return Unavailable(deadline.describe(), maybe_applied=watch.may_have_arrived)
        except aiohttp.InvalidURL:
            return Unavailable("the server named a URL that is not valid", maybe_applied=False)
        except DROPPED:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            return Unavailable(
                f"connection trouble ({type(exc).__name__})",
                # True, the default, for every error that gets here (a connect error was caught above):
                # kept for the rule "False only when provably never sent", no mutant of it can be caught.
                maybe_applied=watch.may_have_arrived,  # pragma: no mutate
            )

    def _common(self, res: _Body) -> Unauthorized | Unavailable | None:
        """Statuses every call treats the same way."""
        if res.status == 401:
            return Unauthorized(error_reason(res.json, "check the wallet API token"))
        if res.status == 429:
            return Unavailable("rate limited (429)", maybe_applied=False, retry_after_s=res.retry_after())
        if res.status >= 500:
            retry_after = res.retry_after()
            return Unavailable(f"server error {res.status}", retry_after_s=retry_after, status=res.status)
        return None

    async def terminal_info(self, *, timeout: float | None = None) -> InfoOutcome:
        """Terminal id, name, permission and products (following the real server's pages).

        ``timeout`` (s, default ``timeout_s``) bounds the whole call, every page included.
        """
        deadline = self._deadline(timeout)
        res = await self._get_learning_slash("/pos/terminal", deadline)
        if isinstance(res, Unavailable):
            return res
        pages = 0
        info_id = name = None
        permission: Permission | None = None
        products: list[Product] = []
        while True:
            common = self._common(res)
            if isinstance(common, Unavailable) and common.status == 500 and pages == 0:
                # Real pretix answers 500 to every call under an organizer or event that does not exist.
                where = "organizer and event slugs in" if "/organizers/" in self.base_url else "[wallet]"
                common = dataclasses.replace(
                    common, reason=f"server error 500: check {where} base_url ({self.base_url})"
                )
            if common is not None:
                return common
            if res.status in (301, 302, 303, 307, 308) and pages == 0:
                return self._moved("/pos/terminal", res)
            if res.status == 404:
                return NotFound("the wallet base_url does not point at a wallet API")
            if res.status != 200:
                return Refused(res.status, error_reason(res.json, f"unexpected status {res.status}"))
            if res.json is None:
                return Unavailable(f"terminal info: {res.problem}")
            try:
                page = parse_terminal(res.json)
            except BadBody as exc:
                return Unavailable(f"terminal info: {exc}")
            pages += 1
            info_id = info_id or page.terminal_id
            name = name or page.friendly_name
            permission = permission or page.permission
            products.extend(page.products)
            if not page.next_url or pages >= MAX_PRODUCT_PAGES:
                break
            if not _same_origin(page.next_url, self.base_url):
                # Never send our token to another host a response names.
                return Unavailable("product list points at another host")
            nxt = await self._request("GET", page.next_url, deadline=deadline)
            if isinstance(nxt, Unavailable):
                return nxt
            res = nxt
        return InfoLoaded(
            TerminalInfo(
                id=info_id,
                friendly_name=name,
                permission=permission or self.default_permission,
                products=tuple(products),
            )
        )

    async def _get_learning_slash(self, path: str, deadline: Deadline) -> _Body | Unavailable:
        """GET ``path``; a redirect to the same URL with (or without) a trailing slash teaches the slash
        style and is followed once. Any other redirect is returned as it came (see ``_moved``)."""
        url = self._url(path)
        res = await self._request("GET", url, deadline=deadline)
        if isinstance(res, Unavailable) or res.status not in (301, 308):
            return res
        location = res.headers.get(LOCATION)  # None without one: urljoin keeps the URL, as for ""
        try:
            asked, target = urlsplit(url), urlsplit(urljoin(url, location))
        except ValueError:  # "http://[" and the like
            return res
        if (target.scheme, target.netloc, target.path.rstrip("/")) != (
            asked.scheme,
            asked.netloc,
            asked.path.rstrip("/"),
        ):
            return res  # moved elsewhere (http to https, another host or path): not a slash matter
        self.trailing_slash = target.path.endswith("/")
        log.info("wallet server wants %s trailing slash", "a" if self.trailing_slash else "no")
        return await self._request("GET", self._url(path), deadline=deadline)

    def _moved(self, path: str, res: _Body) -> Refused:
        """A redirect elsewhere, as a refusal that names the base_url to configure instead."""
        location = printable(res.headers.get(LOCATION, ""), 200)  # quoted to a person below
        try:
            target = urljoin(self._url(path), location)
            parts = urlsplit(target)
        except ValueError:
            said = f"{self.base_url} redirects to {location!r}, not a URL; check [wallet] base_url"
            return Refused(res.status, said)
        base = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
        if base == f"{self.base_url}{path}":  # back where it was asked (with or without a slash): a loop
            said = f"{self.base_url} keeps redirecting to itself; check [wallet] base_url"
            return Refused(res.status, said)
        if base.endswith(path):  # the same API under another origin or prefix
            base = base[: -len(path)]
            return Refused(
                res.status, f'{self.base_url} redirects to {base}; put base_url = "{base}" in [wallet]'
            )
        where = "put the wallet API's URL in [wallet] base_url"
        return Refused(res.status, f"{self.base_url} redirects to {target}; {where}")

    async def wallet(self, token_id: str, *, timeout: float | None = None) -> WalletOutcome:
        """The wallet (balance) behind a normalised token UID; ``timeout`` (s) bounds the whole call."""
        deadline = self._deadline(timeout)
        res = await self._get_learning_slash(
            f"/pos/wallets/token/{quote(token_id, safe=SEGMENT_SAFE)}", deadline
        )
        if isinstance(res, Unavailable):
            return res
        common = self._common(res)
        if common is not None:
            return common
        if res.status == 404:
            if res.json is None:
                # The API's 404 is JSON; an HTML one is a proxy or a wrong URL, not an unknown card.
                return Unavailable(f"404 that is not the API's ({res.problem})", maybe_applied=False)
            return NotFound(error_reason(res.json, "token not paired to a wallet"))
        if res.status == 403:
            return Refused(403, error_reason(res.json, "permission"))
        if res.status != 200:
            if res.status >= 400 and res.json is not None:  # a 5xx was answered above
                return Refused(res.status, error_reason(res.json, f"status {res.status}"))
            return Unavailable(f"unexpected status {res.status}")
        if res.json is None:
            return Unavailable(f"wallet: {res.problem}")
        try:
            wallet = parse_wallet(res.json)
        except BadBody as exc:
            return Unavailable(f"wallet: {exc}")
        if not is_for_token(wallet, token_id):
            # Another card's balance would be shown to this guest and reconciled against this card's sales.
            return Unavailable("wallet: the answer is for another token", maybe_applied=False)
        return Found(wallet)

    async def transact(
        self,
        token_id: str,
        products: Sequence[ProductId],
        *,
        description: str,
        tag: str | None,
        idempotency_key: str,
        timeout: float | None = None,
    ) -> TransactionOutcome:
        """Book a transaction of ``products`` (negative prices credit) under ``idempotency_key``.

        ``timeout`` (s) bounds the whole call and is never longer than ``timeout_s``, which the sale
        sender's reconcile window relies on. Unavailable with ``maybe_applied`` False only if the
        request provably never left (still connecting when the deadline struck, refused, 429).
        """
        if not products:
            # The real server books an empty list as a 0.00 order: never send one.
            return Refused(400, "no products")
        body: dict[str, object] = {
            "products": list(products),
            "description": description,
            "idempotency_key": idempotency_key,
        }
        if tag:
            body["tag"] = tag
        url = self._url(f"/pos/wallets/token/{quote(token_id, safe=SEGMENT_SAFE)}/transactions")
        limit = self.timeout_s if timeout is None else min(timeout, self.timeout_s)
        res = await self._request("POST", url, deadline=Deadline.after(limit), body=body)
        if isinstance(res, Unavailable):
            return res
        common = self._common(res)
        if common is not None:
            return common
        if res.status in (200, 201, 202):
            already = res.status == 202
            wallet = None
            if res.json is not None:
                try:
                    wallet = parse_wallet(res.json)
                except BadBody:
                    if not already:
                        return Unavailable("transaction answer is not a wallet")
            elif not already:
                # A 2xx whose body is an HTML page or garbage came from a proxy, not the API.
                return Unavailable(f"transaction answer {res.status}: {res.problem}")
            if wallet is not None and not is_for_token(wallet, token_id):
                # Whatever the server booked, it answered for another card: never "done" for this one on
                # that word. Settled like any answer that may have been booked (the same key again on a
                # deduplicating server, else this card's balance decides before anything is re-sent):
                # maybe_applied is Unavailable's default, True.
                return Unavailable("transaction answer is for another token")
            return Applied(wallet, already=already)
        if res.status == 404:
            if res.json is None:
                # Real pretix answers a missing trailing slash with an HTML 404 and books nothing.
                return Unavailable("HTML 404 (URL style?)", maybe_applied=False)
            return NotFound(error_reason(res.json, "token not paired to a wallet"))
        if res.status in (400, 403, 409, 415, 422) and res.json is not None:
            return Refused(res.status, error_reason(res.json, f"status {res.status}"))
        return Unavailable(f"unexpected status {res.status}: {res.problem or 'no detail'}")
