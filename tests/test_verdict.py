"""The metrics' tap labels and `taptill tap`'s decision line read every screen the same way."""

from __future__ import annotations

import pytest

from hw.display.gallery import SAMPLES
from terminal.effects import Beep, Effect, Show
from terminal.model import DeclineReason
from terminal.ops.tap_outcome import GOOD_WORDS, decision_line
from terminal.screens import DeclinedScreen, Screen
from terminal.screens.verdict import decision, last_screen, verdict

# decision_line's first word for each outcome: a screen no tap ends on reads "declined" there and
# "other" in the metrics; the rest must agree word for word.
FIRST_WORD = {"other": "declined"}


def first_word(line: str) -> str:
    return line.replace(":", " ").split()[0]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_decision_line_and_the_metrics_label_agree_on_every_screen(name: str) -> None:
    screen = SAMPLES[name]
    outcome, reason = verdict(screen)
    line = decision_line([Show(screen)], locale="de", currency="EUR", ignored="busy")
    assert first_word(line) == FIRST_WORD.get(outcome, outcome), (line, outcome)
    assert reason  # an empty label reads in PromQL as no label at all
    assert (first_word(line) in GOOD_WORDS) == (outcome in ("approved", "balance", "operator")), line


def test_a_tap_ends_on_its_last_screen_and_no_screen_is_no_tap() -> None:
    declined: Screen = DeclinedScreen(DeclineReason.OFFLINE)
    first = SAMPLES["processing"]
    effects: list[Effect] = [Show(first), Beep("error"), Show(declined)]
    assert last_screen(effects) is declined
    assert decision(effects) == ("declined", "offline")
    assert last_screen([Beep("approved")]) is None
    assert decision([Beep("approved")]) == ("ignored", "no_screen")
    line = decision_line([Beep("approved")], locale="de", currency="EUR", ignored="reader busy")
    assert line == "busy: reader busy"
