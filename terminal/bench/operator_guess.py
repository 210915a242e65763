"""The brute-force cost of an operator entry: guesses per second against the old unsalted SHA-256 of a
UID and against the keyed hash, and what sweeping a 4-byte UID space costs with and without the key."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Any

from terminal.controller.operators import KEY_BYTES, card_entry, new_operator_key, parse_operator_key

UID4_SPACE = 2**32  # a 4-byte UID (MIFARE Classic, NTAG clones): the weakest operator card
SECONDS_PER_YEAR = 365.25 * 24 * 3600


def _rate(guess: Callable[[str], str], seconds: float) -> float:
    """Guesses per second of ``guess`` over consecutive 4-byte UIDs, for about ``seconds``."""
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(2000):
            guess(f"{n:08X}")
            n += 1
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def measure_operator_guess(seconds: float = 1.0) -> dict[str, Any]:
    """``operator_guess``: one core's guesses/s against each scheme; the time to sweep every 4-byte UID
    with the config alone (the old scheme) and with the config and the key; and, with the config alone
    under the new scheme, log10 of the years a sweep of key × UID takes at the keyed rate."""
    key = parse_operator_key(new_operator_key())
    sha = _rate(lambda uid: hashlib.sha256(uid.encode("ascii")).hexdigest(), seconds)
    keyed = _rate(lambda uid: card_entry(key, uid), seconds)
    without_key_log10_years = (KEY_BYTES * 8 + 32) * math.log10(2) - math.log10(keyed * SECONDS_PER_YEAR)
    return {
        "operator_guess": {
            "sha256_per_s": round(sha),
            "keyed_with_key_per_s": round(keyed),
            "uid4_sweep_sha256_s": round(UID4_SPACE / sha, 1),
            "uid4_sweep_keyed_with_key_s": round(UID4_SPACE / keyed, 1),
            "key_bits": KEY_BYTES * 8,
            "uid4_sweep_without_key_log10_years": round(without_key_log10_years, 1),
        }
    }
