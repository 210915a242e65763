"""BrinkClient: GetParty and ApplyPayment on PAR Brink's Ordering service, typed outcomes, never raising for
the network.

One POST per call under an overall deadline (connect, send, headers, the whole body:
``terminal.net.deadline``) on the shared ``ServerLink`` (no proxy or CA from the environment; the body read
raw and capped, so a 10 MB answer is cut at the cap, never held). The call knows whether its request may
have reached the server: an ApplyPayment stopped before it had a connection (refused, still connecting)
provably applied nothing; anything later may have. The client never retries: the caller
settles an unknown payment by reading the party again. The tokens travel only in their headers: never in
a repr, a log line or an outcome.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiohttp

from terminal.brink.envelope import apply_payment_body, get_party_body, soap_action
from terminal.brink.outcomes import PartyOutcome, PaymentOutcome, PaymentUnknown, Unreachable
from terminal.brink.parse import DEFAULT_MAX_ANSWER_BYTES, party_outcome, payment_outcome
from terminal.model import printable
from terminal.net.deadline import Deadline, SendWatch
from terminal.net.transport import NOT_SENT, ServerLink, read_capped
from terminal.service.secret import Secret

CONNECT_TIMEOUT_S = 3.0
USER_AGENT = "taptill-brink/0.1"
CONTENT_TYPE = "text/xml; charset=utf-8"


@dataclass(frozen=True)
class _Answer:
    """A whole answer: its status and body (at most the cap)."""

    status: int
    data: bytes


@dataclass(frozen=True)
class _NoAnswer:
    """No usable answer; ``may_have_arrived``: the request may have reached the server."""

    reason: str
    may_have_arrived: bool


class BrinkClient:
    """The Ordering service at ``url`` (``https://x.parpos.com/Ordering.svc``) for one location, over one
    pooled keep-alive connection; ``async with`` closes it."""

    def __init__(
        self,
        url: str,
        access_token: Secret,
        location_token: Secret,
        timeout_s: float = 5.0,
        *,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes
        self._access_token = access_token
        self._location_token = location_token
        self._http = ServerLink(
            max_connections=1,
            keepalive_s=30.0,
            headers={"Accept": "text/xml", "User-Agent": USER_AGENT},
        )

    def __repr__(self) -> str:
        return f"BrinkClient({self.url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def use_tokens(self, access_token: Secret, location_token: Secret) -> bool:
        """Send these tokens from now on (their files were rewritten); False if both are the same."""
        if (access_token, location_token) == (self._access_token, self._location_token):
            return False
        self._access_token, self._location_token = access_token, location_token
        return True

    async def get_party(
        self, business_date: dt.date, table_id: int, *, timeout: float | None = None
    ) -> PartyOutcome:
        """GetParty: the open party at ``table_id`` on ``business_date`` (``terminal.brink.business_date``),
        within ``timeout`` seconds (default the client's ``timeout_s``)."""
        answer = await self._post("GetParty", get_party_body(business_date, table_id), timeout)
        if isinstance(answer, _NoAnswer):
            return Unreachable(answer.reason)
        return party_outcome(answer.status, answer.data, max_bytes=self.max_answer_bytes)

    async def apply_payment(
        self, order_id: int, amount_cents: int, tender_id: int, key: str, *, timeout: float | None = None
    ) -> PaymentOutcome:
        """ApplyPayment: ``amount_cents`` (> 0) on ``order_id`` with tender ``tender_id``, carrying ``key``
        (``terminal.brink.bill.payment_key``) as ReferenceDetails ``taptill_key``, within ``timeout`` s.
        Raises ValueError only for arguments Brink could not take (an amount of 0, a key not ASCII)."""
        body = apply_payment_body(order_id, amount_cents, tender_id, key)
        answer = await self._post("ApplyPayment", body, timeout)
        if isinstance(answer, _NoAnswer):
            return PaymentUnknown(answer.reason, maybe_applied=answer.may_have_arrived)
        return payment_outcome(answer.status, answer.data, max_bytes=self.max_answer_bytes)

    async def _post(self, operation: str, body: bytes, timeout: float | None) -> _Answer | _NoAnswer:
        """One POST of ``body`` under the deadline; the whole answer, or why there is none."""
        total_s = self.timeout_s if timeout is None else timeout
        headers = {
            "Content-Type": CONTENT_TYPE,
            "SOAPAction": soap_action(operation),
            "AccessToken": self._access_token.reveal(),
            "LocationToken": self._location_token.reveal(),
        }
        deadline = Deadline.after(total_s)
        watch = SendWatch()
        status: int | None = None
        try:
            async with deadline.scope():
                response = await self._http.send(
                    "POST",
                    self.url,
                    headers=headers,
                    content=body,
                    timeout=deadline.client_timeout(CONNECT_TIMEOUT_S),
                    watch=watch,
                )
                try:
                    status = response.status
                    raw = await read_capped(response, self.max_answer_bytes)
                finally:
                    response.release()
        except NOT_SENT as exc:
            # The request never left this machine: nothing can have been applied.
            return _NoAnswer(f"{operation}: cannot connect to PAR Brink ({_describe(exc)})", False)
        except TimeoutError:
            if status is None:
                return _NoAnswer(f"{operation}: {deadline.describe()}", watch.may_have_arrived)
            return _NoAnswer(f"{operation}: HTTP {status}, body not complete within {total_s:g} s", True)
        except (aiohttp.ClientError, OSError) as exc:
            said = "no answer" if status is None else f"HTTP {status}, the answer broke off"
            return _NoAnswer(f"{operation}: {said} ({_describe(exc)})", True)
        if raw.problem is not None:
            return _NoAnswer(f"{operation}: HTTP {status}, {raw.problem}", True)
        return _Answer(status, raw.data)


def _describe(exc: BaseException) -> str:
    # aiohttp's messages name the host, the URL and the OS error, never headers: no token in them.
    text = printable(str(exc), 200) if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
