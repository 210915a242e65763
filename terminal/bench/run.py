"""``make bench``: measures the money path and prints one JSON object (metrics and targets) as the last line.

Progress goes to stderr. Everything runs on 127.0.0.1 and in temporary directories. A measurement that
fails is reported under ``errors`` (its metrics null) and makes the exit status 1. Every wait inside a
stage has its own deadline; a stage still running after STAGE_DEADLINE_S all the same (stuck where no
deadline reaches) is reported with where it stood, its child processes are ended and the bench exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from terminal.bench.gzip_bomb import measure_gzip_bomb
from terminal.bench.operator_guess import measure_operator_guess
from terminal.bench.pcsc import measure_pcsc
from terminal.bench.price import measure_price_to_screen
from terminal.bench.process import CPU_REPEATS, measure_process, measure_startup
from terminal.bench.r2o import measure_r2o_drain
from terminal.bench.store import measure_drain, measure_enqueue
from terminal.bench.tap import measure_tap_offline, measure_tap_online
from terminal.bench.webhook import measure_webhook
from terminal.service.loop_lag import culprit

TAP_BUDGET_MS = 800
PRICE_INTERVAL_S = 0.5  # the party's price interval in the bench (60 s at a real party): the ratio counts
STAGE_DEADLINE_S = 300.0  # the longest stage takes under a minute on a loaded 2-core machine
CHILD_STOP_S = 5.0
REALTIME_PRIORITY = 10  # SCHED_RR, low among real-time priorities: above every ordinary process
R2O_RATE_PER_MIN = 3000  # the mirror's drain, sped up from a venue's 20 a minute to keep the stage short
WEBHOOK_EVENTS_PER_S = 20.0  # issue 15: yourbarmate's webhook at 20 events/s while taps go on
WEBHOOK_LOAD_S = 15.0
WEBHOOK_TAP_MARGIN_MS = 5.0  # a tap may wait behind one event's handling in the loop, no more

METRIC_KEYS = (
    "tap_online_ms",
    "raw_lookup_post_ms",
    "loop_lag_ms",
    "tap_offline_ms",
    "enqueue_per_s",
    "raw_sqlite_per_s",
    "enqueue_vs_raw",
    "drain_per_s",
    "drain_per_s_nondedup",
    "startup_s",
    "tap_cpu_ms",
    "tap_cpu_ms_repeats",
    "rss_mb",
    "idle_cpu_pct",
    "pcsc_uid_ms",
    "pcsc_raw_event_ms",
    "pcsc_idle_cpu_pct",
    "price_to_screen_ms",
    "gzip_bomb_rss_mb",
    "operator_guess",
    "r2o_drain_per_min",
    "webhook_ms",
    "tap_webhook_ms",
)

Metrics = dict[str, Any]


def _progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _stage(
    name: str,
    metrics: Metrics,
    errors: dict[str, str],
    measure: Callable[[], Metrics],
    deadline_s: float = STAGE_DEADLINE_S,
    *,
    alone: bool = False,
) -> None:
    """Run one measurement into ``metrics``; its failure goes to ``errors`` and the next stage runs.

    ``alone``: the stage runs at real-time priority where the bench may (see ``_alone``).
    """
    _progress(f"{name} …")
    start = time.perf_counter()
    try:
        with _watchdog(name, metrics, errors, deadline_s), _alone(alone, name, metrics):
            result = measure()
    except Exception as exc:  # one broken measurement must not hide the others
        logging.getLogger(__name__).exception("%s failed", name)
        errors[name] = f"{type(exc).__name__}: {exc}"
        return
    metrics.update(result)
    _progress(f"{name}: {json.dumps(result)} ({time.perf_counter() - start:.1f} s)")


@contextlib.contextmanager
def _watchdog(name: str, metrics: Metrics, errors: dict[str, str], deadline_s: float) -> Iterator[None]:
    """Past ``deadline_s`` the stage is stuck: report what was measured, end our children, exit 1."""
    stage_thread = threading.get_ident()

    def overrun() -> None:
        frame = sys._current_frames().get(stage_thread)
        where = culprit(frame) if frame is not None else "unknown"
        errors[name] = f"TimeoutError: the stage did not finish within {deadline_s:g} s (stuck in {where})"
        _progress(f"{name}: stuck after {deadline_s:g} s in {where}; ending its child processes")
        _end_children()
        print(json.dumps(report(metrics, errors)), flush=True)
        os._exit(1)  # the stage's thread cannot be interrupted where it is stuck

    timer = threading.Timer(deadline_s, overrun)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _children() -> list[int]:
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == me:
            found.append(int(entry.name))
    return found


def _end_children() -> None:
    """SIGTERM to this process's children (a taptill run, a pcscd), SIGKILL to those still there later."""
    children = _children()
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_S
    while children and time.monotonic() < deadline:
        time.sleep(0.05)
        children = [pid for pid in children if pid in _children()]
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _pcsc() -> Metrics:
    got = measure_pcsc(n=10)
    return {
        "pcsc_uid_ms": got["pcsc_uid_ms"],
        "pcsc_raw_event_ms": got["pcsc_raw_event_ms"],
        "pcsc_idle_cpu_pct": got["idle_cpu_pct"],
    }


