"""Shift reports and exports of the journal for the people who run the bar (taptill report, journal --csv)."""
