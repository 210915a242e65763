"""Drives the relay, buzzer and status LEDs through gpiozero; and their logging twin for GPIO-less hosts."""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hw.gpio.base import Signal
from terminal.config import GpioConfig
from terminal.model import ProductId

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BeepPattern:
    """``count`` beeps of ``on_s`` seconds, ``off_s`` seconds apart."""

    on_s: float
    off_s: float
    count: int


BUZZER_PATTERNS: dict[Signal, BeepPattern] = {
    "approved": BeepPattern(on_s=0.15, off_s=0.0, count=1),
    "declined": BeepPattern(on_s=0.08, off_s=0.08, count=3),
    "error": BeepPattern(on_s=0.6, off_s=0.0, count=1),
}
# How long the ok / error LED stays lit after an outcome.
OUTCOME_LED_S = 1.5


class GpioOutputs:
    """The real outputs. A relay only ever closes inside dispense(); release() opens them all for good.

    Each product pulses its own relay (``[gpio] relays``) or the default one (``relay_pin``). Pulses run
    one at a time, in the order sold, ``relay_gap_ms`` apart, whichever relay they are on: the machine
    sees each product as its own pulse, never two at once.
    """

    def __init__(self, cfg: GpioConfig) -> None:
        from gpiozero import LED, Buzzer, OutputDevice  # imported here: only the adapter needs gpiozero

        self._cfg = cfg
        # Keep a reference to every device: a collected gpiozero device frees (and floats) its pin.
        relay_pins = dict.fromkeys(p for p in (cfg.relay_pin, *cfg.relays.values()) if p is not None)
        self._relays: dict[int, Any] = {
            pin: OutputDevice(pin, active_high=cfg.relay_active_high, initial_value=False)
            for pin in relay_pins
        }
        self._buzzer: Any = Buzzer(cfg.buzzer_pin) if cfg.buzzer_pin is not None else None
        self._led_ok: Any = LED(cfg.led_ok_pin) if cfg.led_ok_pin is not None else None
        self._led_error: Any = LED(cfg.led_error_pin) if cfg.led_error_pin is not None else None
        self._led_online: Any = LED(cfg.led_online_pin) if cfg.led_online_pin is not None else None
        self._wake = threading.Condition()
        self._pending: deque[tuple[str, int]] = deque()  # (product, relay pin) still to pulse
        self._released = False
        self._pulses_done = 0
        self._watchers: list[tuple[int, Callable[[], None]]] = []  # (ticket, callback) of when_dispensed
        self._queued = 0  # pulses ever queued; a sale's ticket is this count after its own pulses
        self._worker = threading.Thread(target=self._pulse_relay, name="relay-pulses", daemon=True)
        self._worker.start()
        # Runs before gpiozero's own exit hook (registered earlier, atexit is LIFO), so the relay opens
        # while its pin is still an output.
        atexit.register(self.release)

    @property
    def pulses_done(self) -> int:
        with self._wake:
            return self._pulses_done

    def dispense(self, products: Sequence[ProductId]) -> int:
        with self._wake:
            if self._released:
                log.warning("relay released (service stopping): %d product(s) not dispensed", len(products))
                return -1
            for product in products:
                pin = self._cfg.relay_for(product)
                if pin is None:
                    # Nothing for the terminal to switch: staff hand the product over.
                    log.warning("no relay configured for product %s: not dispensed by the terminal", product)
                    continue
                # Pulses queue up: a sale while another is still pulsing adds to it, none is cut short.
                self._pending.append((str(product), pin))
                self._queued += 1
            self._wake.notify_all()
            return self._queued

    def dispensed(self, ticket: int) -> bool:
        with self._wake:
            return 0 <= ticket <= self._pulses_done

    def when_dispensed(self, ticket: int, callback: Callable[[], None]) -> None:
        # Told by the pulse thread, not looked at on a timer: a Pi's CPU goes to taps, not to polling.
        with self._wake:
            if not (self._released or ticket < 0 or ticket <= self._pulses_done):
                self._watchers.append((ticket, callback))
                return
        callback()

    def _tell_watchers(self) -> None:
        """Call the watchers whose pulses are done (every one once released). Holds the lock: a
        callback only hands over to another thread (``call_soon_threadsafe``) and never blocks."""
        due = [w for w in self._watchers if self._released or w[0] <= self._pulses_done]
        if due:
            self._watchers = [w for w in self._watchers if w not in due]
            for _, callback in due:
                callback()

    def signal(self, kind: Signal) -> None:
        if self._released:
            return
        pattern = BUZZER_PATTERNS[kind]
        if self._buzzer is not None:
            self._buzzer.beep(on_time=pattern.on_s, off_time=pattern.off_s, n=pattern.count, background=True)
        approved = kind == "approved"
        led, other = (self._led_ok, self._led_error) if approved else (self._led_error, self._led_ok)
        if other is not None:
            other.off()
        if led is not None:
            led.blink(on_time=OUTCOME_LED_S, off_time=0, n=1, background=True)

    def set_online(self, online: bool) -> None:
        if self._led_online is None or self._released:
            return
        if online:
            self._led_online.on()
        else:
            self._led_online.off()

    def release(self) -> None:
        with self._wake:
            self._released = True
            self._pending.clear()
            # Switch the relays off inside the lock: the worker cannot close one again after this point.
            for device in self._devices():
                if device is not None:
                    try:
                        device.off()  # off() also stops a running blink/beep
                    except Exception:  # a device already closed by gpiozero's exit hook is off anyway
                        log.debug("could not switch %r off", device, exc_info=True)
            self._wake.notify_all()
            self._tell_watchers()

    def close(self) -> None:
        """Release, stop the worker and free the pins."""
        self.release()
        self._worker.join(timeout=2.0)
        atexit.unregister(self.release)
        for device in self._devices():
            if device is not None:
                device.close()

    def _devices(self) -> tuple[Any, ...]:
        """Every output device, relays first (None where a pin is not configured)."""
        return (*self._relays.values(), self._buzzer, self._led_ok, self._led_error, self._led_online)

    def _pulse_relay(self) -> None:
        pulse_s = self._cfg.relay_pulse_ms / 1000
        gap_s = self._cfg.relay_gap_ms / 1000
        with self._wake:
            while not self._released:
                if not self._pending:
                    self._wake.wait()
                    continue
                product, pin = self._pending.popleft()
                relay = self._relays[pin]
                log.debug("relay GPIO%d: pulse for %s", pin, product)
                relay.on()
                # wait_for returns early when release() runs; release() has already opened the relay.
                self._wake.wait_for(lambda: self._released, timeout=pulse_s)
                if self._released:
                    return
                relay.off()
                self._pulses_done += 1
                self._tell_watchers()
                if self._pending:
                    self._wake.wait_for(lambda: self._released, timeout=gap_s)