def _drain() -> Metrics:
    return {
        "drain_per_s": measure_drain(2000, "doc", dedupes=True),
        "drain_per_s_nondedup": measure_drain(2000, "real", dedupes=False),
    }


def _r2o_drain() -> Metrics:
    clean = measure_r2o_drain(1000, R2O_RATE_PER_MIN)
    lossy = measure_r2o_drain(200, R2O_RATE_PER_MIN, lost_share=0.05)
    return {"r2o_drain_per_min": {**clean, "with_lost_answers": lossy}}


def _check(
    metrics: Metrics, met: Callable[[], tuple[bool, float]], target: str, *needs: str
) -> dict[str, Any]:
    if any(metrics.get(key) is None for key in needs):
        return {"target": target, "met": None, "note": "not measured"}
    ok, limit = met()
    return {"target": target, "limit": round(limit, 2), "met": ok}


def evaluate_targets(m: Metrics, tap_budget_ms: int = TAP_BUDGET_MS) -> dict[str, dict[str, Any]]:
    """For each metric the target from the issues, the limit it implies in this run, and whether it is met.

    The online tap is held to its floor, the same balance GET and debit POST made alone: what the
    terminal adds (the decision, the durable journal write, the screen) may cost at most 2 ms at p99.
    """

    def tap() -> tuple[bool, float]:
        limit = m["raw_lookup_post_ms"]["p99"] + 2
        return m["tap_online_ms"]["p99"] <= limit, limit

    def lag() -> tuple[bool, float]:
        limit = 100.0
        return m["loop_lag_ms"]["max"] < limit, limit

    def offline() -> tuple[bool, float]:
        limit = tap_budget_ms + 300
        return m["tap_offline_ms"]["p50"] <= 50 and m["tap_offline_ms"]["max"] <= limit, limit

    def enqueue() -> tuple[bool, float]:
        # the journal's rate against bare SQLite's, round by round (terminal.bench.store says why)
        limit = 0.5
        return m["enqueue_vs_raw"] >= limit, limit

    def pcsc_uid() -> tuple[bool, float]:
        limit = m["pcsc_raw_event_ms"] + 20
        return m["pcsc_uid_ms"] <= limit, limit

    def price() -> tuple[bool, float]:
        limit = m["price_to_screen_ms"]["poll_interval_ms"]
        return m["price_to_screen_ms"]["p50"] <= limit, limit

    def bomb() -> tuple[bool, float]:
        limit = 10.0
        return m["gzip_bomb_rss_mb"]["over_baseline_mb"] < limit, limit

    def operator_guess() -> tuple[bool, float]:
        # Issue 17: >= 10^6 x slower than SHA-256, or infeasible without the secret. The keyed hash is
        # the second: a sweep of key x UID must outlast the universe (10^10 years) by far.
        limit = 30.0
        return m["operator_guess"]["uid4_sweep_without_key_log10_years"] >= limit, limit

    def r2o() -> tuple[bool, float]:
        # Issue 13: nothing lost or doubled, never a 429 at the configured rate, and drained at that rate
        # (within what one request's own time costs at 50 a second: at 20 a minute it is nothing).
        got = m["r2o_drain_per_min"]
        limit = 0.85 * got["allowed_per_min"]
        runs = (got, got.get("with_lost_answers", got))
        exact = all(r["invoices"] == r["backlog"] and r["rate_limited"] == 0 for r in runs)
        within = all(r["requests_per_min"] <= r["allowed_per_min"] for r in runs)
        return exact and within and got["invoices_per_min"] >= limit, limit

    def webhook() -> tuple[bool, float]:
        # Issue 15: each event answered well within any sender's patience, every one of them 200.
        limit = 100.0
        return m["webhook_ms"]["p99"] <= limit, limit

    def webhook_taps() -> tuple[bool, float]:
        # Issue 15: taps are not slowed by the webhook in their loop beyond one event's handling.
        taps = m["tap_webhook_ms"]
        limit = taps["quiet"]["p99"] + WEBHOOK_TAP_MARGIN_MS
        return taps["loaded"]["p99"] <= limit, limit

    def at_most(key: str, limit: float) -> Callable[[], tuple[bool, float]]:
        return lambda: (m[key] <= limit, limit)

    def at_least(key: str, limit: float) -> Callable[[], tuple[bool, float]]:
        return lambda: (m[key] >= limit, limit)

    return {
        "tap_online_ms": _check(
            m, tap, "p99 <= raw_lookup_post_ms p99 + 2 ms", "tap_online_ms", "raw_lookup_post_ms"
        ),
        "loop_lag_ms": _check(m, lag, "max < 100 ms while tapping", "loop_lag_ms"),
        "tap_offline_ms": _check(
            m, offline, f"p50 <= 50 ms and max <= tap budget ({tap_budget_ms} ms) + 300 ms", "tap_offline_ms"
        ),
        "enqueue_per_s": _check(
            m,
            enqueue,
            ">= 0.5 x raw_sqlite_per_s (enqueue_vs_raw: by CPU time)",
            "enqueue_vs_raw",
        ),
        "drain_per_s": _check(m, at_least("drain_per_s", 200), ">= 200 sales/s", "drain_per_s"),
        "startup_s": _check(m, at_most("startup_s", 2.0), "<= 2 s", "startup_s"),
        "tap_cpu_ms": _check(
            m,
            at_most("tap_cpu_ms", 5.0),
            f"<= 5 ms of CPU per online tap (the median of {CPU_REPEATS} taptill run processes)",
            "tap_cpu_ms",
        ),
        "rss_mb": _check(m, at_most("rss_mb", 80.0), "<= 80 MB", "rss_mb"),
        "idle_cpu_pct": _check(m, at_most("idle_cpu_pct", 2.0), "<= 2 % of one core", "idle_cpu_pct"),
        "pcsc_uid_ms": _check(
            m, pcsc_uid, "<= pcsc_raw_event_ms + 20 ms", "pcsc_uid_ms", "pcsc_raw_event_ms"
        ),
        "pcsc_idle_cpu_pct": _check(
            m, at_most("pcsc_idle_cpu_pct", 2.0), "<= 2 % of one core", "pcsc_idle_cpu_pct"
        ),
        "price_to_screen_ms": _check(
            m, price, "p50 <= one poll interval (about half is expected)", "price_to_screen_ms"
        ),
        "gzip_bomb_rss_mb": _check(
            m, bomb, "peak RSS < 10 MB over baseline on a 1 GiB gzip body", "gzip_bomb_rss_mb"
        ),
        "operator_guess": _check(
            m,
            operator_guess,
            "infeasible without the operator key: log10(years to sweep key x 4-byte UID) >= 30",
            "operator_guess",
        ),
        "r2o_drain_per_min": _check(
            m,
            r2o,
            "every invoice once, no 429, requests/min <= allowed, invoices/min >= 0.85 x allowed",
            "r2o_drain_per_min",
        ),
        "webhook_ms": _check(
            m, webhook, f"p99 request to 200 <= 100 ms at {WEBHOOK_EVENTS_PER_S:g} events/s", "webhook_ms"
        ),
        "tap_webhook_ms": _check(
            m,
            webhook_taps,
            f"tap p99 under webhook load <= tap p99 without + {WEBHOOK_TAP_MARGIN_MS:g} ms",
            "tap_webhook_ms",
        ),
    }


