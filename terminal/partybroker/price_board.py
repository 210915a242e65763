"""The price board (current Partybroker prices per wallet product) and the poller that keeps it fresh."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from terminal.model import ProductId
from terminal.outbox.schedule import Backoff
from terminal.partybroker.config import DrinkMapping, PartybrokerConfig
from terminal.partybroker.outcomes import Ambiguous, Drink, DrinkRef, Drinks, DrinksOutcome, Sale

log = logging.getLogger("terminal.partybroker")

STALE_AFTER_INTERVALS = 2
LOGOUT_AFTER_INTERVALS = 3  # the party logs out an API client silent this long


@dataclass(frozen=True)
class BoardPrice:
    """What the screen shows for one wallet product."""

    product_id: str
    drink: DrinkRef
    title: str
    price_cents: int
    currency: str | None
    fetched_at: float  # board clock
    stale: bool


@dataclass(frozen=True)
class SaleBatch:
    """One Buy Drinks request (quantities summed per drink) and the products that map to no drink."""

    sales: tuple[Sale, ...]
    unmapped: tuple[str, ...]


@dataclass
class _Entry:
    drink: Drink
    fetched_at: float


class PriceBoard:
    """Current market prices of the mapped wallet products; pure, with an injected clock."""

    def __init__(
        self,
        drinks: Mapping[str, DrinkRef | DrinkMapping],
        interval_s: float,
        *,
        currency: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.currency = currency
        self._clock = clock
        self._refs: dict[str, DrinkRef] = {
            str(pid): ref.drink if isinstance(ref, DrinkMapping) else ref for pid, ref in drinks.items()
        }
        self._entries: dict[str, _Entry] = {}
        self._missing: tuple[str, ...] = ()
        self._listed = False

    @classmethod
    def from_config(
        cls,
        cfg: PartybrokerConfig,
        *,
        currency: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> PriceBoard:
        return cls(cfg.drinks, cfg.price_interval_s, currency=currency, clock=clock)

    # --- mapping wallet products to drinks ----------------------------------------------------------------

    def drink_for(self, product_id: ProductId) -> DrinkRef | None:
        return self._refs.get(str(product_id))

    def batch(self, items: Iterable[tuple[ProductId, int]]) -> SaleBatch:
        """Turn (wallet product, quantity) pairs into one request, summing quantities per drink."""
        totals: dict[DrinkRef, int] = {}
        unmapped: list[str] = []
        for product_id, quantity in items:
            ref = self.drink_for(product_id)
            if ref is None:
                if str(product_id) not in unmapped:
                    unmapped.append(str(product_id))
            elif quantity > 0:
                totals[ref] = totals.get(ref, 0) + quantity
        return SaleBatch(tuple(Sale(ref, q) for ref, q in totals.items()), tuple(unmapped))

    # --- applying prices --------------------------------------------------------------------------------

    def apply_list(self, drinks: Sequence[Drink]) -> bool:
        """A full GET list: every mapped drink's price, and which mapped drinks the party lacks."""
        changed = self._apply(drinks)
        missing = tuple(pid for pid, ref in self._refs.items() if not any(ref.matches(d) for d in drinks))
        for pid in missing:
            changed |= self._entries.pop(pid, None) is not None
        changed |= missing != self._missing or not self._listed
        self._missing, self._listed = missing, True
        return changed

    def apply_sale(self, drinks: Sequence[Drink]) -> bool:
        """The drinks a POST answered with: their new prices count at once (the others are untouched)."""
        return self._apply(drinks)

    def _apply(self, drinks: Sequence[Drink]) -> bool:
        now = self._clock()
        changed = False
        for pid, ref in self._refs.items():
            drink = next((d for d in drinks if ref.matches(d)), None)
            if drink is None:
                continue
            old = self._entries.get(pid)
            changed |= old is None or old.drink != drink
            self._entries[pid] = _Entry(drink, now)
        return changed

    # --- reading ----------------------------------------------------------------------------------------

    def _is_stale(self, entry: _Entry, now: float) -> bool:
        return now - entry.fetched_at > STALE_AFTER_INTERVALS * self.interval_s

    def price(self, product_id: ProductId) -> BoardPrice | None:
        pid = str(product_id)
        entry = self._entries.get(pid)
        if entry is None:
            return None
        d = entry.drink
        stale = self._is_stale(entry, self._clock())
        return BoardPrice(pid, self._refs[pid], d.title, d.price_cents, d.currency, entry.fetched_at, stale)

    def prices(self) -> tuple[BoardPrice, ...]:
        """Known prices, in the order of the config's drinks table."""
        return tuple(p for p in (self.price(pid) for pid in self._refs) if p is not None)

    def stale_products(self) -> frozenset[str]:
        """Mapped products with no price, or one older than 2 intervals (shown as stale)."""
        now = self._clock()
        return frozenset(
            pid for pid in self._refs if (e := self._entries.get(pid)) is None or self._is_stale(e, now)
        )

    def is_stale(self) -> bool:
        return bool(self.stale_products())

    @property
    def missing(self) -> tuple[str, ...]:
        """Mapped products whose drink the last GET list lacked (no Premium, or a wrong mapping)."""
        return self._missing

    def warnings(self) -> tuple[str, ...]:
        """One sentence per problem a person must fix, for the start-up log and `taptill status`."""
        out = [
            f"wallet product {pid} maps to Partybroker drink {self._refs[pid]}, which the party does not "
            "list; without Partybroker Premium only the first three drinks are visible: fix "
            "[partybroker.drinks] or activate Premium (its sales are not reported)"
            for pid in self._missing
        ]
        if self.currency is not None:
            for p in self.prices():
                if p.currency is not None and p.currency != self.currency:
                    out.append(
                        f"Partybroker prices drink {p.drink} in {p.currency[:10]} but the terminal charges "
                        f"{self.currency}; set the party's currency to {self.currency}"
                    )
        return tuple(out)


