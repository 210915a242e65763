"""Operator cards against a leaked config and a cloned card: keyed entries, the PIN and its lockout,
the caps on what an operator may credit, and the operator's name on every top-up."""

from __future__ import annotations

import hashlib
import io
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from terminal.config import ConfigError, OfflineConfig, OperatorEntry, parse_topup
from terminal.config_section import Section
from terminal.controller import Controller, ControllerSettings
from terminal.controller.operators import OperatorBook, card_entry, key_id, new_operator_key, pin_entry
from terminal.controller.settings import PinRecord
from terminal.effects import Charge, Effect, RecordDecline, RecordPin, Show, StartTimer
from terminal.emulator.wallet import WalletEmulator
from terminal.events import (
    ButtonPressed,
    CardPresented,
    CardRemoved,
    ChargeDone,
    TimerFired,
    WalletBalance,
    WalletUnreachable,
)
from terminal.journal import Journal, OfflineView
from terminal.model import DeclineReason, Product
from terminal.ops.operator_card import add_operator
from terminal.screens import DeclinedScreen, KioskScreen, PinScreen, Screen
from terminal.service.boot_clock import Moment
from terminal.service.pin_lockouts import restore_pins
from tests.terminal_lab import (
    ERIKA,
    MAX,
    REPO,
    TerminalProcess,
    faketime_env,
    journal_lines,
    kiosk_operators,
    pin_kiosk,
    settled,
    taptill,
    wait_for,
    write_config,
)

OPERATOR = "0000BEEF"  # a 4-byte UID: the kind the security review brute-forced in 12 s
GUEST = "04DEADBEEF0001"
KEY = bytes(range(32))
PIN = ("ten", "clear", "twenty", "ten")  # the controller's tests; a config needs 7 presses on 3 buttons
PIN7 = ("ten", "clear", "twenty", "ten", "twenty", "clear", "ten")  # 3 ** 7 = 2187 PINs
CATALOG = (Product("topup_10", "Aufladung 10 €", -1000), Product("topup_20", "Aufladung 20 €", -2000))
KIOSK = ControllerSettings(
    products=(),
    offline=OfflineConfig(mode="accept"),
    mode="topup",
    buttons={"ten": "topup_10", "twenty": "topup_20"},
    cancel_button="clear",
    operators=OperatorBook(
        KEY, [OperatorEntry("olga", card_entry(KEY, OPERATOR), pin_entry(KEY, "olga", PIN))]
    ),
    pin_required=True,
    pin_attempts=3,
    pin_lockout_s=300.0,
)


def screens(effects: list[Effect]) -> list[Screen]:
    return [e.screen for e in effects if isinstance(e, Show)]


def tap(c: Controller, uid: str) -> list[Effect]:
    fx = c.handle(CardPresented(uid))
    c.handle(CardRemoved())
    return fx


def press(c: Controller, *buttons: str) -> list[Effect]:
    fx: list[Effect] = []
    for b in buttons:
        fx = c.handle(ButtonPressed(b))
    return fx


# --- a leaked config --------------------------------------------------------------------------------


def test_the_reviews_brute_force_finds_nothing_in_a_leaked_config(tmp_path: Path) -> None:
    """The attack: sweep UIDs, hash each as the old config did, look for it among the entries. It found
    a 4-byte card in seconds; against keyed entries it finds nothing, while the same sweep with the key
    (which the config does not hold) finds the card at once."""
    key_line, operators = kiosk_operators(tmp_path, {"olga": OPERATOR})
    leaked = operators.split('"')[1]  # what a reader of the config sees
    key = bytes.fromhex((tmp_path / "operator.key").read_text())
    sweep = [f"{n:08X}" for n in range(0xBE00, 0xBF00)]  # the real UID is in it
    assert OPERATOR in sweep
    assert not [u for u in sweep if hashlib.sha256(u.encode()).hexdigest() in leaked]
    assert [u for u in sweep if card_entry(key, u) == leaked] == [OPERATOR]
    assert stat.S_IMODE((tmp_path / "operator.key").stat().st_mode) == 0o600
    assert key.hex() not in operators and key.hex() not in key_line


