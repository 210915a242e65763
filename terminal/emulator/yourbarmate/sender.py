"""Posts events to a webhook as yourbarmate does, resending until 200/201, and records every attempt.

yourbarmate counts an event as received only on HTTP 200 or 201 and sends anything else again (202
included; INTEGRATION-NOTES.md). This sender does the same with exponential backoff and jitter, up to
``max_attempts``, and keeps each attempt (status, latency in ms, the wait before the next) so tests and
the bench can see what a receiver answered and how fast. Each attempt has one overall deadline
(``timeout_s``), so a receiver that drips its answer cannot stall a run.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp

from terminal.bench.stats import summary_ms
from terminal.emulator.yourbarmate.bad_bodies import BadBody
from terminal.emulator.yourbarmate.events import cancel_delivery, to_wire
from terminal.net.deadline import Deadline

Method = Literal["POST", "PUT", "PATCH"]
METHODS: tuple[Method, ...] = ("POST", "PUT", "PATCH")
DELIVERED = frozenset({200, 201})
WRONG_CREDENTIALS = "wrong-credentials"


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """The wait in s after failed attempt ``attempt`` (1-based): base × 2^(attempt−1) × U(1, 1.5), ≤ cap.

    The jitter only stretches a wait (never below the doubling), so successive waits grow until the cap.
    """
    return min(cap_s, base_s * 2.0 ** (attempt - 1) * rng.uniform(1.0, 1.5))


@dataclass(frozen=True)
class Attempt:
    """One request: the HTTP ``status`` (None when none came: refused, reset, past the deadline)."""

    number: int  # 1 for the first send of an event
    status: int | None
    latency_ms: float  # from sending the request to the whole answer read (or the failure)
    error: str | None  # why no status came, one line
    wait_ms: float  # backoff slept after this attempt before the next one; 0.0 after the last

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 2),
            "error": self.error,
            "wait_ms": round(self.wait_ms, 2),
        }


@dataclass(frozen=True)
class Sent:
    """One event's (or bad body's) delivery: its ``label``, idempotency ``key`` and every attempt."""

    label: str  # "request-delivery", "cancel-delivery", a bad body's name, or "wrong-credentials"
    key: str | None
    attempts: tuple[Attempt, ...]

    @property
    def status(self) -> int | None:
        """The last attempt's status."""
        return self.attempts[-1].status

    @property
    def delivered(self) -> bool:
        """Whether the receiver took it (200 or 201), which ends yourbarmate's resending."""
        return self.status in DELIVERED

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "key": self.key,
            "delivered": self.delivered,
            "attempts": [a.to_json() for a in self.attempts],
        }


@dataclass(frozen=True)
class RateReport:
    """A steady-rate run: events sent and delivered, and the latency (ms) of answers that delivered them."""

    events_per_s: float
    duration_s: float
    sent: list[Sent] = field(repr=False)
    late_ms_max: float  # how far the slowest start slipped behind its schedule

    def to_json(self) -> dict[str, Any]:
        delivered_ms = [a.latency_ms for s in self.sent for a in s.attempts if a.status in DELIVERED]
        return {
            "events_per_s": self.events_per_s,
            "duration_s": self.duration_s,
            "sent": len(self.sent),
            "delivered": sum(s.delivered for s in self.sent),
            "attempts": sum(len(s.attempts) for s in self.sent),
            "latency_ms": summary_ms(delivered_ms, with_max=True) if delivered_ms else None,
            "late_ms_max": round(self.late_ms_max, 2),
        }


