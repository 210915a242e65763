"""A card at the edge of the reader, in the pure controller: any flicker pays once (issue 10's field test).

The controller gets time only as timer events; ``Bench`` plays them on a virtual clock, with the
wallet answering after a latency of its own, so a flicker pattern runs for virtual seconds in no time.
"""

from __future__ import annotations

import heapq
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.config import OfflineConfig
from terminal.controller import Controller, ControllerSettings
from terminal.controller.retap_guard import RetapGuard
from terminal.effects import Charge, Effect, LookupWallet, StartTimer
from terminal.events import CardPresented, CardRemoved, ChargeDone, Event, TimerFired, WalletBalance
from terminal.model import Product

CARD = "04A1B2C3D4E5F6"
CATALOG = (Product("espresso", "Espresso", 250),)
# The terminal's defaults: a 3 s result screen, a 3 s guard since the sale, re-armed after 1 s away.
DEFAULTS = ControllerSettings(products=("espresso",), offline=OfflineConfig())
REARM_S = DEFAULTS.rearm_absent_s


class Bench:
    """The controller on a virtual clock (seconds): its timers and the wallet's answers fire in order."""

    def __init__(self, settings: ControllerSettings, latency_s: float = 0.2) -> None:
        self.c = Controller(settings, CATALOG)
        self.latency_s = latency_s
        self.now = 0.0
        self.charges = 0
        self._due: list[tuple[float, int, Event]] = []
        self._seq = 0
        self._take(self.c.start())

    def _at(self, delay_s: float, event: Event) -> None:
        self._seq += 1
        heapq.heappush(self._due, (self.now + delay_s, self._seq, event))

    def _take(self, effects: list[Effect]) -> None:
        for e in effects:
            match e:
                case StartTimer(token, delay_s):
                    self._at(delay_s, TimerFired(token))
                case LookupWallet(uid):
                    self._at(self.latency_s, WalletBalance(uid, 1_000_000))
                case Charge():
                    self.charges += 1
                    self._at(self.latency_s, ChargeDone(f"k{self.charges}", 1_000_000))

    def run_until(self, t: float) -> None:
        while self._due and self._due[0][0] <= t:
            self.now, _, event = heapq.heappop(self._due)
            self._take(self.c.handle(event))
        self.now = t

    def card(self, present: bool, after_s: float, uid: str = CARD) -> None:
        """``after_s`` from now the card enters (or leaves) the field."""
        self.run_until(self.now + after_s)
        self._take(self.c.handle(CardPresented(uid) if present else CardRemoved()))

    def settle(self) -> None:
        self.run_until(self.now + 60.0)


@settings(max_examples=300, deadline=None)
@given(
    pattern=st.lists(
        st.tuples(
            st.floats(min_value=0.001, max_value=5.0),  # in the field
            st.floats(min_value=0.001, max_value=REARM_S * 0.999),  # out of it, shorter than the re-arm
        ),
        min_size=1,
        max_size=80,
    ),
    latency_s=st.floats(min_value=0.0, max_value=1.0),
)
def test_any_flicker_with_gaps_shorter_than_the_rearm_time_pays_once(
    pattern: list[tuple[float, float]], latency_s: float
) -> None:
    b = Bench(DEFAULTS, latency_s)
    b.card(True, 0.0)
    for on_s, off_s in pattern:
        b.card(False, on_s)
        b.card(True, off_s)
    b.settle()
    assert b.charges == 1, f"{b.charges} charges over {b.now:.1f} s of flicker"


def test_the_field_tests_flicker_pays_once_and_a_lifted_card_buys_again() -> None:
    b = Bench(DEFAULTS)
    b.card(True, 0.0)
    for _ in range(30):  # 12 s: present and removed every 0.2 s (4 charges before, one every ~3.45 s)
        b.card(False, 0.2)
        b.card(True, 0.2)
    b.card(False, 0.2)
    b.run_until(b.now + REARM_S + 0.01)  # lifted for a second coffee...
    b.card(True, 0.0)  # ...and tapped again
    b.settle()
    assert b.charges == 2


def test_away_long_enough_but_within_the_guard_is_no_sale_and_must_go_away_again() -> None:
    b = Bench(DEFAULTS, latency_s=0.0)
    b.card(True, 0.0)
    b.card(False, 0.1)
    b.card(True, REARM_S + 0.5)  # away long enough, but back 1.6 s after the sale: within the guard
    b.run_until(DEFAULTS.retap_guard_s + DEFAULTS.screen_hold_s)  # the guard and the result are over
    b.card(False, 0.0)
    b.card(True, REARM_S / 2)  # a flicker: not away long enough since it was last refused
    assert b.charges == 1
    b.card(False, 0.1)
    b.card(True, REARM_S + 0.01)
    b.settle()
    assert b.charges == 2


def test_a_card_taken_away_before_its_charge_is_decided_counts_its_absence_from_the_charge() -> None:
    b = Bench(replace(DEFAULTS, retap_guard_s=0.5, screen_hold_s=0.1), latency_s=0.4)
    b.card(True, 0.0)
    b.card(False, 0.1)  # gone while the lookup is under way; charged at 0.8 s
    b.card(True, 0.7 + REARM_S - 0.1)  # back at 1.7 s: away 1.6 s, but only 0.9 s since the charge
    b.settle()
    assert b.charges == 1
    b.card(False, 0.0)
    b.card(True, REARM_S + 0.01)
    b.settle()
    assert b.charges == 2


def test_a_rearm_time_of_zero_leaves_only_the_guard() -> None:
    b = Bench(replace(DEFAULTS, rearm_absent_s=0.0), latency_s=0.0)
    b.card(True, 0.0)
    b.card(False, 0.1)
    b.card(True, DEFAULTS.retap_guard_s + DEFAULTS.screen_hold_s)  # the guard and the result are over
    b.settle()
    assert b.charges == 2


def test_another_card_in_the_field_starts_the_first_cards_absence() -> None:
    # The sim reader (and a one-card reader) may report the next card without removing the first.
    b = Bench(DEFAULTS, latency_s=0.0)
    b.card(True, 0.0)
    b.card(True, 0.5, uid="04BBBBBBBBBBBB")  # another guest's card: sold at once
    b.run_until(b.now)
    assert b.charges == 2
    b.card(False, 0.1)
    b.card(True, DEFAULTS.retap_guard_s + DEFAULTS.screen_hold_s)
    b.settle()
    assert b.charges == 3, "the first card was away since the other came: a real second purchase"


def _guard(guard_s: float, rearm_s: float) -> RetapGuard:
    tokens = iter(range(1, 100))
    return RetapGuard(guard_s, rearm_s, lambda: next(tokens))


def test_a_re_arm_time_of_0_leaves_only_the_guard_since_the_sale() -> None:
    guard = _guard(2.0, 0.0)
    (timer,) = guard.charged("04A1", on_reader=True)  # no re-arm timer to wait for
    guard.refused("04A1")  # back too soon: with no re-arm rule, nothing more to wait for
    assert isinstance(timer, StartTimer) and guard.blocks("04A1")
    assert guard.timer(timer.token) and not guard.blocks(
        "04A1"
    )  # the guard's end frees the card on the reader
    assert not guard.timer(timer.token)  # a timer that matches nothing ends nothing


def test_a_guard_of_0_never_blocks_a_card() -> None:
    guard = _guard(0.0, 0.5)
    assert guard.charged("04A1", on_reader=True) == []
    guard.refused("04A1")
    assert not guard.blocks("04A1")
