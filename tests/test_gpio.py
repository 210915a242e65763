"""Relay, buzzer, LEDs and buttons through gpiozero's MockFactory, timed from the mock pins' own records."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from hw.gpio.base import Signal
from hw.gpio.buttons import Debouncer, GpioButtons, SoftwareButtons
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


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_dispense_pulses_the_relay_once_per_product_without_blocking(pins: Any, outputs: GpioOutputs) -> None:
    relay = pins.pin(RELAY)
    began = time.monotonic()
    outputs.dispense(3)
    returned_after = time.monotonic() - began
    assert returned_after < 0.05, "dispense() must return before the pulses are done"
    wait_until(lambda: outputs.pulses_done == 3)
    time.sleep(0.2)  # nothing more follows
    on, gaps = active_periods(relay)
    assert len(on) == 3 and len(gaps) == 2
    for length in on:
        assert 0.095 <= length <= 0.1 + LATE_S, on
    for length in gaps:
        assert 0.075 <= length <= 0.08 + LATE_S, gaps
    assert relay.state is False
    print(
        f"relay pulses {ms(on)} ms (cfg 100), gaps {ms(gaps)} ms (cfg 80); "
        f"dispense() returned in {1e6 * returned_after:.0f} µs"
    )


def test_a_second_sale_while_pulsing_adds_its_pulses(pins: Any, outputs: GpioOutputs) -> None:
    outputs.dispense(1)
    wait_until(lambda: pins.pin(RELAY).state)
    outputs.dispense(2)
    wait_until(lambda: outputs.pulses_done == 3)
    on, _ = active_periods(pins.pin(RELAY))
    assert len(on) == 3
    assert all(length >= 0.095 for length in on), on


def test_active_low_relay_rests_high_and_pulses_low(pins: Any) -> None:
    out = GpioOutputs(replace(CONFIG, relay_active_high=False, relay_pulse_ms=60, relay_gap_ms=40))
    try:
        relay = pins.pin(RELAY)
        assert relay.state is True, "an active-low relay must rest with its pin high"
        # Before GpioOutputs drove it, the mock pin was an undriven input that reads low; on a real Pi that
        # moment is covered by the wiring (see the README), so only what the adapter drives is checked.
        relay.clear_states()
        out.dispense(2)
        wait_until(lambda: out.pulses_done == 2)
        on, gaps = active_periods(relay, active_high=False)
        assert len(on) == 2 and len(gaps) == 1
        assert all(0.055 <= length <= 0.06 + LATE_S for length in on), on
        assert relay.state is True
    finally:
        out.close()


def test_release_mid_pulse_opens_the_relay_and_drops_pending_pulses(pins: Any) -> None:
    out = GpioOutputs(replace(CONFIG, relay_pulse_ms=5000))
    try:
        relay = pins.pin(RELAY)
        out.dispense(2)
        wait_until(lambda: relay.state)
        began = time.monotonic()
        out.release()
        assert relay.state is False
        print(f"release() mid-pulse: relay open after {1e6 * (time.monotonic() - began):.0f} µs")
        out.dispense(1)  # a late sale during shutdown must not close the relay again
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
    outputs.dispense(0)
    time.sleep(0.4)
    assert active_periods(pins.pin(RELAY)) == ([], [])
    assert pins.pin(RELAY).state is False


@pytest.mark.parametrize("kind", ["approved", "declined", "error"])
def test_buzzer_patterns(pins: Any, outputs: GpioOutputs, kind: Signal) -> None:
    pattern = BUZZER_PATTERNS[kind]
    buzzer = pins.pin(BUZZER)
    outputs.signal(kind)
    total = pattern.count * (pattern.on_s + pattern.off_s)
    wait_until(lambda: len(active_periods(buzzer)[0]) == pattern.count and not buzzer.state, total + 3.0)
    time.sleep(0.2)
    on, gaps = active_periods(buzzer)
    assert len(on) == pattern.count, on
    for length in on:
        assert pattern.on_s - 0.005 <= length <= pattern.on_s + LATE_S, on
    for length in gaps:
        assert pattern.off_s - 0.005 <= length <= pattern.off_s + LATE_S, gaps
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


def test_bouncing_edges_count_as_one_press(pins: Any) -> None:
    presses = Presses()
    buttons = GpioButtons(CONFIG, presses)
    try:
        coffee, tea = pins.pin(5), pins.pin(6)
        assert coffee.state is True, "buttons switch to GND against the internal pull-up"
        for _ in range(3):  # the contact chatters as it closes
            coffee.drive_low()
            coffee.drive_high()
        coffee.drive_low()
        time.sleep(0.2)  # held
        coffee.drive_high()  # and chatters as it opens
        coffee.drive_low()
        coffee.drive_high()
        assert presses.names == ["coffee"]
        time.sleep(0.1)
        tea.drive_low()
        tea.drive_high()  # a press shorter than bounce_ms still counts, once
        coffee.drive_low()
        coffee.drive_high()
        assert presses.names == ["coffee", "tea", "coffee"]
        coffee.drive_low()  # pressed again within bounce_ms of the last release: chatter
        coffee.drive_high()
        assert presses.names == ["coffee", "tea", "coffee"]
        time.sleep(0.1)
        coffee.drive_low()
        assert presses.names == ["coffee", "tea", "coffee", "coffee"]
    finally:
        buttons.close()


def test_debouncer_with_a_clock() -> None:
    now = [0.0]
    debouncer = Debouncer(0.05, clock=lambda: now[0])

    def press_at(t: float) -> bool:
        now[0] = t
        return debouncer.pressed()

    def release_at(t: float) -> None:
        now[0] = t
        debouncer.released()

    assert press_at(0.000) is True
    release_at(0.001)
    assert press_at(0.002) is False  # bounce
    release_at(0.030)
    assert press_at(0.070) is False  # only 40 ms after the last release edge
    release_at(0.200)
    assert press_at(0.249) is False
    assert press_at(0.260) is True


def test_factory_returns_twins_when_gpio_is_disabled() -> None:
    disabled = replace(CONFIG, enabled=False)
    outputs = make_outputs(disabled)
    assert isinstance(outputs, LogOutputs)
    outputs.dispense(2)
    outputs.signal("approved")
    outputs.release()
    outputs.dispense(1)
    assert (outputs.pulses, outputs.signals, outputs.released) == (2, ["approved"], True)
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
