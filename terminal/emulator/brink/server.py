"""The PAR Brink Ordering service emulator: SOAP 1.1 over HTTP on loopback, with faults and forced codes.

A POST to ``/Ordering.svc`` is, in order: size-checked (413 over 1 MiB), logged, faulted
(``terminal.emulator.faults``; route kinds ``get_party``, ``apply_payment``, ``other``), read
(``requests.py``; unreadable: SOAP Fault, HTTP 500), checked for the location's ``AccessToken`` and
``LocationToken`` (wrong or missing: ResultCode 4 with HTTP 200, as WCF answers), offered to a forced
result code, and answered from the location's parties (``parties.py``) in the current answer style
(``answers.py``). ``/_emulator/...`` control paths (``control.py``) are never faulted or logged.
"""

from __future__ import annotations

import hmac
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from terminal.emulator.brink.answers import (
    CONTENT_TYPE,
    STYLES,
    Style,
    apply_payment_answer,
    fault,
    get_party_answer,
)
from terminal.emulator.brink.control import control
from terminal.emulator.brink.demo import demo_parties, seed_party
from terminal.emulator.brink.parties import Location, Party
from terminal.emulator.brink.requests import (
    ApplyPaymentRequest,
    BadRequest,
    GetPartyRequest,
    operation,
    parse,
)
from terminal.emulator.clock import EmulatorClock
from terminal.emulator.faults import (
    FaultableHTTPServer,
    FaultInjector,
    drop_connection,
    run_after_fault,
    run_before_fault,
    send_body,
)
from terminal.emulator.serving import LoopbackEmulator
from terminal.emulator.wallet.routes import ApiResponse

SERVICE_PATH = "/Ordering.svc"
CONTROL_PREFIX = "/_emulator"
MAX_BODY_BYTES = 1 << 20
DEMO_ACCESS_TOKEN = "brink-demo-access-token"
DEMO_LOCATION_TOKEN = "brink-demo-location-token"
LOGGED_BODY_BYTES = 64 * 1024
MESSAGES = {
    1: "Unknown Error",
    2: "Invalid Request",
    3: "Server Unavailable",
    4: "Access Denied",
    102: "Order not found",
    103: "Order already closed",
    104: "The store did not respond, please try again",
    106: "Tender error",
}
_NOT_FOUND_101 = {
    "GetParty": "Party with the BusinessDate and TableId specified was not found",
    "ApplyPayment": "Payment could not be processed",
}


def message_for(op: str, code: int) -> str:
    """The PAR error message the emulator sends with ``code`` for operation ``op``."""
    return _NOT_FOUND_101[op] if code == 101 else MESSAGES.get(code, f"Error {code}")


def route_kind(soap_action: str | None) -> str:
    """The route kind fault rules name: get_party, apply_payment or other (unknown SOAPAction)."""
    try:
        op = operation(soap_action)
    except BadRequest:
        return "other"
    return "get_party" if op == "GetParty" else "apply_payment"


def business_date_now(now: float, day_starts: str = "06:00") -> date:
    """The local business date at epoch ``now`` for a day that starts at ``day_starts`` (HH:MM)."""
    hours, minutes = (int(part) for part in day_starts.split(":"))
    return (datetime.fromtimestamp(now) - timedelta(hours=hours, minutes=minutes)).date()


@dataclass
class ForcedCode:
    """Answer ``code`` to the next ``times`` calls of ``operation`` (None: always); ``after_applying``
    (ApplyPayment only): apply the payment first, then answer ``code``."""

    operation: str
    code: int
    times: int | None = 1
    after_applying: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "code": self.code,
            "times": self.times,
            "after_applying": self.after_applying,
        }