def run_bench() -> tuple[Metrics, dict[str, str]]:
    """Every measurement at full size, quietest first (the PC/SC idle CPU is measured in this process)."""
    errors: dict[str, str] = {}
    metrics: Metrics = {}
    _stage("pcsc", metrics, errors, _pcsc)
    _stage("enqueue", metrics, errors, lambda: measure_enqueue(1000))
    _stage("drain", metrics, errors, _drain, alone=True)
    _stage("tap online", metrics, errors, lambda: measure_tap_online(1000), alone=True)
    _stage("tap offline", metrics, errors, lambda: measure_tap_offline(100, TAP_BUDGET_MS), alone=True)
    _stage(
        "price to screen",
        metrics,
        errors,
        lambda: {"price_to_screen_ms": measure_price_to_screen(20, PRICE_INTERVAL_S)},
    )
    # Start-up and the mirror's drain are absolute figures with no floor measured beside them, like the
    # outbox's drain: beside a test suite they measured its share of the CPU. Start-up is the child's
    # import and journal work (median 2.25 s at load 6, over its 2 s target; well under it alone). The
    # mirror paces its requests one slot apart with no burst to catch up (a bucket of one, never over
    # ready2order's limit), so every wake-up the suite delays is a slot lost for good: 2515 a minute
    # beside the suite against 0.85 x 3000 (issue 10); alone it measures the mirror's pacing.
    _stage("startup", metrics, errors, lambda: {"startup_s": measure_startup(5)}, alone=True)
    _stage("operator card guesses", metrics, errors, lambda: measure_operator_guess(2.0))
    _stage("ready2order drain", metrics, errors, _r2o_drain, alone=True)
    _stage(
        "webhook under taps",
        metrics,
        errors,
        lambda: measure_webhook(300, WEBHOOK_EVENTS_PER_S, WEBHOOK_LOAD_S),
        alone=True,
    )
    _stage("cpu per tap, rss and idle cpu", metrics, errors, lambda: measure_process(200, 10.0))
    _stage("gzip bomb", metrics, errors, measure_gzip_bomb)
    return metrics, errors


