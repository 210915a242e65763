"""Typed outcomes of wallet calls: expected conditions are values, not exceptions."""

from __future__ import annotations

from dataclasses import dataclass

from terminal.model import TerminalInfo, Wallet


@dataclass(frozen=True)
class Found:
    """The wallet behind a token."""

    wallet: Wallet


@dataclass(frozen=True)
class Applied:
    """The transaction was booked (201/200), or had been already (202, ``already``)."""

    wallet: Wallet | None
    already: bool = False


@dataclass(frozen=True)
class InfoLoaded:
    """Terminal info and products."""

    info: TerminalInfo


@dataclass(frozen=True)
class NotFound:
    """404: the token is not paired to a wallet."""

    detail: str = ""


@dataclass(frozen=True)
class Refused:
    """A definitive refusal (400 bad request, 403 permission): retrying the same request won't help."""

    status: int
    reason: str


@dataclass(frozen=True)
class Unauthorized:
    """401: the API token is wrong; a configuration problem, not the sale's."""

    detail: str = ""


@dataclass(frozen=True)
class Unavailable:
    """No definitive answer: timeout, connection trouble, 5xx, 429, or a body that isn't the API's.

    ``maybe_applied`` is False only when the request provably never reached the server
    (connection refused, connect timeout, 429), so a non-deduplicating server can be re-sent to.
    ``status`` is set when the server did answer, with an error status (5xx): the server is up and this
    request fails, which is not the same as a server that cannot be reached.
    """

    reason: str
    maybe_applied: bool = True
    retry_after_s: float | None = None
    status: int | None = None


WalletOutcome = Found | NotFound | Refused | Unauthorized | Unavailable
TransactionOutcome = Applied | NotFound | Refused | Unauthorized | Unavailable
InfoOutcome = InfoLoaded | Refused | Unauthorized | Unavailable | NotFound
