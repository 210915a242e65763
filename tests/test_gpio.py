"""Relay, buzzer, LEDs and buttons through gpiozero's MockFactory, timed from the mock pins' own records."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from hw.gpio.base import Signal
from hw.gpio.buttons import GpioButtons, PressFilter, SoftwareButtons
from hw.gpio.factory import make_buttons, make_outputs
from hw.gpio.outputs import BUZZER_PATTERNS, GpioOutputs, LogOutputs
from terminal.config import GpioConfig

pytestmark = pytest.mark.gpio

RELAY, BUZZER, LED_OK, LED_ERROR, LED_ONLINE = 17, 18, 23, 24, 25
# Generous: the thread that times the pulses may be preempted on a busy 2-core machine.
LATE_S = 0.15

CONFIG = GpioConfig(
    enabled=True,
    relay_pin=RELAY,
    relay_active_high=True,
    relay_pulse_ms=100,
    relay_gap_ms=80,
    buzzer_pin=BUZZER,
    led_ok_pin=LED_OK,
    led_error_pin=LED_ERROR,
    led_online_pin=LED_ONLINE,
    bounce_ms=50,
    buttons={"coffee": 5, "tea": 6},
)


@pytest.fixture
def pins() -> Iterator[Any]:
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous


@pytest.fixture
def outputs(pins: Any) -> Iterator[GpioOutputs]:
    out = GpioOutputs(CONFIG)
    yield out
    out.close()


def active_periods(pin: Any, active_high: bool = True) -> tuple[list[float], list[float]]:
    """(lengths of the active periods, lengths of the inactive gaps between them) from pin.states."""
    on: list[float] = []
    gaps: list[float] = []
    active_since: float | None = None
    inactive_since: float | None = None
    clock = 0.0
    for timestamp, state in pin.states:  # each timestamp is the time since the previous change
        clock += timestamp
        if state == active_high and active_since is None:
            if inactive_since is not None and on:
                gaps.append(clock - inactive_since)
            active_since = clock
        elif state != active_high and active_since is not None:
            on.append(clock - active_since)
            active_since, inactive_since = None, clock
    return on, gaps


def ms(lengths: list[float]) -> list[int]:
    return [round(1000 * length) for length in lengths]


def lengths_within(
    measure: Callable[[], tuple[list[float], list[float]]],
    check: Callable[[list[float], list[float]], None],
    attempts: int = 3,
) -> tuple[list[float], list[float]]:
    """``measure()`` a pattern's (active, gap) lengths until ``check`` passes, at most ``attempts`` times.

    A wait never ends early, but it may end late: on a busy 2-core machine one preemption of the thread
    that times the pattern stretched an 80 ms beep to 418 ms. A length the code gets wrong (a wrong
    setting, a missing or extra pulse) fails every attempt; a stall seldom hits twice running. The last
    attempt's failure is what the test reports."""
    for attempt in range(1, attempts + 1):
        on, gaps = measure()
        try:
            check(on, gaps)
        except AssertionError:
            if attempt == attempts:
                raise
            print(f"attempt {attempt}: lengths {ms(on)} ms, gaps {ms(gaps)} ms out of bounds; again")
            continue
        return on, gaps
    raise AssertionError("unreachable")  # attempts < 1


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_dispense_pulses_the_relay_once_per_product_without_blocking(pins: Any, outputs: GpioOutputs) -> None:
    relay = pins.pin(RELAY)
    returned_after: list[float] = []

    def three_pulses() -> tuple[list[float], list[float]]:
        relay.clear_states()
        done = outputs.pulses_done
        began = time.monotonic()
        outputs.dispense(["coffee"] * 3)
        returned_after.append(time.monotonic() - began)
        assert outputs.pulses_done < done + 3, "dispense() must return before the pulses are done"
        wait_until(lambda: outputs.pulses_done == done + 3)
        time.sleep(0.2)  # nothing more follows
        return active_periods(relay)

    def check(on: list[float], gaps: list[float]) -> None:
        assert len(on) == 3 and len(gaps) == 2
        for length in on:
            assert 0.095 <= length <= 0.1 + LATE_S, on
        for length in gaps:
            assert 0.075 <= length <= 0.08 + LATE_S, gaps

    on, gaps = lengths_within(three_pulses, check)
    assert relay.state is False
    print(
        f"relay pulses {ms(on)} ms (cfg 100), gaps {ms(gaps)} ms (cfg 80); "
        f"dispense() returned in {1e6 * returned_after[-1]:.0f} µs"
    )