class Sender:
    """A yourbarmate webhook sender to ``url`` with HTTP Basic ``username``/``password`` and ``method``.

    Use as ``async with Sender(...) as sender: await sender.send(event)``. ``max_attempts`` bounds the
    sends of one event; ``backoff_s``/``backoff_cap_s`` (s) shape the waits between them (``backoff_s``
    function); ``timeout_s`` is each attempt's overall deadline. ``log`` holds every ``Sent`` in order.
    ``rng`` seeds keys and jitter for reproducible runs. The password never appears in a repr or record.
    """

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        method: Method = "POST",
        *,
        max_attempts: int = 6,
        backoff_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        timeout_s: float = 10.0,
        connect_s: float = 3.0,
        headers: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method {method!r} is not one yourbarmate offers; use POST, PUT or PATCH")
        if max_attempts < 1:
            raise ValueError(f"max_attempts is {max_attempts}; give 1 or more")
        self.url = url
        self.username = username
        self._password = password
        self.method: Method = method
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_cap_s = backoff_cap_s
        self.timeout_s = timeout_s
        self.connect_s = connect_s
        self.rng = rng if rng is not None else random.Random()
        self.log: list[Sent] = []
        self._headers = dict(headers or {})
        self._client: aiohttp.ClientSession | None = None  # made at the first send, inside the loop

    def __repr__(self) -> str:
        return f"Sender({self.url!r}, {self.username!r}, method={self.method!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def send(self, event: Mapping[str, Any], *, max_attempts: int | None = None) -> Sent:
        """Send ``event`` (a dict from events.py) until 200/201 or ``max_attempts``, always with its key."""
        key = event.get("idempotency_key")
        label = str(event.get("type", "event"))
        return await self.send_body(
            to_wire(event), label=label, key=key if isinstance(key, str) else None, max_attempts=max_attempts
        )

    async def send_body(
        self,
        body: bytes,
        *,
        label: str,
        key: str | None = None,
        content_type: str = "application/json",
        max_attempts: int | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Sent:
        """Send raw ``body`` bytes with yourbarmate's resend rule; ``auth`` overrides the credentials."""
        limit = max_attempts if max_attempts is not None else self.max_attempts
        user, password = auth if auth is not None else (self.username, self._password)
        headers = {"Content-Type": content_type}
        attempts: list[Attempt] = []
        for number in range(1, limit + 1):
            status, latency_ms, error = await self._once(body, headers, _basic(user, password))
            last = status in DELIVERED or number == limit
            wait = 0.0 if last else backoff_s(number, self.backoff_s, self.backoff_cap_s, self.rng)
            attempts.append(Attempt(number, status, latency_ms, error, wait * 1000))
            if last:
                break
            await asyncio.sleep(wait)
        sent = Sent(label, key, tuple(attempts))
        self.log.append(sent)
        return sent

    async def _once(
        self, body: bytes, headers: Mapping[str, str], authorization: str
    ) -> tuple[int | None, float, str | None]:
        if self._client is None:
            self._client = aiohttp.ClientSession(headers=self._headers)
        deadline = Deadline.after(self.timeout_s)
        start = time.perf_counter()
        try:
            async with (
                deadline.scope(),
                self._client.request(
                    self.method,
                    self.url,
                    data=body,
                    headers={**headers, "Authorization": authorization},
                    allow_redirects=False,
                    timeout=deadline.client_timeout(self.connect_s),
                ) as response,
            ):
                await response.read()
        except aiohttp.ConnectionTimeoutError as exc:  # a TimeoutError too, but the connect's own
            return None, _ms_since(start), f"{type(exc).__name__}: {exc}"[:200]
        except TimeoutError:
            return None, _ms_since(start), deadline.describe()
        except (aiohttp.ClientError, OSError) as exc:
            return None, _ms_since(start), f"{type(exc).__name__}: {exc}"[:200]
        return response.status, _ms_since(start), None

    async def send_duplicate(self, event: Mapping[str, Any], times: int = 2) -> list[Sent]:
        """Send ``event`` ``times`` times in a row, each delivered, all with the same idempotency key."""
        return [await self.send(event) for _ in range(times)]

    async def send_reordered(self, request: Mapping[str, Any]) -> tuple[Sent, Sent]:
        """The cancel of ``request`` first, then ``request`` itself (a late first delivery)."""
        cancel = await self.send(cancel_delivery(request, rng=self.rng))
        return cancel, await self.send(request)

    async def send_bad(self, bad: BadBody, *, max_attempts: int | None = None) -> Sent:
        """Send one spoilt body under its name; resent like any event while the answer is not 200/201."""
        return await self.send_body(
            bad.body, label=bad.name, key=bad.key, content_type=bad.content_type, max_attempts=max_attempts
        )

    async def send_wrong_credentials(
        self, event: Mapping[str, Any], *, max_attempts: int | None = None
    ) -> Sent:
        """Send ``event`` with a wrong password (the right user name) under the label "wrong-credentials"."""
        key = event.get("idempotency_key")
        return await self.send_body(
            to_wire(event),
            label=WRONG_CREDENTIALS,
            key=key if isinstance(key, str) else None,
            max_attempts=max_attempts,
            auth=(self.username, self._password + "-not"),
        )

    async def send_rate(
        self,
        events_per_s: float,
        duration_s: float,
        make_event: Callable[[int], Mapping[str, Any]],
        *,
        max_in_flight: int = 64,
    ) -> RateReport:
        """Start event ``make_event(i)`` at t0 + i/``events_per_s`` for ``duration_s`` s, without waiting.

        Starts are on a fixed schedule, not after the previous answer, so a slow receiver does not lower
        the offered rate (up to ``max_in_flight`` events at once; beyond that a start waits and is late).
        Returns when every started event is delivered or has given up.
        """
        if events_per_s <= 0 or duration_s <= 0:
            raise ValueError("events_per_s and duration_s must be above 0")
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(max_in_flight)
        total = max(1, round(events_per_s * duration_s))
        t0 = loop.time()
        late_max = 0.0
        tasks: list[asyncio.Task[Sent]] = []

        async def one(event: Mapping[str, Any]) -> Sent:
            try:
                return await self.send(event)
            finally:
                gate.release()

        for i in range(total):
            due = t0 + i / events_per_s
            await asyncio.sleep(max(0.0, due - loop.time()))
            await gate.acquire()
            late_max = max(late_max, (loop.time() - due) * 1000)
            tasks.append(asyncio.create_task(one(make_event(i))))
        sent = list(await asyncio.gather(*tasks))
        return RateReport(events_per_s, duration_s, sent, late_max)


def _basic(user: str, password: str) -> str:
    """A Basic Authorization value (UTF-8, as httpx's BasicAuth made it)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000
