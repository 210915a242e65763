"""The yourbarmate webhook sender emulator: delivery events, resends, duplicates and bad bodies."""

from terminal.emulator.yourbarmate.sender import Attempt, RateReport, Sender, Sent

__all__ = ["Attempt", "RateReport", "Sender", "Sent"]