class BrinkEmulator(LoopbackEmulator):
    """The Ordering service of one or more locations on ``127.0.0.1``; a context manager or start()/stop().

    The first location's tokens are ``access_token``/``location_token``; it holds ``parties`` (default:
    the seed's party and the demo tables 1..12 on ``business_date``, default today's business date with
    days starting 06:00 on the emulator's clock; on the seed's own date the demo's table 5 replaces the
    seed's party) and accepts ``tenders`` in ApplyPayment. ``style``:
    "seed" or "wcf" answers; ``latency``: "fast" or "real".
    """

    kind = "brink"

    def __init__(
        self,
        *,
        port: int = 0,
        access_token: str = DEMO_ACCESS_TOKEN,
        location_token: str = DEMO_LOCATION_TOKEN,
        parties: Iterable[Party] | None = None,
        business_date: date | None = None,
        tenders: Iterable[int] = (1, 7),
        style: Style = "seed",
        latency: str = "fast",
        seed: int = 0,
        clock: EmulatorClock | None = None,
    ) -> None:
        self.clock = clock or EmulatorClock()
        self.faults = FaultInjector(seed)
        self.faults.set_profile(latency)
        self._lock = threading.Lock()  # style, forced codes, the request log, the locations
        self._style: Style = "seed"
        self.set_style(style)
        self._forced: list[ForcedCode] = []
        self._log: list[dict[str, Any]] = []
        self._locations: dict[tuple[str, str], Location] = {}
        self.location = self.add_location(access_token, location_token, tenders)
        if parties is None:
            day = business_date or business_date_now(self.clock.now())
            parties = [seed_party(), *demo_parties(day)]
        for party in parties:
            self.location.put_party(party)
        self._port = port

    # --- lifecycle and addresses -------------------------------------------------------------------------

    def _bind(self) -> FaultableHTTPServer:
        return FaultableHTTPServer(("127.0.0.1", self._port), _handler_for(self))

    @property
    def url(self) -> str:
        """The Ordering.svc URL (what ``[brink] url`` is set to)."""
        return f"http://127.0.0.1:{self.port}{SERVICE_PATH}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CONTROL_PREFIX}"

    # --- the python API tests use ---------------------------------------------------------------------------

    def add_location(
        self, access_token: str, location_token: str, tenders: Iterable[int] = (1, 7)
    ) -> Location:
        """Another location, answering requests that carry these two tokens."""
        if not access_token or not location_token:
            raise ValueError("a location needs a non-empty access token and location token")
        location = Location(self.clock.now, tenders)
        with self._lock:
            self._locations[(access_token, location_token)] = location
        return location

    def location_for(self, location_token: str) -> Location:
        """The location with ``location_token``; KeyError if none."""
        with self._lock:
            for (_, token), location in self._locations.items():
                if token == location_token:
                    return location
        raise KeyError(location_token)

    @property
    def style(self) -> Style:
        with self._lock:
            return self._style

    def set_style(self, style: str) -> None:
        """Answer in the "seed" style (the seed's text) or the "wcf" style from the next request on."""
        if style not in STYLES:
            raise ValueError(f"unknown answer style {style!r}; use one of {list(STYLES)}")
        with self._lock:
            self._style = "seed" if style == "seed" else "wcf"

    def force(
        self, operation: str, code: int, *, times: int | None = 1, after_applying: bool = False
    ) -> ForcedCode:
        """Answer ResultCode ``code`` to the next ``times`` calls of ``operation`` (None: every call).

        ``after_applying`` (ApplyPayment): the payment is applied first, then ``code`` answered (the
        ambiguous 104); without it nothing is applied.
        """
        if operation not in ("GetParty", "ApplyPayment"):
            raise ValueError(f"unknown operation {operation!r}; use GetParty or ApplyPayment")
        if after_applying and operation != "ApplyPayment":
            raise ValueError("after_applying is for ApplyPayment only")
        if times is not None and times < 1:
            raise ValueError("times must be 1 or more, or None for always")
        rule = ForcedCode(operation, code, times, after_applying)
        with self._lock:
            self._forced.append(rule)
        return rule

    def forced(self) -> list[ForcedCode]:
        with self._lock:
            return list(self._forced)

    def clear_forced(self) -> None:
        with self._lock:
            self._forced = []

    def requests(self) -> list[dict[str, Any]]:
        """What reached the service, oldest first: operation, headers' SOAPAction, whether the tokens
        matched, the body (first 64 KiB), parsed fields, HTTP status, ResultCode and fault (if any)."""
        with self._lock:
            return [dict(entry) for entry in self._log]

    def clear_requests(self) -> None:
        with self._lock:
            self._log = []

    def applied_payments(self) -> list[dict[str, Any]]:
        """The first location's ledger of applied payments, as JSON values."""
        return [p.to_json() for p in self.location.applied_payments()]

    def stats(self) -> dict[str, Any]:
        stats = self.faults.stats()
        stats["applied_payments"] = len(self.location.applied_payments())
        stats["connections"] = self.connections_accepted
        return stats

    # --- the service -------------------------------------------------------------------------------------

    def log_request(self, soap_action: str | None, body: bytes, fault_kind: str | None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "at": self.clock.now(),
            "soap_action": soap_action,
            "route": route_kind(soap_action),
            "body": body[:LOGGED_BODY_BYTES].decode("utf-8", "replace"),
            "fault": fault_kind,
            "operation": None,
            "tokens_ok": None,
            "fields": None,
            "status": None,
            "result_code": None,
        }
        with self._lock:
            self._log.append(entry)
        return entry

    def _note(self, entry: dict[str, Any], **values: Any) -> None:
        with self._lock:
            entry.update(values)

    def handle(
        self, headers: Mapping[str, str], body: bytes, entry: dict[str, Any] | None = None
    ) -> ApiResponse:
        """Answer one request to Ordering.svc (``headers``: lower-case names); faults are the handler's."""
        entry = entry if entry is not None else self.log_request(headers.get("soapaction"), body, None)
        content_type = headers.get("content-type", "")
        if not content_type.lower().startswith("text/xml"):
            self._note(entry, status=415)
            text = f"Cannot process the message because the content type '{content_type[:60]}' was not "
            text += "the expected type 'text/xml; charset=utf-8'."
            return ApiResponse(415, text.encode(), "text/plain; charset=utf-8")
        try:
            op = operation(headers.get("soapaction"))
            request = parse(body, op)
        except BadRequest as exc:
            self._note(entry, status=500)
            return ApiResponse(500, fault(str(exc)), CONTENT_TYPE)
        self._note(entry, operation=op, fields=_fields(request))
        location = self._location(headers)
        self._note(entry, tokens_ok=location is not None)
        style = self.style
        if location is None:
            code, message, answer = 4, message_for(op, 4), b""
        else:
            with location.lock:  # the party rendered is the one the code was decided on
                code, message = self._answer(location, request)
                if isinstance(request, GetPartyRequest):
                    party = location.party(request.business_date, request.table_id) if code == 0 else None
                    answer = get_party_answer(code, message, party, style)
        if location is None and isinstance(request, GetPartyRequest):
            answer = get_party_answer(code, message, None, style)
        if isinstance(request, ApplyPaymentRequest):
            answer = apply_payment_answer(code, message, style)
        self._note(entry, status=200, result_code=code)
        return ApiResponse(200, answer, CONTENT_TYPE)

    def _location(self, headers: Mapping[str, str]) -> Location | None:
        access = headers.get("accesstoken", "").encode()
        token = headers.get("locationtoken", "").encode()
        with self._lock:
            for (a, t), location in self._locations.items():
                # both compared every time, so the answer's timing does not tell which one was wrong
                same_a = hmac.compare_digest(access, a.encode())
                same_t = hmac.compare_digest(token, t.encode())
                if same_a and same_t:
                    return location
        return None

    def _take_forced(self, op: str) -> ForcedCode | None:
        with self._lock:
            for rule in self._forced:
                if rule.operation == op and rule.times != 0:
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def _answer(self, location: Location, request: GetPartyRequest | ApplyPaymentRequest) -> tuple[int, str]:
        op = "GetParty" if isinstance(request, GetPartyRequest) else "ApplyPayment"
        forced = self._take_forced(op)
        if forced is not None and not forced.after_applying:
            return forced.code, message_for(op, forced.code)
        if isinstance(request, GetPartyRequest):
            if location.party(request.business_date, request.table_id) is None:
                return 101, message_for(op, 101)
            return 0, "Success"
        if request.payment_id != 0:
            code, message = 2, "Only new payments (Id 0) can be applied"
        else:
            code, message = location.apply_payment(
                request.order_id, request.amount, request.tender_id, request.tip, request.reference
            )
        if forced is not None:
            return forced.code, message_for(op, forced.code)
        return code, message

    def control(self, method: str, path: str, query: str, body: bytes) -> ApiResponse:
        """One ``/_emulator/...`` control request (``control.py``)."""
        return control(self, method, path, query, body)


