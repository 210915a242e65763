"""Drives the relay, buzzer and status LEDs through gpiozero; and their logging twin for GPIO-less hosts."""

from __future__ import annotations

import atexit
import logging
import threading
from dataclasses import dataclass
from typing import Any

from hw.gpio.base import Signal
from terminal.config import GpioConfig

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
    """The real outputs. The relay only ever closes inside dispense(); release() opens it for good."""

    def __init__(self, cfg: GpioConfig) -> None:
        from gpiozero import LED, Buzzer, OutputDevice  # imported here: only the adapter needs gpiozero

        self._cfg = cfg
        # Keep a reference to every device: a collected gpiozero device frees (and floats) its pin.
        self._relay: Any = (
            OutputDevice(cfg.relay_pin, active_high=cfg.relay_active_high, initial_value=False)
            if cfg.relay_pin is not None
            else None
        )
        self._buzzer: Any = Buzzer(cfg.buzzer_pin) if cfg.buzzer_pin is not None else None
        self._led_ok: Any = LED(cfg.led_ok_pin) if cfg.led_ok_pin is not None else None
        self._led_error: Any = LED(cfg.led_error_pin) if cfg.led_error_pin is not None else None
        self._led_online: Any = LED(cfg.led_online_pin) if cfg.led_online_pin is not None else None
        self._wake = threading.Condition()
        self._pending = 0
        self._released = False
        self._pulses_done = 0
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

    def dispense(self, count: int) -> int:
        if count < 0:
            raise ValueError(f"cannot dispense {count} products; the count must be 0 or more")
        with self._wake:
            if self._released:
                log.warning("relay released (service stopping): %d product(s) not dispensed", count)
                return -1
            if self._relay is None:
                # Nothing for the terminal to switch: staff hand the product over.
                log.warning("no relay_pin configured: %d product(s) not dispensed", count)
                return 0
            # Pulses queue up: a second sale while the first is still pulsing adds to it, none is cut short.
            self._pending += count
            self._queued += count
            self._wake.notify_all()
            return self._queued

    def dispensed(self, ticket: int) -> bool:
        with self._wake:
            return 0 <= ticket <= self._pulses_done

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
            self._pending = 0
            # Switch the relay off inside the lock: the worker cannot close it again after this point.
            for device in (self._relay, self._buzzer, self._led_ok, self._led_error, self._led_online):
                if device is not None:
                    try:
                        device.off()  # off() also stops a running blink/beep
                    except Exception:  # a device already closed by gpiozero's exit hook is off anyway
                        log.debug("could not switch %r off", device, exc_info=True)
            self._wake.notify_all()

    def close(self) -> None:
        """Release, stop the worker and free the pins."""
        self.release()
        self._worker.join(timeout=2.0)
        atexit.unregister(self.release)
        for device in (self._relay, self._buzzer, self._led_ok, self._led_error, self._led_online):
            if device is not None:
                device.close()

    def _pulse_relay(self) -> None:
        pulse_s = self._cfg.relay_pulse_ms / 1000
        gap_s = self._cfg.relay_gap_ms / 1000
        with self._wake:
            while not self._released:
                if self._pending == 0:
                    self._wake.wait()
                    continue
                self._pending -= 1
                self._relay.on()
                # wait_for returns early when release() runs; release() has already opened the relay.
                self._wake.wait_for(lambda: self._released, timeout=pulse_s)
                if self._released:
                    return
                self._relay.off()
                self._pulses_done += 1
                if self._pending:
                    self._wake.wait_for(lambda: self._released, timeout=gap_s)


class LogOutputs:
    """The software twin: logs what the relay, buzzer and LEDs would do (GPIO disabled, demo, laptops)."""

    def __init__(self) -> None:
        self.pulses = 0
        self.signals: list[Signal] = []
        self.online: bool | None = None
        self.released = False

    def dispense(self, count: int) -> int:
        if count < 0:
            raise ValueError(f"cannot dispense {count} products; the count must be 0 or more")
        if self.released:
            log.warning("outputs released (service stopping): %d product(s) not dispensed", count)
            return -1
        self.pulses += count
        log.info("relay: %d pulse(s)", count)
        return self.pulses

    def dispensed(self, ticket: int) -> bool:
        return 0 <= ticket <= self.pulses

    def signal(self, kind: Signal) -> None:
        self.signals.append(kind)
        log.info("buzzer: %s", kind)

    def set_online(self, online: bool) -> None:
        if online != self.online:
            log.info("online LED: %s", "on" if online else "off")
        self.online = online

    def release(self) -> None:
        self.released = True
        log.info("outputs released")