def test_an_old_sha256_config_is_refused_at_start_with_the_fix(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as server:
        old = hashlib.sha256(OPERATOR.encode()).hexdigest()
        extra = f'[topup]\noperators = ["{old}"]\nbuttons = {{ ten = "topup_10" }}\n'
        config = write_config(tmp_path, server, products=[], mode="topup", extra=extra)
        run = taptill("run", "--config", str(config), check=False, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("taptill:")]
    assert "unsalted SHA-256" in line and "taptill operator add NAME" in line


def test_an_operator_key_others_can_read_is_refused_at_start(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as server:
        key_line, operators = kiosk_operators(tmp_path, {"olga": OPERATOR})
        extra = f'[topup]\n{key_line}\nbuttons = {{ ten = "topup_10" }}\n{operators}'
        config = write_config(tmp_path, server, products=[], mode="topup", extra=extra)
        (tmp_path / "operator.key").chmod(0o644)
        run = taptill("run", "--config", str(config), check=False, timeout=60)
    assert run.returncode == 2
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("taptill:")]
    assert "readable by group or others" in line and "chmod 600" in line
    assert (tmp_path / "operator.key").read_text().strip() not in run.stderr


def test_entries_made_under_another_key_are_refused_at_start_not_found_out_at_the_counter(
    tmp_path: Path,
) -> None:
    """The operator key was replaced (deleted, then `operator add` made a new one) or the config comes
    from another terminal: the entries carry their key's id, so the start names them and the fix."""
    with WalletEmulator.demo("doc") as server:
        key_line, operators = kiosk_operators(tmp_path, {"olga": OPERATOR})
        extra = f'[topup]\n{key_line}\nbuttons = {{ ten = "topup_10" }}\n{operators}'
        config = write_config(tmp_path, server, products=[], mode="topup", extra=extra)
        (tmp_path / "operator.key").write_text(new_operator_key() + "\n")
        run = taptill("run", "--config", str(config), check=False, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("taptill:")]
    assert "olga: made under another operator key" in line and "taptill operator add olga" in line
    assert key_id(bytes.fromhex((tmp_path / "operator.key").read_text())) not in operators


def test_an_entry_from_before_key_ids_still_unlocks_and_one_under_another_key_never_does() -> None:
    card, pin = card_entry(KEY, OPERATOR), pin_entry(KEY, "olga", PIN)
    assert card.startswith(f"hmac-sha256:{key_id(KEY)}:")
    old = OperatorEntry(
        "olga", "hmac-sha256:" + card.rsplit(":", 1)[1], "hmac-sha256:" + pin.rsplit(":", 1)[1]
    )
    book = OperatorBook(KEY, [old])
    assert book.operator_for(OPERATOR) == "olga" and book.pin_matches("olga", PIN)
    assert book.without_key_id() == ["olga"] and book.made_elsewhere() == []
    other = bytes(range(1, 33))
    elsewhere = OperatorBook(KEY, [OperatorEntry("max", card_entry(other, OPERATOR))])
    assert elsewhere.operator_for(OPERATOR) is None and elsewhere.made_elsewhere() == ["max"]


def test_operator_add_prints_the_line_and_never_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[topup]\noperator_key_file = "op.key"\nbuttons = { ten = "t", twenty = "u" }\n'
        'clear_button = "clear"\npin_length = 7\n'
    )

    def add(stdin: str, *more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "terminal", "operator", "add", "olga", "--config", str(config), *more],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO,
            check=False,
        )

    first = add("00:00:be:ef\n")
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "op.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and "created the operator key" in first.stderr
    key = bytes.fromhex(key_file.read_text())
    assert first.stdout == f'olga = "{card_entry(key, OPERATOR)}"\n'
    assert key.hex() not in first.stdout + first.stderr
    again = add(f"0000BEEF\n{' '.join(PIN7)}\n", "--pin")  # the same key: the same card entry
    assert again.returncode == 0 and "created" not in again.stderr
    assert again.stdout == (
        f'olga = {{ card = "{card_entry(key, OPERATOR)}", pin = "{pin_entry(key, "olga", PIN7)}" }}\n'
    )
    bad = add("0000BEEF\nten nine\n", "--pin")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "pin_length wants 7" in bad.stderr
    key_file.chmod(0o640)
    leaky = add("0000BEEF\n")
    assert leaky.returncode == 2 and "chmod 600" in leaky.stderr and leaky.stdout == ""


