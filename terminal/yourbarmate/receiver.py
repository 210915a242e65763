"""yourbarmate's webhook, served by aiohttp inside the terminal's event loop: HTTP Basic checked in
constant time, bodies over 64 KiB refused unread, every event committed to the journal before its 200.

yourbarmate resends anything not answered 200 or 201 (INTEGRATION-NOTES), so the answers are chosen to
end what can never succeed and to repeat only what may: a valid event is committed, then answered 200;
a key seen before is answered 200 with no second effect; a body that is JSON-typed but can never be an
event (broken JSON, a wrong field, an unknown unit) is quarantined with its reason and answered 200, since
a 400 would bring the same bytes back forever; only a journal that cannot be written answers 503, and the
resend then applies it. Wrong credentials (401), an oversize body (413), a body that is not JSON-typed
(415) or that does not arrive in time (408) are refused before anything is written. At most
``MAX_CONNECTIONS`` connections are served at once, each with a deadline for its request head, and
aiohttp's own records are stripped of request bytes (terminal.net.inbound).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientPayloadError, HttpVersion11, hdrs, web

from terminal.model import printable
from terminal.net.inbound import InboundGuard
from terminal.service.crashpoint import crashpoint
from terminal.service.secret import Secret
from terminal.yourbarmate.config import YourbarmateConfig
from terminal.yourbarmate.parse import EventError, parse_body
from terminal.yourbarmate.stock import Applied, StockError, StockLedger, connect, now_iso

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_CONNECTIONS = 32  # yourbarmate sends one event at a time, resends a few; more at once is a flood
METHODS = ("POST", "PUT", "PATCH")
REALM = 'Basic realm="taptill yourbarmate", charset="UTF-8"'
STATUS_CACHE_KEY = "yourbarmate_status"  # {"pid", "listen", "since", Counts…} for `taptill status`
STATUS_EVERY_S = 1.0  # counts reach the journal at most this often (a flood of refusals costs no fsyncs)


class ReceiverError(Exception):
    """The receiver cannot start (address in use, no journal); one line saying what to fix."""


@dataclass
class Counts:
    """Requests answered since the receiver started, by what became of them."""

    accepted: int = 0
    duplicate: int = 0
    quarantined: int = 0
    refused_auth: int = 0
    too_large: int = 0
    not_json: int = 0
    timed_out: int = 0
    failed: int = 0  # the journal could not be written: answered 503, yourbarmate resends


class WebhookReceiver:
    """The webhook server; ``await start()`` and ``await stop()`` in the loop that runs the terminal."""

    def __init__(
        self,
        cfg: YourbarmateConfig,
        password: Secret,
        journal_path: Path,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """``on_change`` is called (in the loop) after each event that was committed, so the device loop
        can recompute what is sold out; ``journal_path`` must hold a migrated journal."""
        self.cfg = cfg
        self.counts = Counts()
        # Kept as SHA-256 digests: compare_digest takes the same time only for inputs of one length, so
        # comparing digests (always 32 bytes) does not tell a guesser the right lengths either.
        self._user = _digest(cfg.username.encode())
        self._password = _digest(password.reveal().encode())
        self._journal_path = journal_path
        self._on_change = on_change
        self._pool: ThreadPoolExecutor | None = None
        self._ledger: StockLedger | None = None
        self._runner: web.AppRunner | None = None
        self._flush: asyncio.Task[None] | None = None
        self._since = now_iso()
        self.port = cfg.port  # the bound port once started (a configured 0 picks a free one)
        self.guard = InboundGuard("yourbarmate webhook", MAX_CONNECTIONS)

    async def start(self) -> None:
        """Open the journal connection and listen on ``cfg.listen``; ReceiverError if it cannot."""
        try:
            conn = connect(self._journal_path)
        except StockError as exc:
            raise ReceiverError(str(exc)) from None
        self._ledger = StockLedger(conn, self.cfg.products)
        # one thread: the connection is used by one thread at a time, and writes stay in arrival order
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ybm-ledger")
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        for method in METHODS:
            app.router.add_route(method, self.cfg.path, self._handle, expect_handler=self._expect)
        try:
            self._runner = await self.guard.serve(app, self.cfg.host, self.cfg.port)
        except OSError as exc:
            await self.stop()
            raise ReceiverError(
                f"[yourbarmate] listen {self.cfg.listen}: cannot listen there ({exc.strerror}); "
                "pick a free address and port"
            ) from None
        sockets = self._runner.addresses
        if sockets:
            self.port = int(sockets[0][1])
        log.info("yourbarmate webhook listens on %s:%d%s", self.cfg.host, self.port, self.cfg.path)
        self._store_status_later()

    async def stop(self) -> None:
        """Stop listening (requests under way are finished first), store the counts, close the journal."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._pool is not None and self._ledger is not None:
            await self._in_pool(self._store_status)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    # --- requests ----------------------------------------------------------------------------

    def _refusal(self, request: web.Request) -> web.Response | None:
        """The answer for a request refused before its body is read (credentials, size, type)."""
        if not self._authorized(request.headers.get(hdrs.AUTHORIZATION, "")):
            self.counts.refused_auth += 1
            log.warning("yourbarmate webhook: refused a request with wrong or no credentials")
            return web.Response(
                status=401, text="credentials required\n", headers={"WWW-Authenticate": REALM}
            )
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return self._too_large()
        if not _is_json(request.content_type):
            self.counts.not_json += 1
            log.warning("yourbarmate webhook: refused a body of type %s", printable(request.content_type, 80))
            return web.Response(status=415, text="send application/json\n")
        return None

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse before the sender sends the body, or let it come."""
        refusal = self._refusal(request)
        if refusal is not None:
            refusal.force_close()
            return refusal
        if request.version != HttpVersion11:
            return None
        if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
            raise web.HTTPExpectationFailed(text="unknown Expect\n")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        refusal = None if request.headers.get(hdrs.EXPECT) else self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            async with asyncio.timeout(self.cfg.read_timeout_s):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()
        except (ConnectionError, ClientPayloadError):
            # The sender went away mid-body (or sent less than its Content-Length): nothing to answer.
            log.warning("yourbarmate webhook: the connection closed before the body was complete")
            return web.Response(status=400, text="incomplete body\n")
        except TimeoutError:
            self.counts.timed_out += 1
            self._store_status_later()
            log.warning("yourbarmate webhook: a body did not arrive within %.1f s", self.cfg.read_timeout_s)
            answer = web.Response(status=408, text="the body did not arrive in time\n")
            answer.force_close()
            return answer
        text = body.decode("utf-8", "replace")
        try:
            try:
                event = parse_body(body)
                crashpoint("ybm_before_commit")
                outcome = await self._in_pool(self._apply, event, text)
                crashpoint("ybm_after_commit")
            except EventError as exc:
                await self._in_pool(self._quarantine, exc.idempotency_key, str(exc), text)
                self.counts.quarantined += 1
                log.warning(
                    "yourbarmate webhook: quarantined %s: %s",
                    printable(exc.idempotency_key or "a body without a key", 200),
                    printable(str(exc), 300),
                )
                return web.json_response({"status": "quarantined"})
        except sqlite3.Error as exc:
            self.counts.failed += 1
            log.error("yourbarmate webhook: the journal cannot be written (%s); answered 503", exc)
            return web.Response(status=503, text="cannot store the event now; send it again\n")
        finally:
            self._store_status_later()
        if outcome.applied is Applied.DUPLICATE:
            self.counts.duplicate += 1
            log.info(
                "yourbarmate webhook: %s seen before; nothing applied again", printable(event.idempotency_key)
            )
        else:
            self.counts.accepted += 1
            log.info(
                "yourbarmate webhook: %s %s %s%s",
                event.kind,
                printable(event.delivery_id),
                printable(event.idempotency_key),
                f" ({outcome.note})" if outcome.note else "",
            )
            if self._on_change is not None:
                self._on_change()
        return web.json_response({"status": str(outcome.applied)})

    def _too_large(self) -> web.Response:
        self.counts.too_large += 1
        self._store_status_later()
        log.warning("yourbarmate webhook: refused a body over %d bytes", MAX_BODY_BYTES)
        answer = web.Response(status=413, text=f"bodies are limited to {MAX_BODY_BYTES} bytes\n")
        answer.force_close()
        return answer

    def _authorized(self, header: str) -> bool:
        """Both parts compared in constant time, always both, whatever the header holds."""
        scheme, _, encoded = header.partition(" ")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True) if scheme.lower() == "basic" else b""
        except (binascii.Error, ValueError):
            decoded = b""
        user, sep, password = decoded.partition(b":")
        user_ok = hmac.compare_digest(_digest(user), self._user)
        password_ok = hmac.compare_digest(_digest(password), self._password)
        return bool(sep) and user_ok and password_ok

    # --- the ledger's thread ---------------------------------------------------------------

    async def _in_pool(self, job: Callable[..., Any], *args: Any) -> Any:
        assert self._pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._pool, job, *args)

    def _apply(self, event: Any, text: str) -> Any:
        assert self._ledger is not None
        return self._ledger.apply(event, text)

    def _quarantine(self, key: str | None, reason: str, text: str) -> None:
        assert self._ledger is not None
        self._ledger.quarantine(key, reason, text)

    def _store_status_later(self) -> None:
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._store_status_soon())

    async def _store_status_soon(self) -> None:
        await asyncio.sleep(STATUS_EVERY_S)
        if self._pool is not None:
            await self._in_pool(self._store_status)

    def _store_status(self) -> None:
        if self._ledger is None:
            return
        state = {"pid": os.getpid(), "listen": f"{self.cfg.host}:{self.port}", "since": self._since}
        try:
            self._ledger.store_status(STATUS_CACHE_KEY, {**state, **asdict(self.counts)})
        except sqlite3.Error:  # status is informational; a full disk must not stop the webhook
            log.exception("cannot store the yourbarmate webhook status")


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _is_json(content_type: str) -> bool:
    """application/json, or a JSON-based type (``…+json``); aiohttp gives it without parameters."""
    kind = content_type.lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))
