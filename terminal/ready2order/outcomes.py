"""ready2order's typed values (invoices, products, payment methods, VAT rates, users, grants) and the
outcomes of a call, for the mirror, ``taptill doctor`` and provisioning alike.

Every outcome says whether the request may have been applied (``maybe_applied``): only a create that
may have reached the server and got no definitive answer leaves an invoice that must be searched for
before it is sent again. Amounts are euros as exact ``Decimal``; never float.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, Literal, TypeVar

from terminal.service.secret import Secret

T = TypeVar("T")
# ready2order's two kinds of bearer token (seed 004): the developer token opens only the grant flow, an
# account token only the account's data; either one on the other's paths answers 403.
TokenKind = Literal["developer", "account"]


@dataclass(frozen=True)
class Invoice:
    """An invoice (bill) as the API answers it; ``timestamp`` is the server's, in the account's local time."""

    id: int
    number: str  # invoice_numberFull, e.g. "RG2024/17"
    total: Decimal  # euros, gross
    reference: str | None  # invoice_externalReferenceNumber
    test_mode: bool
    timestamp: str = ""
    cancelled: bool = False
    cancels: int | None = None  # invoice_reference_id: a storno's original (it carries that one's reference)


@dataclass(frozen=True)
class Product:
    """One ready2order product; ``price`` in euros, gross, exactly as the server gave it (None: absent)."""

    id: int
    name: str
    price: Decimal | None = None
    vat_id: int | None = None
    vat_percent: Decimal | None = None  # product_vat: 20 for 20 %
    external_reference: str | None = None
    item_number: str | None = None


@dataclass(frozen=True)
class PaymentMethod:
    id: int
    name: str
    mark_as_paid: bool | None = None


@dataclass(frozen=True)
class VatRate:
    id: int
    percent: Decimal | None  # 20 for 20 %
    name: str = ""


@dataclass(frozen=True)
class User:
    id: int
    name: str  # first and last name, else the user name


# --- outcomes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    """2xx with the new invoice: applied."""

    invoice: Invoice
    maybe_applied = True


@dataclass(frozen=True)
class Found:
    """One page of a search: the invoices on it and how many match in all (``count``)."""

    invoices: tuple[Invoice, ...]
    count: int
    maybe_applied = False


@dataclass(frozen=True)
class Listed(Generic[T]):
    """A whole list the API answered (products, payment methods, VAT rates, users), every page read."""

    items: tuple[T, ...]
    maybe_applied = False


@dataclass(frozen=True)
class DayStatus:
    """The daily report: ``open`` when one is open (sales may be billed), ``status`` as the API said it."""

    open: bool
    status: str
    maybe_applied = False


@dataclass(frozen=True)
class DayOpened:
    """``PUT /dailyReport/open`` answered 2xx: a daily report is open now."""

    maybe_applied = True


@dataclass(frozen=True)
class Refused:
    """The API refused the request in its own words (a JSON 4xx: 400, 404, 409, 422): nothing was applied
    and sending the same request again will not help. ``message`` is printable."""

    status: int
    message: str
    code: str = ""
    maybe_applied = False


@dataclass(frozen=True)
class Unauthorized:
    """401 (the token is missing, garbled or revoked) or 403 (a developer token where an account token
    belongs, or the reverse): a configuration problem, not the invoice's. Nothing was applied.
    ``which``: the kind of token the call needs (and carried), so the refusal can name the wrong one."""

    status: int
    message: str
    which: TokenKind = "account"
    maybe_applied = False

    def explain(self) -> str:
        """One line for the person who gave the token: which token is wrong, and what to give instead."""
        if self.which == "developer":
            if self.status == 403:
                return (
                    "ready2order refused the developer token (403): that is an account token (or another "
                    "kind), not the developer token; give the developer token ready2order emailed you"
                )
            return (
                f"ready2order does not know the developer token ({self.status}): it is missing, mistyped "
                "or revoked; give the developer token ready2order emailed you"
            )
        if self.status == 403:
            return (
                "ready2order refused the account token (403): that is a developer token (or another kind), "
                "not an account token; approve a new grant to get the account token"
            )
        return (
            f"ready2order does not accept the account token ({self.status}): it was revoked or is not a "
            "token; approve a new grant to get a new one"
        )

    def fix(self) -> str:
        """What the running terminal's owner does about a refused account token, in one sentence."""
        if self.status == 403:
            return (
                "the token in [ready2order] account_token_file is not an account token (a developer "
                "token?); run taptill-provision --ready2order to get the account token"
            )
        return (
            "ready2order refuses the account token in [ready2order] account_token_file (wrong or "
            "revoked); run taptill-provision --ready2order again"
        )


@dataclass(frozen=True)
class RateLimited:
    """429: nothing was applied; no request at all for ``wait_s`` seconds (the block is per IP address)."""

    wait_s: float
    message: str
    maybe_applied = False


@dataclass(frozen=True)
class Unavailable:
    """No definitive answer: timeout, connection trouble, 5xx, a body that is not the API's.

    ``maybe_applied`` is False only when the request provably did not change anything (it never left this
    machine, it was a read, or the answer was a redirect). ``status`` is set when the server answered
    with an error status.
    """

    reason: str
    maybe_applied: bool = True
    status: int | None = None
    retry_after_s: float | None = None


# --- the grant flow (provisioning): a grant the account owner approves, polled until its token arrives ---


@dataclass(frozen=True)
class Grant:
    """One grant access token and the page where the owner approves it; ``expires_at`` epoch s if said."""

    token: str
    approval_url: str
    expires_at: float | None = None
    maybe_applied = True


@dataclass(frozen=True)
class Pending:
    """The owner has not answered yet."""

    expires_at: float | None = None
    maybe_applied = False


@dataclass(frozen=True)
class Approved:
    """The owner approved: ``account_token`` opens the account's data (never print it)."""

    account_token: Secret
    maybe_applied = False


@dataclass(frozen=True)
class Denied:
    """The owner refused access."""

    reason: str
    maybe_applied = False


@dataclass(frozen=True)
class Expired:
    """The grant ran out (10 minutes) or ready2order forgot it: a new one is needed."""

    reason: str
    maybe_applied = False


Failure = Refused | Unauthorized | RateLimited | Unavailable
CreateOutcome = Created | Failure
SearchOutcome = Found | Failure
ListOutcome = Listed[T] | Failure
DayOutcome = DayStatus | Failure
OpenDayOutcome = DayOpened | Failure
CancelOutcome = Created | Failure  # the cancellation (storno) document
GrantOutcome = Grant | Failure
PollOutcome = Pending | Approved | Denied | Expired | Failure


def describe(failure: Failure) -> str:
    """A failure as one printable line for a log, ``status`` or the console."""
    match failure:
        case Unavailable(reason):
            return reason
        case Unauthorized(status, message) | Refused(status, message):
            return f"HTTP {status}: {message}"
        case RateLimited(_wait, message):
            return message
    return "no answer"