# --- a cloned card: the PIN ----------------------------------------------------------------------


def test_a_cloned_card_without_the_pin_is_locked_out_after_three_guesses() -> None:
    c = Controller(KIOSK, CATALOG)
    c.start()
    assert screens(tap(c, OPERATOR)) == [PinScreen(0, 4)] and c.operator is None
    assert screens(press(c, "ten")) == [PinScreen(1, 4)]
    for attempt in range(3):
        if attempt:
            tap(c, OPERATOR)
        fx = press(c, *(("twenty",) * (4 if attempt else 3)))
        assert c.operator is None
    assert screens(fx) == [DeclinedScreen(DeclineReason.PIN_LOCKED_OUT)]
    (lockout,) = [e for e in fx if isinstance(e, StartTimer) and e.delay_s == KIOSK.pin_lockout_s]
    # Locked out: even the right PIN is not asked for, nor a guest credited.
    assert screens(tap(c, OPERATOR)) == [DeclinedScreen(DeclineReason.PIN_LOCKED_OUT)]
    assert screens(tap(c, GUEST)) == [DeclinedScreen(DeclineReason.KIOSK_LOCKED)]
    c.handle(TimerFired(lockout.token))
    tap(c, OPERATOR)
    fx = press(c, *PIN)
    assert c.operator == "olga" and screens(fx)[-1] == KioskScreen(0, (("ten", 1000), ("twenty", 2000)))


def test_a_wrong_pin_then_the_right_one_unlocks_and_a_success_clears_the_count() -> None:
    c = Controller(KIOSK, CATALOG)
    tap(c, OPERATOR)
    assert screens(press(c, "ten", "ten", "ten", "ten")) == [DeclinedScreen(DeclineReason.WRONG_PIN)]
    tap(c, OPERATOR)
    press(c, *PIN)
    assert c.operator == "olga"
    tap(c, OPERATOR)  # locks
    for _ in range(2):  # two more wrong ones do not lock out: the success cleared the count
        tap(c, OPERATOR)
        press(c, "ten", "ten", "ten", "ten")
    tap(c, OPERATOR)
    press(c, *PIN)
    assert c.operator == "olga"


# --- a PIN space too small to bound guessing --------------------------------------------------------


def topup_table(buttons: int, pin_length: int, **more: object) -> dict[str, object]:
    key = bytes(range(32))
    names = ["ten", "twenty", "fifty"][: buttons - 1]
    return {
        "buttons": {n: f"topup_{n}" for n in names},
        "clear_button": "clear",
        "pin_length": pin_length,
        "operators": {"olga": {"card": card_entry(key, OPERATOR), "pin": pin_entry(key, "olga", ["ten"])}},
        **more,
    }