def test_a_second_sale_while_pulsing_adds_its_pulses(pins: Any, outputs: GpioOutputs) -> None:
    outputs.dispense(["coffee"])
    wait_until(lambda: pins.pin(RELAY).state)
    outputs.dispense(["coffee", "tea"])
    wait_until(lambda: outputs.pulses_done == 3)
    on, _ = active_periods(pins.pin(RELAY))
    assert len(on) == 3
    assert all(length >= 0.095 for length in on), on


def test_when_dispensed_tells_once_when_the_sales_last_pulse_is_done(pins: Any, outputs: GpioOutputs) -> None:
    told: list[tuple[int, bool]] = []
    first = outputs.dispense(["coffee"])
    second = outputs.dispense(["coffee", "tea"])
    outputs.when_dispensed(second, lambda: told.append((outputs.pulses_done, outputs.dispensed(second))))
    assert told == [], "told before its pulses were given"
    wait_until(lambda: bool(told))
    time.sleep(0.3)  # and never again
    assert told == [(3, True)]
    already: list[int] = []
    outputs.when_dispensed(first, lambda: already.append(1))  # long done: told at once, on this thread
    assert already == [1]


def test_when_dispensed_tells_a_release_and_the_sale_stays_not_dispensed(pins: Any) -> None:
    out = GpioOutputs(replace(CONFIG, relay_pulse_ms=5000))
    try:
        told: list[bool] = []
        ticket = out.dispense(["coffee"])
        out.when_dispensed(ticket, lambda: told.append(out.dispensed(ticket)))
        wait_until(lambda: pins.pin(RELAY).state)
        assert told == []
        out.release()
        assert told == [False]
        late: list[bool] = []
        out.when_dispensed(out.dispense(["coffee"]), lambda: late.append(True))  # -1 after a release
        assert late == [True]
    finally:
        out.close()


def test_active_low_relay_rests_high_and_pulses_low(pins: Any) -> None:
    out = GpioOutputs(replace(CONFIG, relay_active_high=False, relay_pulse_ms=60, relay_gap_ms=40))
    try:
        relay = pins.pin(RELAY)
        assert relay.state is True, "an active-low relay must rest with its pin high"
        # Before GpioOutputs drove it, the mock pin was an undriven input that reads low; on a real Pi that
        # moment is covered by the wiring (see the README), so only what the adapter drives is checked.

        def two_pulses() -> tuple[list[float], list[float]]:
            relay.clear_states()
            done = out.pulses_done
            out.dispense(["coffee", "coffee"])
            wait_until(lambda: out.pulses_done == done + 2)
            return active_periods(relay, active_high=False)

        def check(on: list[float], gaps: list[float]) -> None:
            assert len(on) == 2 and len(gaps) == 1
            assert all(0.055 <= length <= 0.06 + LATE_S for length in on), on

        lengths_within(two_pulses, check)
        assert relay.state is True
    finally:
        out.close()


def test_release_mid_pulse_opens_the_relay_and_drops_pending_pulses(pins: Any) -> None:
    out = GpioOutputs(replace(CONFIG, relay_pulse_ms=5000))
    try:
        relay = pins.pin(RELAY)
        out.dispense(["coffee", "coffee"])
        wait_until(lambda: relay.state)
        began = time.monotonic()
        out.release()
        assert relay.state is False
        print(f"release() mid-pulse: relay open after {1e6 * (time.monotonic() - began):.0f} µs")
        out.dispense(["coffee"])  # a late sale during shutdown must not close the relay again
        time.sleep(0.3)
        on, _ = active_periods(relay)
        assert len(on) == 1 and on[0] < 1.0
        assert relay.state is False
        assert out.pulses_done == 0
    finally:
        out.close()


