"""The wallet emulator: an HTTP server on loopback with a ledger, fault injection, and its lifecycle."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from terminal.emulator.faults import (
    FaultableHTTPServer,
    FaultInjector,
    drop_connection,
    run_after_fault,
    run_before_fault,
    send_body,
)
from terminal.emulator.serving import LoopbackEmulator
from terminal.emulator.wallet.control import CONTROL_PREFIX, handle_control, is_control_path
from terminal.emulator.wallet.flavours import (
    DEMO_PRODUCTS_DOC,
    DEMO_PRODUCTS_REAL,
    FLAVOURS,
    DocWalletApi,
    EmulatorSettings,
    Flavour,
    ProductSpec,
    RealWalletApi,
    plugin_cents,
)
from terminal.emulator.wallet.ledger import LedgerTransaction, LedgerWallet, WalletLedger
from terminal.emulator.wallet.routes import ApiPrefix, ApiRequest, ApiResponse, html_response

DEFAULT_PREFIX = "/api/v1/organizers/demo/events/demo/wallet"
DEFAULT_API_TOKEN = "taptill-demo-api-token"
MAX_BODY_BYTES = 1_000_000
DEMO_WALLETS: dict[str, tuple[int, str]] = {
    "04A1B2C3D4E5F6": (2000, "Max Mustermann"),
    "0455667788AABB": (500, "Erika Musterfrau"),
    "DEADBEEF": (100, ""),
    "04000000000001": (0, ""),
}


# -- the HTTP server -------------------------------------------------------------------------------------


class _WalletHTTPServer(FaultableHTTPServer):
    emulator: WalletEmulator


class _WalletRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a client's pooled connection is reused
    server_version = "taptill-wallet-emulator/1"
    timeout = 120  # idle keep-alive connections do not hold a thread forever

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and the demo want a quiet emulator; the ledger and stats say what happened

    def _dispatch(self) -> None:
        emulator = cast(_WalletHTTPServer, self.server).emulator
        split = urlsplit(self.path)
        body = self._read_body()
        if body is None:
            send_body(self, 413, b'{"detail": "Request body too large."}', "application/json")
            self.close_connection = True
            return
        if is_control_path(split.path):
            self._send(handle_control(emulator, self.command, split.path, body))
            return
        injector = emulator.faults
        route = emulator.route_kind(split.path)
        injector.count_request(route)
        if injector.down:
            injector.record_down()
            drop_connection(self)
            return
        plan = injector.plan(self.command, route)
        if plan.delay_ms:
            time.sleep(plan.delay_ms / 1000)
        if plan.before is not None:
            run_before_fault(self, plan.before, injector)
            return
        host = self.headers.get("Host") or f"{emulator.host}:{emulator.port}"
        request = ApiRequest(
            method=self.command,
            path=split.path,
            query=split.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            origin=f"http://{host}",
        )
        try:
            response = emulator.api.handle(request)
        except Exception as exc:  # an emulator bug must look like a server error, not kill the thread
            print(f"wallet emulator: {type(exc).__name__}: {exc}", file=sys.stderr)
            response = html_response(500, "Server Error (500)", "")
        if plan.after is not None:
            run_after_fault(
                self,
                plan.after,
                injector,
                response.status,
                response.body,
                response.content_type,
                response.headers,
            )
            return
        self._send(response)

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: ApiResponse) -> None:
        send_body(self, response.status, response.body, response.content_type, response.headers)


class WalletEmulator(LoopbackEmulator):
    """A wallet API server on loopback with a ledger and fault injection; use as a context manager.

    ``wallets`` maps token UID to balance cents or to (balance cents, paired user); they are only seeded
    when the ledger at ``ledger_path`` does not know them yet. ``products`` are (id, name, price cents):
    string ids for ``doc``, integer item ids for ``real``; a negative price is a top-up (doc only).
    ``unsellable`` (real only) lists item ids that are in no pretix quota: listed, but every POST with one
    answers 500 HTML and charges nothing.
    """

    kind = "wallet"

    def __init__(
        self,
        flavour: Flavour = "doc",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_token: str = DEFAULT_API_TOKEN,
        terminal_id: str = "coffee_machine",
        friendly_name: str = "Kaffeemaschine",
        permission: str = "debit",
        products: Sequence[ProductSpec] | None = None,
        wallets: Mapping[str, int | tuple[int, str]] | None = None,
        ledger_path: Path | str | None = None,
        prefix: str = DEFAULT_PREFIX,
        seed: int = 0,
        latency: str = "fast",
        unsellable: Iterable[int] = (),
    ) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown wallet emulator flavour {flavour!r}; use 'doc' or 'real'")
        if permission not in ("debit", "credit", "all"):
            raise ValueError(f"unknown terminal permission {permission!r}; use 'debit', 'credit' or 'all'")
        if products is None:
            products = DEMO_PRODUCTS_DOC if flavour == "doc" else DEMO_PRODUCTS_REAL
        self.flavour: Flavour = flavour
        self.host = host
        self._requested_port = port
        self._api_token = api_token
        self.settings = EmulatorSettings(
            prefix=prefix.rstrip("/"),
            api_token=api_token,
            terminal_id=terminal_id,
            friendly_name=friendly_name,
            permission=permission,
            products=tuple(products),
            seed=seed,
        )
        self.ledger = WalletLedger(Path(ledger_path) if ledger_path is not None else None)
        self.faults = FaultInjector(seed)
        self.faults.set_profile(latency)  # "real": answers as slow as a real pretix server's
        self.api: DocWalletApi | RealWalletApi = (
            DocWalletApi(self.settings, self.ledger)
            if flavour == "doc"
            else RealWalletApi(self.settings, self.ledger)
        )
        self._prefix = ApiPrefix(prefix)
        if unsellable:
            self.set_unsellable(unsellable)
        for token_id, spec in (wallets or {}).items():
            balance, paired_user = spec if isinstance(spec, tuple) else (spec, "")
            self.ledger.seed_wallet(token_id, balance, paired_user)

    @classmethod
    def demo(cls, flavour: Flavour = "doc", **overrides: Any) -> WalletEmulator:
        """An emulator with the demo wallets (DEMO_WALLETS) and products; doc flavour may debit and credit."""
        options: dict[str, Any] = {
            "wallets": DEMO_WALLETS,
            "permission": "all" if flavour == "doc" else "debit",
        }
        options.update(overrides)
        return cls(flavour, **options)

    # -- lifecycle -------------------------------------------------------------------------------------

    def _bind(self) -> _WalletHTTPServer:
        server = _WalletHTTPServer((self.host, self._requested_port), _WalletRequestHandler)
        server.emulator = self
        return server

    # -- addresses -------------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + self.settings.prefix

    @property
    def control_url(self) -> str:
        return self.origin + CONTROL_PREFIX

    @property
    def api_token(self) -> str:
        return self._api_token

    def route_kind(self, path: str) -> str:
        return self._prefix.route_kind(path)

    # -- state -----------------------------------------------------------------------------------------

    def transactions(self) -> list[LedgerTransaction]:
        return self.ledger.transactions()

    def balance(self, uid: str) -> int:
        """The wallet's exact balance in cents, as the ledger keeps it."""
        return self.ledger.balance(uid)

    def reported_balance(self, uid: str) -> int:
        """The balance in cents as the API reports it: exact for ``doc``, truncated for ``real``."""
        wallet = self.ledger.wallet(uid)
        if wallet is None:
            raise KeyError(f"no wallet for token {uid!r}; add it with add_wallet() first")
        return wallet.balance if self.flavour == "doc" else plugin_cents(wallet.euros)

    @property
    def unsellable(self) -> frozenset[int]:
        return self.api.unsellable if isinstance(self.api, RealWalletApi) else frozenset()

    def set_unsellable(self, item_ids: Iterable[object]) -> frozenset[int]:
        """Real flavour: put these listed item ids in no quota (replaces the earlier set; empty clears).

        Raises ValueError for the doc flavour (the document has no quotas) or an id that is not listed.
        """
        if not isinstance(self.api, RealWalletApi):
            raise ValueError("unsellable products exist only in the real flavour; start it with 'real'")
        return self.api.set_unsellable(item_ids)

    def revoke_token(self, revoked: bool = True) -> None:
        """Answer every API request 401 as for a revoked token (``revoked`` False: accept it again)."""
        self.api.token_revoked = revoked

    def refuse_transactions(self, detail: str | None) -> None:
        """Doc flavour: answer every transaction 400 ``{"detail": detail}`` and move no money, as a server
        refusing in its own words (``None``: book them again). Raises ValueError for the real flavour."""
        if not isinstance(self.api, DocWalletApi):
            raise ValueError("refusals in the server's own words exist only in the doc flavour")
        self.api.refusal = detail

    def add_wallet(self, uid: str, balance: int, paired_user: str = "") -> LedgerWallet:
        return self.ledger.add_wallet(uid, balance, paired_user)

    def stats(self) -> dict[str, Any]:
        stats = self.faults.stats()
        stats["connections"] = self.connections_accepted
        stats["transactions"] = len(self.ledger.transactions())
        return stats