def report(metrics: Metrics, errors: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {key: metrics.get(key) for key in METRIC_KEYS}
    targets = evaluate_targets(metrics)
    out["targets"] = targets
    out["all_targets_met"] = all(t["met"] is True for t in targets.values())
    out["errors"] = errors
    out["scheduling"] = metrics.get("scheduling", {})  # per stage run at real-time priority
    return out


@contextlib.contextmanager
def _alone(wanted: bool, name: str, metrics: Metrics) -> Iterator[None]:
    """Real-time round-robin scheduling for this thread and what it starts meanwhile (the in-process
    terminal, the emulator), back to normal afterwards; the stage's note goes to ``metrics["scheduling"]``.

    Only for stages whose targets are tails (a tap's p99, the loop's largest lag, the slowest offline
    tap) or an absolute figure with no floor beside it (the outbox's and the mirror's drain, start-up):
    on its Pi a terminal runs alone, while here each wake-up of the terminal, the emulator or the
    floor's client can wait tens of ms behind a test suite's processes, and a tail (or a rate: 179
    sales/s beside the suite at load 7, 350-450 alone) would measure those. The bench mostly waits, so
    it takes little from them. Rates measured against a floor run as they are: their comparisons
    (journal against bare SQLite, interleaved) already share the machine's state.
    Without the permission (not root, no CAP_SYS_NICE) the stage runs as it is, and the note says so.
    """
    if not wanted:
        yield
        return
    notes: dict[str, str] = metrics.setdefault("scheduling", {})
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(REALTIME_PRIORITY))
    except (OSError, AttributeError) as exc:  # AttributeError: not Linux
        notes[name] = f"normal (no real-time priority: {exc}): other processes' load is in its tails"
        yield
        return
    notes[name] = f"SCHED_RR {REALTIME_PRIORITY}: other processes' load kept out of its tails"
    try:
        yield
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _stop_on_sigterm() -> None:
    """SIGTERM ends the bench like Ctrl-C: every stage's cleanup runs and stops its child processes."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """The whole bench (several minutes); exit 1 when a measurement failed or a target was not met.
    ``--help`` says so and exits."""
    argparse.ArgumentParser(
        prog="python -m terminal.bench",
        description="Measures the money path on 127.0.0.1 (several minutes): progress on stderr, one JSON"
        " object (metrics, targets, errors) as the last line of stdout; exit 1 when a measurement failed"
        " or a target was not met.",
    ).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _stop_on_sigterm()
    start = time.perf_counter()
    metrics, errors = run_bench()
    _progress(f"done in {time.perf_counter() - start:.0f} s")
    out = report(metrics, errors)
    print(json.dumps(out), flush=True)
    status, why = verdict(out)
    if why:
        _progress(why)
    return status


def verdict(out: dict[str, Any]) -> tuple[int, str]:
    """The bench's exit status for ``report``'s ``out`` and the line saying why it is not 0: the bench
    passes only when every measurement ran and every target was met (issue 10: "make bench passes")."""
    unmet = [name for name, target in out["targets"].items() if target["met"] is not True]
    failed = list(out["errors"])
    if not (unmet or failed):
        return 0, ""
    said = [f"targets not met: {', '.join(unmet)}"] if unmet else []
    said += [f"measurements failed: {', '.join(failed)}"] if failed else []
    return 1, "; ".join(said)