def test_release_switches_buzzer_and_leds_off(pins: Any, outputs: GpioOutputs) -> None:
    outputs.set_online(True)
    outputs.signal("error")
    wait_until(lambda: pins.pin(BUZZER).state)
    outputs.release()
    for pin in (RELAY, BUZZER, LED_OK, LED_ERROR, LED_ONLINE):
        assert pins.pin(pin).state is False, f"GPIO{pin} still on after release()"


def test_nothing_pulses_without_dispense(pins: Any, outputs: GpioOutputs) -> None:
    outputs.signal("approved")
    outputs.signal("declined")
    outputs.set_online(True)
    outputs.dispense([])
    time.sleep(0.4)
    assert active_periods(pins.pin(RELAY)) == ([], [])
    assert pins.pin(RELAY).state is False


@pytest.mark.parametrize("kind", ["approved", "declined", "error"])
def test_buzzer_patterns(pins: Any, outputs: GpioOutputs, kind: Signal) -> None:
    pattern = BUZZER_PATTERNS[kind]
    buzzer = pins.pin(BUZZER)
    total = pattern.count * (pattern.on_s + pattern.off_s)

    def beeps() -> tuple[list[float], list[float]]:
        buzzer.clear_states()
        outputs.signal(kind)
        wait_until(lambda: len(active_periods(buzzer)[0]) == pattern.count and not buzzer.state, total + 3.0)
        time.sleep(0.2)  # nothing more follows
        return active_periods(buzzer)

    def check(on: list[float], gaps: list[float]) -> None:
        assert len(on) == pattern.count, on
        for length in on:
            assert pattern.on_s - 0.005 <= length <= pattern.on_s + LATE_S, on
        for length in gaps:
            assert pattern.off_s - 0.005 <= length <= pattern.off_s + LATE_S, gaps

    on, gaps = lengths_within(beeps, check)
    print(f"buzzer {kind}: beeps {ms(on)} ms, gaps {ms(gaps)} ms")


def test_declined_is_distinguishable_from_approved() -> None:
    assert BUZZER_PATTERNS["approved"].count == 1
    assert BUZZER_PATTERNS["declined"].count >= 2
    assert BUZZER_PATTERNS["error"].on_s > BUZZER_PATTERNS["approved"].on_s


def test_status_leds(pins: Any, outputs: GpioOutputs) -> None:
    outputs.signal("approved")
    wait_until(lambda: pins.pin(LED_OK).state)
    assert pins.pin(LED_ERROR).state is False
    outputs.signal("declined")
    wait_until(lambda: pins.pin(LED_ERROR).state)
    assert pins.pin(LED_OK).state is False
    outputs.set_online(True)
    assert pins.pin(LED_ONLINE).state is True
    outputs.set_online(False)
    assert pins.pin(LED_ONLINE).state is False


class Presses:
    def __init__(self) -> None:
        self.names: list[str] = []

    def button_pressed(self, name: str) -> None:
        self.names.append(name)