def _fields(request: GetPartyRequest | ApplyPaymentRequest) -> dict[str, Any]:
    if isinstance(request, GetPartyRequest):
        return {"business_date": request.business_date.isoformat(), "table_id": request.table_id}
    return {
        "order_id": request.order_id,
        "amount": request.amount,
        "payment_id": request.payment_id,
        "reference": dict(request.reference),
        "tender_id": request.tender_id,
        "tip": request.tip,
    }


def _handler_for(emulator: BrinkEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Microsoft-IIS/10.0"
        timeout = 60  # idle keep-alive connections are closed after this

        def log_message(self, format: str, *args: object) -> None:
            pass  # tests and the demo read requests() and stats(), not an access log

        def do_GET(self) -> None:
            self._dispatch()

        def do_POST(self) -> None:
            self._dispatch()

        def do_DELETE(self) -> None:
            self._dispatch()

        def _dispatch(self) -> None:
            length = self.headers.get("Content-Length", "0")
            size = int(length) if length.isdigit() else -1
            if not 0 <= size <= MAX_BODY_BYTES:
                self.close_connection = True  # the body is left unread
                send_body(self, 413, b"Request Entity Too Large", "text/plain; charset=utf-8")
                return
            body = self.rfile.read(size) if size else b""
            split = urlsplit(self.path)
            if split.path == CONTROL_PREFIX or split.path.startswith(CONTROL_PREFIX + "/"):
                self._send(emulator.control(self.command, split.path, split.query, body))
                return
            if split.path != SERVICE_PATH:
                self._send(ApiResponse(404, b"Not Found", "text/plain; charset=utf-8"))
                return
            if self.command != "POST":
                self._send(
                    ApiResponse(405, b"Method Not Allowed", "text/plain; charset=utf-8", {"Allow": "POST"})
                )
                return
            self._serve(body)

        def _serve(self, body: bytes) -> None:
            injector = emulator.faults
            soap_action = self.headers.get("SOAPAction")
            route = route_kind(soap_action)
            injector.count_request(route)
            if injector.down:
                injector.record_down()
                emulator.log_request(soap_action, body, "down")
                drop_connection(self)
                return
            plan = injector.plan(self.command, route)
            planned = plan.before or plan.after
            entry = emulator.log_request(soap_action, body, None if planned is None else planned.kind.value)
            if plan.delay_ms:
                time.sleep(plan.delay_ms / 1000)
            if plan.before is not None:
                run_before_fault(self, plan.before, injector)
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                response = emulator.handle(headers, body, entry)
            except Exception as exc:  # an emulator bug must look like a server error, not kill the thread
                print(f"brink emulator: {type(exc).__name__}: {exc}", file=sys.stderr)
                response = ApiResponse(500, fault("Internal error", "s:Server"), CONTENT_TYPE)
            try:
                if plan.after is not None:
                    run_after_fault(
                        self, plan.after, injector, response.status, response.body, response.content_type
                    )
                else:
                    self._send(response)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (its deadline); what was applied stays

        def _send(self, response: ApiResponse) -> None:
            send_body(self, response.status, response.body, response.content_type, response.headers)

    return Handler