@pytest.mark.parametrize(
    ("buttons", "pin_length", "said"),
    [
        (
            2,
            1,
            "a PIN of 1 press on 2 buttons has only 2 combinations, which a cloned operator card tries in "
            "full before its first lockout; set [topup] pin_length = 10 or more (at least 1000 combinations)",
        ),
        (
            3,
            4,
            "81 combinations, which a cloned operator card tries in full within 2.2 hours; set [topup] "
            "pin_length = 7 or more",
        ),
        (
            4,
            4,
            "256 combinations, which a cloned operator card tries in full within 7.1 hours; set [topup] "
            "pin_length = 5 or more",
        ),
    ],
)
def test_a_pin_space_a_cloned_card_sweeps_within_hours_is_refused_at_load_with_the_fix(
    buttons: int, pin_length: int, said: str
) -> None:
    """The attack: a cloned operator card tries every PIN, pin_attempts per lockout. Refused for an
    operator with a PIN (as here) as for pin_required; a space of 1000 and more loads."""
    with pytest.raises(ConfigError) as refused:
        parse_topup(Section("topup", topup_table(buttons, pin_length)))
    assert said in str(refused.value) and "\n" not in str(refused.value)
    one_button = topup_table(2, 12)
    del one_button["clear_button"]
    with pytest.raises(ConfigError, match="give the kiosk more buttons"):
        parse_topup(Section("topup", one_button))
    enough = parse_topup(Section("topup", topup_table(buttons, 10)))
    assert enough.pin_space >= 1000 and enough.pin_sweep_s >= 333 * 300
    no_pins = topup_table(buttons, pin_length)
    no_pins["operators"] = {"olga": card_entry(bytes(range(32)), OPERATOR)}
    assert not parse_topup(Section("topup", no_pins)).pin_in_use  # no PIN: nothing to guess


def test_operator_add_refuses_a_pin_from_a_space_too_small(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[topup]\noperator_key_file = "op.key"\nbuttons = { ten = "t", twenty = "u" }\nclear_button = "c"\n'
    )
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(ConfigError, match=r"only 81 combinations.*pin_length = 7 or more"):
        add_operator(
            config, "olga", with_pin=True, stdin=io.StringIO("0000BEEF\nten c ten twenty\n"), out=out, err=err
        )
    assert out.getvalue() == ""


# --- the lockout across restarts and clock steps ------------------------------------------------------

WRONG = ("twenty",) * 4
DAY_S = 86_400.0


def test_every_wrong_pin_is_journaled_before_it_is_shown_and_a_restart_carries_on_the_count() -> None:
    c = Controller(KIOSK, CATALOG)
    c.start()
    tap(c, OPERATOR)
    fx = press(c, *WRONG)
    shown = next(i for i, e in enumerate(fx) if isinstance(e, Show))
    assert fx.index(RecordPin("olga", 1)) < shown  # durable before anyone sees the answer
    tap(c, OPERATOR)
    assert RecordPin("olga", 0) in press(c, *PIN)  # a right PIN forgets the count
    # What the journal held when the terminal stopped: two wrong PINs. One more locks the card out.
    again = Controller(replace(KIOSK, pins={"olga": PinRecord(wrong=2)}), CATALOG)
    again.start()
    tap(again, OPERATOR)
    fx = press(again, *WRONG)
    assert screens(fx) == [DeclinedScreen(DeclineReason.PIN_LOCKED_OUT)]
    assert fx.index(RecordPin("olga", 3, locked=True)) < fx.index(Show(screens(fx)[0]))


def test_a_lockout_running_at_start_goes_on_for_what_is_left_of_it() -> None:
    c = Controller(replace(KIOSK, pins={"olga": PinRecord(wrong=3, locked_for_s=42.0)}), CATALOG)
    (timer,) = [e for e in c.start() if isinstance(e, StartTimer)]
    assert timer.delay_s == 42.0
    assert screens(tap(c, OPERATOR)) == [DeclinedScreen(DeclineReason.PIN_LOCKED_OUT)]
    c.handle(TimerFired(timer.token))
    assert screens(tap(c, OPERATOR)) == [PinScreen(0, 4)]
    fx = press(c, *WRONG)  # a fresh count after the lockout: one wrong PIN is not a lockout
    assert screens(fx) == [DeclinedScreen(DeclineReason.WRONG_PIN)] and RecordPin("olga", 1) in fx