class Clock:
    """A monotonic clock the test moves: edges land exactly where the test puts them."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_default_minimum_press_fits_a_finger_not_a_spike() -> None:
    assert 20 <= GpioConfig().min_press_ms <= 50


def test_press_filter_counts_presses_that_last_not_spikes_nor_chatter() -> None:
    clock = Clock()
    presses = PressFilter(min_press_s=0.03, bounce_s=0.05, clock=clock)

    def close_at(t: float) -> int:
        clock.now = t
        return presses.closed()

    def open_at(t: float) -> bool:
        clock.now = t
        return presses.opened()

    def hold_check(edge: int, t: float) -> bool:
        clock.now = t
        return presses.held(edge)

    # a 1 ms spike: its hold check finds an edge since, and the opening edge finds it too short
    spike = close_at(0.000)
    assert open_at(0.001) is False
    assert hold_check(spike, 0.030) is False
    # a 100 ms press counts once, while still held; its release adds nothing
    edge = close_at(1.000)
    assert hold_check(edge, 1.030) is True
    assert open_at(1.100) is False
    # chatter on release (closing edges within bounce_s of the last opening) is the same press
    chatter = close_at(1.110)
    assert hold_check(chatter, 1.140) is False
    assert open_at(1.145) is False
    # a bouncing press: 1 ms edges, then steady; counted once, when it has been steady for min_press_s
    edges = []
    for i in range(4):
        edges.append(close_at(2.000 + 0.002 * i))
        assert open_at(2.001 + 0.002 * i) is False
    steady = close_at(2.008)
    assert [hold_check(e, 2.030 + 0.002 * i) for i, e in enumerate(edges)] == [False] * 4
    assert hold_check(steady, 2.038) is True
    # a 1 ms glitch open during a long hold does not make a second press
    assert open_at(2.500) is False
    glitch = close_at(2.501)
    assert hold_check(glitch, 2.531) is False
    assert open_at(3.000) is False
    # a hold check that came late (a busy machine): the opening edge counts a press that lasted
    late = close_at(4.000)
    assert open_at(4.080) is True
    assert hold_check(late, 4.200) is False  # and only once


def test_a_glitch_mid_press_keeps_the_press_start() -> None:
    """A 45 ms press (min 30 ms) with a 1 ms gap at 20 ms is one 45 ms press, not two short ones."""
    clock = Clock()
    presses = PressFilter(min_press_s=0.03, bounce_s=0.005, clock=clock)
    clock.now = 0.000
    first = presses.closed()
    clock.now = 0.020
    assert presses.opened() is False
    clock.now = 0.021
    reclosed = presses.closed()
    assert presses.hold_left_s() == pytest.approx(0.009)  # the hold counts from 0 ms, not from 21 ms
    clock.now = 0.030
    assert presses.held(first) is False  # an edge came since: this check is not the one
    clock.now = 0.045
    assert presses.opened() is True
    clock.now = 0.051
    assert presses.held(reclosed) is False  # counted once
    # a re-close after bounce_s of quiet is a new press: it starts over
    clock.now = 0.100
    presses.closed()
    clock.now = 0.120
    assert presses.opened() is False


def test_a_glitch_mid_press_through_gpiozero_counts_the_press(pins: Any) -> None:
    presses = Presses()
    clock = Clock()
    buttons = GpioButtons(replace(CONFIG, min_press_ms=30, bounce_ms=5), presses, clock=clock)
    try:
        coffee = pins.pin(5)
        coffee.drive_low()
        clock.now += 0.020
        coffee.drive_high()  # a 1 ms contact glitch mid-hold
        clock.now += 0.001
        coffee.drive_low()
        clock.now += 0.024
        coffee.drive_high()
        time.sleep(3 * buttons.min_press_s)  # any hold check has run by now
        assert presses.names == ["coffee"]
    finally:
        buttons.close()


def test_press_filter_without_a_minimum_counts_at_the_closing_edge() -> None:
    clock = Clock()
    presses = PressFilter(min_press_s=0.0, bounce_s=0.05, clock=clock)
    assert presses.held(presses.closed()) is True
    clock.now += 0.001
    assert presses.opened() is False
    clock.now += 0.001
    assert presses.held(presses.closed()) is False  # bounce
    clock.now += 0.001
    presses.opened()
    clock.now += 0.1
    assert presses.held(presses.closed()) is True


def test_a_1_ms_spike_is_ignored_and_a_100_ms_press_counted(pins: Any) -> None:
    """Through gpiozero's Button on MockFactory pins: the edges are driven, the clock placed by the test."""
    presses = Presses()
    clock = Clock()
    buttons = GpioButtons(CONFIG, presses, clock=clock)  # min_press_ms: the default
    try:
        coffee = pins.pin(5)
        assert coffee.state is True, "buttons switch to GND against the internal pull-up"
        coffee.drive_low()
        clock.now += 0.001
        coffee.drive_high()
        time.sleep(3 * buttons.min_press_s)  # the spike's hold check has run by now, or runs later in vain
        assert presses.names == []
        clock.now += 1.0
        coffee.drive_low()
        clock.now += 0.1
        coffee.drive_high()
        assert presses.names == ["coffee"]
    finally:
        buttons.close()


