"""The typed outcomes of the two Ordering calls (GetParty, ApplyPayment); a call never raises for the network.

ResultCodes (seed 003 and INTEGRATION-NOTES.md, PAR Brink): 0 ok, 1 unknown error, 2 invalid request,
3 server unavailable, 4 access denied, 101 no party (GetParty) / payment could not be processed
(ApplyPayment), 102 order not found, 103 order already closed, 104 store did not respond (the payment MAY
have been applied), 106 tender error. Every text here came from the server and is printable.
"""

from __future__ import annotations

from dataclasses import dataclass

from terminal.brink.party import Party


@dataclass(frozen=True)
class PartyFound:
    """ResultCode 0 with a party that could be read to the cent."""

    party: Party


@dataclass(frozen=True)
class NoParty:
    """ResultCode 101: no open party at that table on that business date."""

    message: str = ""


@dataclass(frozen=True)
class PosUnavailable:
    """ResultCode 1 (unknown error) or 3 (server unavailable): ask again later."""

    code: int
    message: str = ""


@dataclass(frozen=True)
class InvalidRequest:
    """ResultCode 2: Brink refused the request as invalid (a table id it does not know, a wrong date)."""

    message: str = ""


@dataclass(frozen=True)
class AccessDenied:
    """ResultCode 4, or HTTP 401/403: the access or location token is wrong. Nothing was applied."""

    message: str = ""
    status: int | None = None  # the HTTP status when the refusal was HTTP's, not a ResultCode

    @property
    def code(self) -> str:
        """The refusal's code: ``HTTP 401``/``HTTP 403``, or ``ResultCode 4``."""
        return f"HTTP {self.status}" if self.status is not None else "ResultCode 4"

    def describe(self) -> str:
        """The code with the POS's words, when it gave any besides the code (``ResultCode 4: ...``)."""
        words = self.message if self.message != self.code else ""
        return f"{self.code}: {words}" if words else self.code


@dataclass(frozen=True)
class Fault:
    """A SOAP Fault (HTTP 500): ``code`` is its faultcode (e.g. ``s:Client``), ``text`` its faultstring."""

    code: str
    text: str


@dataclass(frozen=True)
class BillUnreadable:
    """ResultCode 0, but the party cannot be read to the cent (an amount that is not a whole number of
    cents, a field missing): the bill cannot be paid here ("bill unreadable, pay at the till")."""

    reason: str


@dataclass(frozen=True)
class Unreachable:
    """No usable answer: connection trouble, the deadline, a 5xx that is not a Fault, a body that is not
    the service's answer. Ask again later."""

    reason: str


PartyOutcome = (
    PartyFound
    | NoParty
    | PosUnavailable
    | InvalidRequest
    | AccessDenied
    | Fault
    | BillUnreadable
    | Unreachable
)


@dataclass(frozen=True)
class PaymentApplied:
    """ApplyPayment ResultCode 0: the payment is on the order."""

    message: str = ""


@dataclass(frozen=True)
class PaymentRefused:
    """ResultCode 2 (invalid request), 101 (could not be processed) or 106 (tender error): not applied;
    sending the same request again will not help."""

    code: int
    message: str = ""


@dataclass(frozen=True)
class OrderGone:
    """ResultCode 102: the order is not found (any more). Not applied."""

    message: str = ""


@dataclass(frozen=True)
class OrderClosed:
    """ResultCode 103: the order was closed meanwhile. Not applied."""

    message: str = ""


@dataclass(frozen=True)
class PaymentUnknown:
    """No definitive answer: ResultCode 1, 3 or 104, a Fault, a timeout or a dropped connection after the
    request may have left, an answer that cannot be read. ``maybe_applied`` is False only when the request
    provably never left this machine (connection refused, still connecting at the deadline); otherwise
    the order must be read again (GetParty: a payment carrying this key) before anything is re-sent."""

    reason: str
    maybe_applied: bool = True


PaymentOutcome = PaymentApplied | PaymentRefused | OrderGone | OrderClosed | AccessDenied | PaymentUnknown