def test_a_lockout_counts_on_the_boot_clock_and_starts_over_once_after_a_reboot(tmp_path: Path) -> None:
    """The rule (terminal/service/pin_lockouts.py): within a boot, CLOCK_BOOTTIME measures it, whatever
    the wall clock does; after a reboot the lockout starts over in full, re-anchored once."""
    journal = Journal.open(tmp_path / "journal.sqlite3")
    began = Moment(1_750_000_000.0, "boot-a", 100.0)
    journal.note_pin_failures("olga", 3, began)
    journal.note_pin_failures("max", 1)
    for wall in (began.wall + DAY_S, began.wall - DAY_S):  # stepped a day either way, 60 s later
        pins = restore_pins(journal, Moment(wall, "boot-a", 160.0), 300.0)
        assert pins == {"olga": PinRecord(3, 240.0), "max": PinRecord(1)}
    assert restore_pins(journal, Moment(began.wall, "boot-a", 400.5), 300.0) == {"max": PinRecord(1)}
    for wall in (began.wall + DAY_S, began.wall - DAY_S):  # a reboot: neither over at once nor forever
        after = Moment(wall, f"boot-{wall}", 20.0)
        assert restore_pins(journal, after, 300.0)["olga"] == PinRecord(3, 300.0)
        assert journal.pin_failures()["olga"].locked_at == after
        later = Moment(after.wall - DAY_S, after.boot, 270.0)  # and the clock stepped back again
        assert restore_pins(journal, later, 300.0)["olga"] == PinRecord(3, 50.0)
    journal.note_pin_failures("olga", 0)
    assert restore_pins(journal, Moment(began.wall, "boot-a", 101.0), 300.0) == {"max": PinRecord(1)}
    journal.close()


# --- caps ------------------------------------------------------------------------------------------


def unlocked(settings: ControllerSettings) -> Controller:
    c = Controller(settings, CATALOG)
    tap(c, OPERATOR)
    press(c, *PIN)
    assert c.operator == "olga"
    return c


def test_one_unlock_credits_no_more_than_its_cap() -> None:
    c = unlocked(replace(KIOSK, max_credit_per_unlock_cents=2500))
    press(c, "twenty")
    tap(c, GUEST)
    (charge,) = [e for e in c.handle(WalletBalance(GUEST, 0)) if isinstance(e, Charge)]
    assert charge.operator == "olga" and charge.amount_cents == 2000
    c.handle(ChargeDone("k", 2000))
    press(c, "ten")
    fx = tap(c, ERIKA)  # 2000 + 1000 > 2500
    assert screens(fx) == [DeclinedScreen(DeclineReason.CREDIT_LIMIT)]
    assert not [e for e in fx if isinstance(e, Charge)]
    tap(c, OPERATOR)  # lock, and a fresh unlock starts a fresh count
    tap(c, OPERATOR)
    press(c, *PIN)
    press(c, "ten")
    tap(c, MAX)
    assert [e for e in c.handle(WalletBalance(MAX, 0)) if isinstance(e, Charge)]


def test_offline_top_ups_stop_at_their_cap() -> None:
    c = unlocked(replace(KIOSK, max_offline_credit_cents=2500))
    press(c, "twenty")
    tap(c, GUEST)
    owed = OfflineView(None, None, 0, -2000, 1, None, unconfirmed_credit_cents=2000)
    fx = c.handle(WalletUnreachable(GUEST, owed))
    assert screens(fx) == [DeclinedScreen(DeclineReason.OFFLINE_LIMIT)]
    (decline,) = [e for e in fx if isinstance(e, RecordDecline)]
    assert "max_offline_credit_cents" in str(decline.reason) and not [e for e in fx if isinstance(e, Charge)]
    c.handle(TimerFired(max(e.token for e in fx if isinstance(e, StartTimer))))
    press(c, "clear", "ten")  # 500 of room is not 1000 either; nothing owed is
    tap(c, ERIKA)
    fx = c.handle(WalletUnreachable(ERIKA, OfflineView(None, None, 0, 0, 0, None)))
    (charge,) = [e for e in fx if isinstance(e, Charge)]
    assert charge.online is False and charge.amount_cents == 1000