def test_a_bouncing_press_counts_once(pins: Any) -> None:
    presses = Presses()
    clock = Clock()
    buttons = GpioButtons(CONFIG, presses, clock=clock)
    try:
        tea = pins.pin(6)
        for _ in range(5):  # the contact chatters as it closes
            tea.drive_low()
            clock.now += 0.001
            tea.drive_high()
            clock.now += 0.001
        tea.drive_low()
        clock.now += 0.1  # steady
        tea.drive_high()
        for _ in range(3):  # and chatters as it opens
            clock.now += 0.001
            tea.drive_low()
            clock.now += 0.001
            tea.drive_high()
        time.sleep(3 * buttons.min_press_s)
        assert presses.names == ["tea"]
        clock.now += 0.2
        tea.drive_low()
        clock.now += 0.05
        tea.drive_high()
        assert presses.names == ["tea", "tea"]
    finally:
        buttons.close()


def test_a_held_button_counts_while_still_held(pins: Any) -> None:
    """Real time: the guest sees the cart change without letting go, once the press lasted min_press_ms."""
    presses = Presses()
    buttons = GpioButtons(CONFIG, presses)
    try:
        coffee = pins.pin(5)
        pressed_at = time.monotonic()
        coffee.drive_low()
        wait_until(lambda: presses.names == ["coffee"])
        counted_after = time.monotonic() - pressed_at
        assert coffee.state is False, "still held"
        assert counted_after >= buttons.min_press_s
        coffee.drive_high()
        assert presses.names == ["coffee"]
        print(
            f"held press counted {1000 * counted_after:.1f} ms after the edge (min {CONFIG.min_press_ms} ms)"
        )
    finally:
        buttons.close()


def test_a_real_time_spike_is_not_a_press(pins: Any) -> None:
    """Real time and gpiozero's own threads: a 1 ms spike against a 200 ms minimum."""
    presses = Presses()
    buttons = GpioButtons(replace(CONFIG, min_press_ms=200), presses)
    try:
        coffee = pins.pin(5)
        began = time.monotonic()
        coffee.drive_low()
        time.sleep(0.001)
        coffee.drive_high()
        lasted = time.monotonic() - began
        time.sleep(0.4)  # past the spike's hold check
        # a machine stalled for 200 ms inside the spike made it a press; the verdict follows what happened
        assert presses.names == ([] if lasted < 0.2 else ["coffee"]), lasted
        coffee.drive_low()
        time.sleep(0.25)
        coffee.drive_high()
        wait_until(lambda: len(presses.names) >= 1 + (lasted >= 0.2))
        print(f"spike lasted {1000 * lasted:.1f} ms: ignored")
    finally:
        buttons.close()


def test_factory_returns_twins_when_gpio_is_disabled() -> None:
    disabled = replace(CONFIG, enabled=False)
    outputs = make_outputs(disabled)
    assert isinstance(outputs, LogOutputs)
    outputs.dispense(["coffee", "tea"])
    outputs.signal("approved")
    outputs.release()
    outputs.dispense(["coffee"])
    assert (outputs.pulses, outputs.signals, outputs.released) == (2, ["approved"], True)
    assert outputs.products == ["coffee", "tea"]
    presses = Presses()
    buttons = make_buttons(disabled, presses)
    assert isinstance(buttons, SoftwareButtons)
    buttons.press("tea")
    assert presses.names == ["tea"]
    with pytest.raises(ValueError, match="no button named 'beer'"):
        buttons.press("beer")