def ladder_step(market_cents: int, steps: Sequence[tuple[ProductId, int]]) -> tuple[ProductId, int] | None:
    """The wallet product to charge under ``charge = "ladder"``: the nearest fixed price not above the
    market price (the first such step on ties); None when every step costs more than the market."""
    best: tuple[ProductId, int] | None = None
    for product_id, cents in steps:
        if cents <= market_cents and (best is None or cents > best[1]):
            best = (product_id, cents)
    return best


# --- the poller ---------------------------------------------------------------------------------------------


class DrinksSource(Protocol):
    def drinks(self) -> Awaitable[DrinksOutcome]: ...


@dataclass
class PollerStatus:
    """What `taptill status` shows about the price poller."""

    polls: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_success_at: float | None = None
    last_problem: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)


class PricePoller:
    """Polls the drinks list once per price interval, which also keeps the API client logged in.

    Never raises out of ``run()``: failures back off (from 1/8 interval, doubling, jittered) but never
    wait longer than one interval, or two when the server asks with Retry-After, so the party never sees
    3 silent intervals while it is reachable.
    """

    def __init__(
        self,
        client: DrinksSource,
        board: PriceBoard,
        on_prices: Callable[[PriceBoard], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.board = board
        self.on_prices = on_prices
        self.status = PollerStatus()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._shown_stale: frozenset[str] | None = None
        self._logged_warnings: set[str] = set()

    @property
    def interval_s(self) -> float:
        return self.board.interval_s

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            started = self._clock()
            delay = await self.poll_once()
            await self._sleep(max(0.0, started + delay - self._clock()))

    async def poll_once(self) -> float:
        """One poll; returns how long after its start the next poll is due."""
        try:
            outcome: DrinksOutcome = await self.client.drinks()
        except Exception as exc:  # a bug in a client must not stop the prices (or the keep-alive)
            log.exception("Partybroker price poll failed unexpectedly")
            outcome = Ambiguous(f"unexpected {type(exc).__name__}", maybe_applied=False)
        self.status.polls += 1
        changed = False
        if isinstance(outcome, Drinks):
            changed = self.board.apply_list(outcome.drinks)
            self._succeeded()
            delay = self.interval_s
        else:
            self._failed(outcome.reason)
            delay = self._backoff(outcome)
        self._notify(changed)
        return delay

    def apply_sale(self, drinks: Sequence[Drink]) -> None:
        """Show the prices a sale's POST answered with at once."""
        self._notify(self.board.apply_sale(drinks))

    def _backoff(self, outcome: DrinksOutcome) -> float:
        if not isinstance(outcome, Ambiguous):
            return self.interval_s  # 401 and 4xx need a person; keep trying once per interval
        # The outbox's backoff (one formula, one jitter), from 1/8 interval up to one interval.
        backoff = Backoff(base_s=self.interval_s / 8, max_s=self.interval_s)
        at_least = outcome.retry_after
        if at_least is not None:
            at_least = min(at_least, STALE_AFTER_INTERVALS * self.interval_s)
        return backoff.delay_s(self.status.consecutive_failures - 1, self._rng, at_least)

    def _succeeded(self) -> None:
        if self.status.consecutive_failures:
            log.info("Partybroker prices are back after %d failed polls", self.status.consecutive_failures)
        self.status.consecutive_failures = 0
        self.status.last_success_at = self._clock()
        self.status.last_problem = None
        self.status.warnings = self.board.warnings()
        for warning in self.status.warnings:
            if warning not in self._logged_warnings:
                self._logged_warnings.add(warning)
                log.warning("%s", warning)

    def _failed(self, reason: str) -> None:
        self.status.failures += 1
        self.status.consecutive_failures += 1
        if reason != self.status.last_problem:
            log.warning("Partybroker prices not updated: %s", reason)
        self.status.last_problem = reason

    def _notify(self, changed: bool) -> None:
        stale = self.board.stale_products()
        if not changed and stale == self._shown_stale:
            return
        self._shown_stale = stale
        try:
            self.on_prices(self.board)
        except Exception:  # the screen's problem must not stop the polling
            log.exception("the on_prices callback failed")