class LogOutputs:
    """The software twin: logs what the relay, buzzer and LEDs would do (GPIO disabled, demo, laptops)."""

    def __init__(self) -> None:
        self.pulses = 0
        self.products: list[str] = []  # every product dispensed, in order
        self.signals: list[Signal] = []
        self.online: bool | None = None
        self.released = False

    def dispense(self, products: Sequence[ProductId]) -> int:
        if self.released:
            log.warning("outputs released (service stopping): %d product(s) not dispensed", len(products))
            return -1
        self.pulses += len(products)
        self.products += [str(p) for p in products]
        if products:
            log.info("relay: %d pulse(s): %s", len(products), ", ".join(str(p) for p in products))
        return self.pulses

    def dispensed(self, ticket: int) -> bool:
        return 0 <= ticket <= self.pulses

    def when_dispensed(self, ticket: int, callback: Callable[[], None]) -> None:
        callback()  # the twin's pulses are given (or released) the moment they are asked for

    def signal(self, kind: Signal) -> None:
        self.signals.append(kind)
        log.debug("buzzer: %s", kind)  # the sale's own line says how it ended; -v shows the signal

    def set_online(self, online: bool) -> None:
        if online != self.online:
            log.info("online LED: %s", "on" if online else "off")
        self.online = online

    def release(self) -> None:
        # Called on every way out (the stop, then the clean-up that makes sure): said once.
        if not self.released:
            log.info("outputs released")
        self.released = True