# --- end to end ---------------------------------------------------------------------------------


def test_kiosk_with_pin_names_the_operator_on_the_server_and_keeps_the_shift_cap_across_a_restart(
    tmp_path: Path,
) -> None:
    extra = pin_kiosk(tmp_path, "olga", OPERATOR, PIN7, max_credit_per_shift_cents=2500)

    def unlock_and_credit(term: TerminalProcess, button: str, guest: str) -> None:
        term.tap(OPERATOR)
        for b in PIN7:
            taptill("press", b, "--config", str(term.config))
        taptill("press", button, "--config", str(term.config))
        term.tap(guest)

    with WalletEmulator.demo("doc") as server:
        config = write_config(tmp_path, server, products=[], mode="topup", extra=extra)
        term = TerminalProcess(config)
        try:
            unlock_and_credit(term, "twenty", ERIKA)
            wait_for(lambda: settled(config, 1), what="the first top-up")
        finally:
            term.stop()
        again = TerminalProcess(config)  # a restart does not give the operator a fresh shift
        try:
            unlock_and_credit(again, "ten", MAX)
            wait_for(lambda: len(journal_lines(config)) == 2, what="the second tap's decline")
            time.sleep(0.3)
        finally:
            again.stop()
        (credit,) = server.transactions()
    assert credit.token_id == ERIKA and credit.amount == 2000
    assert credit.description is not None and credit.description.endswith("/ operator olga")
    first, second = journal_lines(config)
    assert first["operator"] == "olga" and first["state"] == "done"
    assert second["state"] == "declined" and "shift cap 2500" in second["reason"]


def test_a_lockout_outlives_restarts_and_clock_steps_of_a_day_and_then_ends(tmp_path: Path) -> None:
    """The attack: wrong PINs until the card is locked out, then restart the terminal (a power cut, a
    provoked crash) for fresh attempts; with the wall clock stepped a day ahead, then a day back (NTP,
    fake-hwclock). The card stays locked out until pin_lockout_s have passed, then the PIN works."""
    lockout_s = 15.0
    extra = pin_kiosk(tmp_path, "olga", OPERATOR, PIN7, pin_attempts=2, pin_lockout_s=lockout_s)
    offset = tmp_path / "faketime"
    locked_out = "declined: too many wrong PINs"
    asked = "operator: enter the PIN with the buttons"

    def started() -> TerminalProcess:
        return TerminalProcess(config, env=faketime_env(offset))

    def press_all(term: TerminalProcess, buttons: tuple[str, ...]) -> None:
        for b in buttons:
            assert term.send(f"press {b}") == "ok"

    with WalletEmulator.demo("doc") as server:
        config = write_config(tmp_path, server, products=[], mode="topup", extra=extra)
        term = started()
        try:
            for _ in range(2):
                assert term.send(f"tap-wait {OPERATOR}") == asked
                press_all(term, ("twenty",) * 7)
            locked_at = time.monotonic()
            assert term.send(f"tap-wait {OPERATOR}").startswith(locked_out)
        finally:
            assert term.stop() == 0
        for step in ("+1d", "-1d"):
            offset.write_text(f"{step}\n")
            term = started()
            try:
                assert term.send(f"tap-wait {OPERATOR}").startswith(locked_out), step
            finally:
                assert term.stop() == 0
        term = started()  # still a day behind
        try:
            wait_for(
                lambda: term.send(f"tap-wait {OPERATOR}") == asked,
                timeout=lockout_s + 20,
                what="the lockout to end",
            )
            ended_after = time.monotonic() - locked_at
            press_all(term, (*PIN7, "ten"))
            assert term.send(f"tap-wait {ERIKA}").startswith("approved: credited 10,00")
        finally:
            assert term.stop() == 0
    assert ended_after >= lockout_s - 0.5, ended_after
    assert "locked out" in term.log()