def test_factory_returns_gpiozero_adapters_when_enabled(pins: Any) -> None:
    outputs = make_outputs(CONFIG)
    buttons = make_buttons(CONFIG, Presses())
    assert isinstance(outputs, GpioOutputs)
    outputs.close()
    assert isinstance(buttons, GpioButtons)
    assert buttons.names == ("coffee", "tea")
    buttons.close()


# --- a relay per product ------------------------------------------------------------------------

ESPRESSO_RELAY, CAPPUCCINO_RELAY = 20, 21


@pytest.fixture
def edges() -> Iterator[list[tuple[float, int, bool]]]:
    """MockFactory pins that note (monotonic time, pin, state) of every change in one shared list: the
    order of edges across pins, which the per-pin ``states`` cannot give."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPin

    changes: list[tuple[float, int, bool]] = []

    class RecordingPin(MockPin):  # type: ignore[misc]
        def _change_state(self, value: Any) -> bool:
            changed = bool(super()._change_state(value))
            if changed:
                changes.append((time.monotonic(), int(self.info.name.removeprefix("GPIO")), bool(value)))
            return changed

    previous = Device.pin_factory
    factory = MockFactory(pin_class=RecordingPin)
    Device.pin_factory = factory
    yield changes
    factory.reset()
    Device.pin_factory = previous


def test_each_product_pulses_its_own_relay_one_at_a_time(edges: list[tuple[float, int, bool]]) -> None:
    cfg = replace(CONFIG, relays={"espresso": ESPRESSO_RELAY, "cappuccino": CAPPUCCINO_RELAY})
    out = GpioOutputs(cfg)
    try:
        relays = {RELAY, ESPRESSO_RELAY, CAPPUCCINO_RELAY}
        edges.clear()  # the devices' set-up
        first = out.dispense(["espresso", "cappuccino", "espresso"])
        second = out.dispense(["water"])  # not mapped: the default relay_pin
        assert (first, second) == (3, 4)
        wait_until(lambda: out.dispensed(second))
        time.sleep(0.3)  # nothing more follows
        relay_edges = [(pin, state) for _, pin, state in edges if pin in relays]
        assert relay_edges == [
            (ESPRESSO_RELAY, True), (ESPRESSO_RELAY, False),
            (CAPPUCCINO_RELAY, True), (CAPPUCCINO_RELAY, False),
            (ESPRESSO_RELAY, True), (ESPRESSO_RELAY, False),
            (RELAY, True), (RELAY, False),
        ]  # fmt: skip
        # the configured spacing holds across relays: a gap of relay_gap_ms between one pulse and the next
        times = [t for t, pin, _ in edges if pin in relays]
        pulses = [times[i + 1] - times[i] for i in range(0, len(times), 2)]
        gaps = [times[i + 1] - times[i] for i in range(1, len(times) - 1, 2)]
        assert all(p >= 0.095 for p in pulses), pulses
        assert all(g >= 0.075 for g in gaps), gaps
        print(f"pulses {ms(pulses)} ms (cfg 100), gaps {ms(gaps)} ms (cfg 80), across three relays")
    finally:
        out.close()


def test_release_opens_every_relay_and_a_product_without_a_relay_is_not_pulsed(
    edges: list[tuple[float, int, bool]],
) -> None:
    cfg = replace(CONFIG, relay_pin=None, relays={"espresso": ESPRESSO_RELAY}, relay_pulse_ms=5000)
    out = GpioOutputs(cfg)
    try:
        from gpiozero import Device

        espresso = Device.pin_factory.pin(ESPRESSO_RELAY)
        ticket = out.dispense(["tea"])  # no relay for it (the config refuses this at start): handed over
        assert out.dispensed(ticket) and out.pulses_done == 0
        out.dispense(["espresso", "espresso"])
        wait_until(lambda: espresso.state)
        out.release()
        assert espresso.state is False
        assert [state for _, pin, state in edges if pin == ESPRESSO_RELAY][-2:] == [True, False]
        assert out.pulses_done == 0
    finally:
        out.close()
