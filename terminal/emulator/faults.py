"""Fault injection for the local server emulators: rules that delay, hang, drip, drop or garble answers.

Generic on purpose: nothing here knows about wallets. An emulator classifies each request into a route
kind (any string, e.g. "transaction"), asks ``FaultInjector.plan`` what to do, and carries the plan out
with ``run_before_fault`` / ``run_after_fault`` on its ``http.server`` handler.

Phases: a *before* fault replaces the request entirely (nothing is applied); an *after* fault lets the
emulator apply the request and then spoils the answer. ``garbage_html`` is a before fault (a captive
portal or proxy page answers instead of the server); the other garbage kinds are after faults (the
server committed, the body got mangled on the way). A hang, once released or past its cap, closes the
connection without applying anything. A drip sends a whole answer (status line, headers, body) one byte
every ``ms`` milliseconds, as a struggling server or proxy does: each read is quick, the whole is not.
``drip_before`` trickles a proxy's 504 page and applies nothing; ``drip_after`` applies the request and
trickles the real answer. A drip stops at ``cap_s`` or on ``clear()`` by closing the connection;
``set_rules`` and a JSON ``rules`` list leave drips already under way running, as a recovered server
leaves a connection that is still being dripped on.

A *latency profile* adds a delay to every request by method, drawn per request: ``fast`` (none, the
default) or ``real`` (reads 20–60 ms, writes 150–400 ms, as a real pretix server under load answers,
WALLET-SERVER-NOTES.md). It can be switched at run time (``{"profile": "real"}`` on the control endpoint)
and draws from its own random stream, so switching it never shifts a seeded fault sequence.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FaultKind(StrEnum):
    """What a fault does to a request."""

    LATENCY = "latency"  # fixed delay before handling
    LATENCY_SPIKE = "latency_spike"  # like latency, meant to be used with a probability
    HANG = "hang"  # accept, never answer until cleared or cap_s passes, then close; nothing applied
    DROP_BEFORE = "drop_before"  # close without a response; nothing applied
    DROP_AFTER = "drop_after"  # apply, then close without a response
    ERROR500_BEFORE = "error500_before"  # HTML 500; nothing applied
    ERROR500_AFTER = "error500_after"  # apply, then HTML 500
    RATE_LIMIT_429 = "rate_limit_429"  # 429 with Retry-After; nothing applied
    GARBAGE_HTML = "garbage_html"  # 200 text/html page; nothing applied
    GARBAGE_TRUNCATED = "garbage_truncated"  # apply, then the real status with half of the JSON body
    GARBAGE_CONTENT_TYPE = "garbage_content_type"  # apply, then the real body labelled text/html
    GARBAGE_OVERSIZED = "garbage_oversized"  # apply, then the real status with a body of `size` bytes
    DRIP_BEFORE = "drip_before"  # a proxy's 504 page a byte every `ms` for at most `cap_s`; nothing applied
    DRIP_AFTER = "drip_after"  # apply, then the real answer one byte every `ms` for at most `cap_s`


DELAY_KINDS = frozenset({FaultKind.LATENCY, FaultKind.LATENCY_SPIKE})
DRIP_KINDS = frozenset({FaultKind.DRIP_BEFORE, FaultKind.DRIP_AFTER})
AFTER_KINDS = frozenset(
    {
        FaultKind.DROP_AFTER,
        FaultKind.ERROR500_AFTER,
        FaultKind.GARBAGE_TRUNCATED,
        FaultKind.GARBAGE_CONTENT_TYPE,
        FaultKind.GARBAGE_OVERSIZED,
        FaultKind.DRIP_AFTER,
    }
)
DOWN = "down"  # counted among applied faults when the down switch closes a connection
_RULE_FIELDS = frozenset(
    {"kind", "probability", "times", "method", "route", "ms", "retry_after", "cap_s", "size"}
)


@dataclass(frozen=True)
class LatencyProfile:
    """Answer times by method, drawn uniformly per request: ``read_ms`` for GET/HEAD, ``write_ms`` else."""

    name: str
    read_ms: tuple[int, int]
    write_ms: tuple[int, int]

    def draw_ms(self, method: str, rng: random.Random) -> int:
        low, high = self.read_ms if method.upper() in ("GET", "HEAD") else self.write_ms
        return rng.randint(low, high)


LATENCY_PROFILES: dict[str, LatencyProfile | None] = {
    "fast": None,
    # Medians seen on a real pretix with the wallet plugin: GET wallet ~30 ms, POST one item ~190 ms,
    # 150-400 ms under load or behind Wi-Fi.
    "real": LatencyProfile("real", read_ms=(20, 60), write_ms=(150, 400)),
}


class FaultConfigError(ValueError):
    """A fault rule or fault configuration is malformed; the message says which field and why."""


@dataclass
class FaultRule:
    """One fault: fires with ``probability`` on matching requests, at most ``times`` times (None: forever)."""

    kind: FaultKind
    probability: float = 1.0
    times: int | None = None
    method: str | None = None  # e.g. "POST"; None matches every method
    route: str | None = None  # route kind named by the emulator, e.g. "transaction"; None matches all
    ms: int = 0  # delay for latency kinds; pause between two bytes for drip kinds
    retry_after: int = 1  # seconds, for rate_limit_429
    cap_s: float = 30.0  # longest hang or drip
    size: int = 2_000_000  # bytes, for garbage_oversized

    def __post_init__(self) -> None:
        self.kind = FaultKind(self.kind)
        if not 0.0 <= self.probability <= 1.0:
            raise FaultConfigError(f"fault probability {self.probability} must be between 0 and 1")
        if self.times is not None and self.times < 0:
            raise FaultConfigError(f"fault times {self.times} must be 0 or more (or null for always)")
        if self.ms < 0 or self.retry_after < 0 or self.cap_s < 0 or self.size < 0:
            raise FaultConfigError("fault ms, retry_after, cap_s and size must not be negative")
        if (self.kind in DELAY_KINDS or self.kind in DRIP_KINDS) and self.ms == 0:
            raise FaultConfigError(f"a {self.kind} fault needs ms > 0")
        if self.method is not None:
            self.method = self.method.upper()

    def matches(self, method: str, route: str) -> bool:
        if self.times == 0:
            return False
        if self.method is not None and self.method != method.upper():
            return False
        return self.route is None or self.route == route

    @classmethod
    def from_json(cls, obj: object) -> FaultRule:
        if not isinstance(obj, dict):
            raise FaultConfigError(f"a fault rule must be a JSON object, got {type(obj).__name__}")
        unknown = set(obj) - _RULE_FIELDS
        if unknown:
            raise FaultConfigError(
                f"unknown fault rule field(s) {sorted(unknown)}; use {sorted(_RULE_FIELDS)}"
            )
        kind = obj.get("kind")
        if kind not in {k.value for k in FaultKind}:
            raise FaultConfigError(f"unknown fault kind {kind!r}; use one of {[k.value for k in FaultKind]}")
        try:
            return cls(
                kind=FaultKind(kind),
                probability=float(obj.get("probability", 1.0)),
                times=None if obj.get("times") is None else int(obj["times"]),
                method=_optional_str(obj, "method"),
                route=_optional_str(obj, "route"),
                ms=int(obj.get("ms", 0)),
                retry_after=int(obj.get("retry_after", 1)),
                cap_s=float(obj.get("cap_s", 30.0)),
                size=int(obj.get("size", 2_000_000)),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, FaultConfigError):
                raise
            raise FaultConfigError(f"fault rule {obj} has a field of the wrong type: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "probability": self.probability,
            "times": self.times,
            "method": self.method,
            "route": self.route,
            "ms": self.ms,
            "retry_after": self.retry_after,
            "cap_s": self.cap_s,
            "size": self.size,
        }


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise FaultConfigError(f"fault rule field {key!r} must be a string or null")


@dataclass(frozen=True)
class FaultPlan:
    """What to do with one request: an added delay and at most one before or after fault."""

    delay_ms: int = 0
    before: FaultRule | None = None
    after: FaultRule | None = None


class FaultInjector:
    """Thread-safe, seeded set of fault rules plus the down switch, with counters of what it did."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rules: list[FaultRule] = []
        self._down = False
        self._applied: Counter[str] = Counter()
        self._requests: Counter[str] = Counter()
        self._release = threading.Event()
        self._profile: LatencyProfile | None = None
        self._latency_rng = random.Random(seed ^ 0x1A7E)

    # -- configuration ---------------------------------------------------------------------------------

    def set_rules(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules = list(rules)

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def inject(self, kind: FaultKind | str, **fields: Any) -> FaultRule:
        """Add a rule built from keyword fields (as in ``FaultRule``) and return it."""
        rule = FaultRule.from_json({"kind": str(kind), **fields})
        self.add(rule)
        return rule

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def clear(self) -> None:
        """Remove every rule, switch ``down`` off and release hanging requests."""
        with self._lock:
            self._rules = []
            self._down = False
            release, self._release = self._release, threading.Event()
        release.set()

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng = random.Random(seed)

    @property
    def profile(self) -> str:
        """The name of the latency profile in use ("fast" or "real")."""
        with self._lock:
            return "fast" if self._profile is None else self._profile.name

    def set_profile(self, name: str) -> None:
        """Switch the latency profile ("fast" or "real"); takes effect with the next request."""
        if name not in LATENCY_PROFILES:
            raise FaultConfigError(f"unknown latency profile {name!r}; use one of {sorted(LATENCY_PROFILES)}")
        with self._lock:
            self._profile = LATENCY_PROFILES[name]

    @property
    def down(self) -> bool:
        return self._down

    def set_down(self, down: bool) -> None:
        with self._lock:
            self._down = down

    def configure(self, obj: object) -> None:
        """Apply a JSON configuration: {"clear", "seed", "rules" (replace), "add" (append), "down",
        "profile" ("fast" or "real"; ``clear`` leaves the profile as it is)}."""
        if not isinstance(obj, dict):
            raise FaultConfigError("fault configuration must be a JSON object")
        unknown = set(obj) - {"clear", "seed", "rules", "add", "down", "profile"}
        if unknown:
            raise FaultConfigError(f"unknown fault configuration key(s) {sorted(unknown)}")
        rules = _rule_list(obj, "rules")
        added = _rule_list(obj, "add")
        down = obj.get("down")
        if down is not None and not isinstance(down, bool):
            raise FaultConfigError("fault configuration 'down' must be true or false")
        seed = obj.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise FaultConfigError("fault configuration 'seed' must be an integer")
        if obj.get("clear"):
            self.clear()
        if seed is not None:
            self.reseed(seed)
        if rules is not None:
            self.set_rules(rules)
        for rule in added or []:
            self.add(rule)
        if down is not None:
            self.set_down(down)
        profile = obj.get("profile")
        if profile is not None:
            if not isinstance(profile, str):
                raise FaultConfigError('fault configuration \'profile\' must be "fast" or "real"')
            self.set_profile(profile)

    def state(self) -> dict[str, Any]:
        with self._lock:
            profile = "fast" if self._profile is None else self._profile.name
            return {"rules": [r.to_json() for r in self._rules], "down": self._down, "profile": profile}

    # -- per request -----------------------------------------------------------------------------------

    def count_request(self, route: str) -> None:
        with self._lock:
            self._requests[route] += 1

    def record_down(self) -> None:
        with self._lock:
            self._applied[DOWN] += 1

    def plan(self, method: str, route: str) -> FaultPlan:
        """Roll the dice for one request; every fault chosen here is counted as applied."""
        delay = 0
        action: FaultRule | None = None
        with self._lock:
            if self._profile is not None:
                delay += self._profile.draw_ms(method, self._latency_rng)
            for rule in self._rules:
                if not rule.matches(method, route):
                    continue
                if rule.kind in DELAY_KINDS:
                    if self._fires(rule):
                        delay += rule.ms
                        self._applied[rule.kind.value] += 1
                elif action is None and self._fires(rule):
                    action = rule
                    self._applied[rule.kind.value] += 1
        if action is None:
            return FaultPlan(delay_ms=delay)
        if action.kind in AFTER_KINDS:
            return FaultPlan(delay_ms=delay, after=action)
        return FaultPlan(delay_ms=delay, before=action)

    def _fires(self, rule: FaultRule) -> bool:
        # Only a real probability consumes randomness, so "next N" rules never shift a seeded campaign.
        if rule.probability < 1.0 and self._rng.random() >= rule.probability:
            return False
        if rule.times is not None:
            rule.times -= 1
        return True

    def wait_for_release(self, cap_s: float) -> bool:
        """Block a hanging request until ``clear()`` or ``cap_s`` seconds; True if released."""
        return self.release_signal().wait(cap_s)

    def release_signal(self) -> threading.Event:
        """The event the next ``clear()`` sets: taken once by a drip, so no clear in between is missed."""
        with self._lock:
            return self._release

    # -- counters --------------------------------------------------------------------------------------

    def applied(self) -> dict[str, int]:
        with self._lock:
            return dict(self._applied)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": sum(self._requests.values()),
                "requests_by_route": dict(self._requests),
                "faults": dict(self._applied),
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._applied.clear()
            self._requests.clear()


def _rule_list(obj: dict[str, Any], key: str) -> list[FaultRule] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise FaultConfigError(f"fault configuration {key!r} must be a list of rules")
    return [FaultRule.from_json(item) for item in value]


# -- carrying faults out on an http.server handler -------------------------------------------------------

_ERROR500_PAGE = (
    b'<!doctype html>\n<html lang="en"><head><title>Server Error (500)</title></head>'
    b"<body><h1>Server Error (500)</h1><p></p></body></html>\n"
)
_GATEWAY_TIMEOUT_PAGE = (
    b"<!doctype html>\n<html><head><title>504 Gateway Time-out</title></head>"
    b"<body><h1>504 Gateway Time-out</h1><p>The upstream server did not answer in time.</p></body></html>\n"
)
_PORTAL_PAGE = (
    b"<!doctype html>\n<html><head><title>Wi-Fi login</title></head>"
    b"<body><h1>Welcome to the venue Wi-Fi</h1><p>Please accept the terms to continue.</p></body></html>\n"
)


def send_body(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Write a complete response with Content-Length, so keep-alive connections stay usable."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)
    handler.wfile.flush()


def response_bytes(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> bytes:
    """The bytes ``send_body`` would write (status line, headers, body), for sending them another way."""
    phrase = handler.responses.get(status, ("",))[0]
    lines = [
        f"{handler.protocol_version} {status} {phrase}",
        f"Server: {handler.version_string()}",
        f"Date: {handler.date_time_string()}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "strict")
    return head if handler.command == "HEAD" else head + body


def drip(
    handler: BaseHTTPRequestHandler,
    rule: FaultRule,
    injector: FaultInjector,
    status: int,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Send a whole answer one byte every ``rule.ms`` ms; past ``rule.cap_s`` s or on ``clear()``, hang up.

    An answer that goes out complete leaves the connection usable (keep-alive), as a slow server's would.
    """
    raw = response_bytes(handler, status, body, content_type, headers)
    release = injector.release_signal()
    pause_s = rule.ms / 1000
    stop_at = time.monotonic() + rule.cap_s
    try:
        for i in range(len(raw)):
            if i > 0 and not _drip_pause(release, pause_s, stop_at):
                drop_connection(handler)
                return
            handler.wfile.write(raw[i : i + 1])
            handler.wfile.flush()
    except OSError:  # the client gave up (its deadline): what it was sent stays sent
        handler.close_connection = True


def _drip_pause(release: threading.Event, pause_s: float, stop_at: float) -> bool:
    """Wait one pause between two bytes; False once the drip must stop (``clear()``, or past its cap)."""
    left = stop_at - time.monotonic()
    if left <= 0 or release.wait(min(pause_s, left)):
        return False
    return time.monotonic() < stop_at


def drop_connection(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection without a response, as a crashed server or a cut network would."""
    handler.close_connection = True
    try:
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer may already be gone; the connection is closed either way


def run_before_fault(handler: BaseHTTPRequestHandler, rule: FaultRule, injector: FaultInjector) -> None:
    """Answer (or refuse to answer) a request instead of handling it; nothing is applied."""
    if rule.kind is FaultKind.HANG:
        injector.wait_for_release(rule.cap_s)
        drop_connection(handler)
    elif rule.kind is FaultKind.DROP_BEFORE:
        drop_connection(handler)
    elif rule.kind is FaultKind.ERROR500_BEFORE:
        send_body(handler, 500, _ERROR500_PAGE, "text/html; charset=utf-8")
    elif rule.kind is FaultKind.RATE_LIMIT_429:
        detail = {"detail": f"Request was throttled. Expected available in {rule.retry_after} seconds."}
        send_body(
            handler,
            429,
            json.dumps(detail).encode(),
            "application/json",
            {"Retry-After": str(rule.retry_after)},
        )
    elif rule.kind is FaultKind.GARBAGE_HTML:
        send_body(handler, 200, _PORTAL_PAGE, "text/html; charset=utf-8")
    elif rule.kind is FaultKind.DRIP_BEFORE:
        drip(handler, rule, injector, 504, _GATEWAY_TIMEOUT_PAGE, "text/html; charset=utf-8")
    else:
        raise ValueError(f"{rule.kind} is not a before fault")


def run_after_fault(
    handler: BaseHTTPRequestHandler,
    rule: FaultRule,
    injector: FaultInjector,
    status: int,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Spoil the answer (``status``, ``body``, ``headers``) to a request the emulator has already applied."""
    if rule.kind is FaultKind.DRIP_AFTER:
        drip(handler, rule, injector, status, body, content_type, headers)
    elif rule.kind is FaultKind.DROP_AFTER:
        drop_connection(handler)
    elif rule.kind is FaultKind.ERROR500_AFTER:
        send_body(handler, 500, _ERROR500_PAGE, "text/html; charset=utf-8")
    elif rule.kind is FaultKind.GARBAGE_TRUNCATED:
        send_body(handler, status, body[: max(1, len(body) // 2)], content_type)
    elif rule.kind is FaultKind.GARBAGE_CONTENT_TYPE:
        send_body(handler, status, body, "text/html; charset=utf-8")
    elif rule.kind is FaultKind.GARBAGE_OVERSIZED:
        padding = b" " * max(0, rule.size - len(body))
        send_body(handler, status, body + padding, content_type)
    else:
        raise ValueError(f"{rule.kind} is not an after fault")


class FaultableHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that tracks its open connections, so stop() really closes pooled ones."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.connections_accepted = 0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Headers and body go out in separate writes; without TCP_NODELAY the body waits ~40 ms for an ACK.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._open_lock:
            self._open.add(request)
            self.connections_accepted += 1
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a killed terminal, a timeout) is normal here, not a
        # traceback on stderr.
        logging.getLogger(__name__).debug("emulator request from %s failed", client_address, exc_info=True)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
            self._open.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the peer
                sock.shutdown(socket.SHUT_RDWR)
