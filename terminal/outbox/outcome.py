"""What a destination says of one attempt, and of settling a record whose earlier attempt may have landed.

Every destination classifies its server's answer into one of five outcomes; the delivery loop acts on the
outcome alone (done, rejected, retry, wait), so no destination keeps its own retry rules. A batching
destination whose records end differently in one attempt returns ``Each``, one outcome per part.

Settling (the destination's own rule for an attempt that may have been applied) ends in one of
Booked / NotBooked / Unclear / Wait, or ``GaveUp`` for a destination that delivers at most once (it never
re-sends a maybe-applied record and counts it instead): a deviation from the four results the design
names, because at-most-once is neither booked nor not booked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Done:
    """The server applied the record (2xx; or it had already). ``result`` is the destination's (a balance)."""

    result: object = None
    detail: str = ""


@dataclass(frozen=True)
class Rejected:
    """A definitive refusal: sending it again cannot help. ``code`` is the destination's classification."""

    reason: str
    code: str = ""


@dataclass(frozen=True)
class Ambiguous:
    """No definitive answer (a timeout after sending, a 5xx): the record stays; its rule settles it later.

    ``status`` is set when the server did answer, with an error status: it is up, this request fails.
    """

    detail: str
    may_have_applied: bool = True
    retry_after_s: float | None = None
    status: int | None = None


@dataclass(frozen=True)
class Unreachable:
    """The request provably never arrived (connection refused, the login refused): send it again later."""

    detail: str
    retry_after_s: float | None = None


@dataclass(frozen=True)
class RateLimited:
    """The server asks us to wait ``wait_s`` seconds before any further request (429)."""

    wait_s: float
    detail: str = "rate limited"


@dataclass(frozen=True)
class Stalled:
    """This attempt did not happen: the journal cannot be written (``storage``) or another request for the
    same lane is under way. Nothing changed; the loop pauses or moves on.

    ``answer``: the request did go out, and this is what the server answered; only the journal could not
    record it (the record stays as ``begin`` left it, maybe sent, for settling once the journal works).
    The tap path still acts on it: a guest whose debit was booked is served."""

    detail: str
    storage: bool = False
    answer: Outcome | Each | None = None


Outcome = Done | Rejected | Ambiguous | Unreachable | RateLimited | Stalled


@dataclass(frozen=True)
class Each:
    """A batch whose records end differently: each part (records, outcome) is applied on its own."""

    parts: tuple[tuple[tuple[Any, ...], Outcome | Settled], ...] = field(default_factory=tuple)


# --- settling a maybe-applied record -----------------------------------------------------------------


@dataclass(frozen=True)
class Booked:
    """The earlier attempt was applied: the record is done."""

    result: object = None
    detail: str = ""


@dataclass(frozen=True)
class NotBooked:
    """The earlier attempt was not applied. ``send_again``: attempt now (``basis`` is what settling learnt
    that the attempt builds on, e.g. a fresh balance); otherwise the record ends rejected with ``reason``."""

    send_again: bool
    reason: str = ""
    basis: object = None
    code: str = ""


@dataclass(frozen=True)
class Unclear:
    """Cannot tell: the record is held until a person settles it (``taptill settle``)."""

    detail: str


@dataclass(frozen=True)
class Wait:
    """Too early to tell (a request may still be on its way): ask again in ``seconds``."""

    seconds: float
    reason: str


@dataclass(frozen=True)
class GaveUp:
    """At most once: a maybe-applied record is never sent again; it ends counted as ambiguous."""

    reason: str


Settled = Booked | NotBooked | Unclear | Wait | GaveUp


def settled(result: Outcome | Settled | Each) -> bool:
    """True when ``result`` ended a record for good (the loop looks again at once after one)."""
    if isinstance(result, Each):
        return any(settled(o) for _, o in result.parts)
    return isinstance(result, Done | Rejected | Booked | GaveUp) or (
        isinstance(result, NotBooked) and not result.send_again
    )


def settled_count(result: Outcome | Settled | Each) -> int:
    """How many parts of ``result`` ended their records for good."""
    if isinstance(result, Each):
        return sum(settled_count(o) for _, o in result.parts)
    return int(settled(result))


def parts_of(
    records: Sequence[Any], result: Outcome | Settled | Each
) -> list[tuple[tuple[Any, ...], Outcome | Settled]]:
    """``result`` as (records, outcome) parts: a single outcome applies to all of ``records``."""
    if isinstance(result, Each):
        return list(result.parts)
    return [(tuple(records), result)]
