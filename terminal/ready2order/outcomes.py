"""ready2order's typed values (invoices, products, payment methods, VAT rates) and the outcomes of a call.

Every outcome says whether the request may have been applied (``maybe_applied``): only a create that
may have reached the server and got no definitive answer leaves an invoice that must be searched for
before it is sent again. Amounts are euros as exact ``Decimal``; never float.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

T = TypeVar("T")


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


@dataclass(frozen=True)
class Product:
    id: int
    name: str
    price: Decimal  # euros, gross
    vat_id: int | None = None
    vat_rate: Decimal | None = None
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
    rate: Decimal | None  # percent
    name: str = ""


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
    """A list the API answered (one page of products, the payment methods, the VAT rates)."""

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
    belongs, or the reverse): a configuration problem, not the invoice's. Nothing was applied."""

    status: int
    message: str
    maybe_applied = False

    def fix(self) -> str:
        """What a person does about it, in one sentence."""
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


Failure = Refused | Unauthorized | RateLimited | Unavailable
CreateOutcome = Created | Failure
SearchOutcome = Found | Failure
ProductsOutcome = Listed[Product] | Failure
PaymentMethodsOutcome = Listed[PaymentMethod] | Failure
VatRatesOutcome = Listed[VatRate] | Failure
DayOutcome = DayStatus | Failure
OpenDayOutcome = DayOpened | Failure
CancelOutcome = Created | Failure  # the cancellation (storno) document
