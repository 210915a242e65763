"""The yourbarmate sender emulator against a scripted receiver of the test's own on 127.0.0.1.

The receiver is a plain ``http.server`` that records every request and answers either the next status of
its script or, when the script is empty, as issue 15's receiver must: 401 on wrong credentials, 413 over
64 KiB, 415 for non-JSON, else 200.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from terminal.emulator.serving import ServingThread
from terminal.emulator.yourbarmate import cli
from terminal.emulator.yourbarmate.bad_bodies import ONE_MB, bad_bodies
from terminal.emulator.yourbarmate.events import (
    KEY_ALPHABET,
    UNITS,
    cancel_delivery,
    request_delivery,
    sample_items,
)
from terminal.emulator.yourbarmate.sender import Method, Sender, Sent, backoff_s

USER, PASSWORD = "ybm", "s3kret-Zürich"
HANG = 0  # a scripted "status" that answers nothing until the test ends
LIMIT = 64 * 1024


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the whole body was read


class Receiver:
    """Records requests; answers ``script`` statuses first, then by issue 15's rules."""

    def __init__(self, *statuses: int) -> None:
        self.script: deque[int] = deque(statuses)
        self.received: list[Received] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with owner._lock:
                    owner.received.append(
                        Received(self.command, self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                    status = (
                        owner.script.popleft()
                        if owner.script
                        else owner.rule(dict(self.headers.items()), body)
                    )
                if status == HANG:
                    owner.release.wait(10)
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_PATCH = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._serving = ServingThread(server, "ybm-test-receiver")

    @staticmethod
    def rule(headers: Mapping[str, str], body: bytes) -> int:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if headers.get("Authorization") != expected:
            return 401
        if len(body) > LIMIT:
            return 413
        if headers.get("Content-Type") != "application/json":
            return 415
        return 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._serving.port}/hooks/yourbarmate"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r._serving.start()
    yield r
    r.release.set()
    r._serving.stop()


def _send(receiver: Receiver, event: Mapping[str, Any], **options: Any) -> Sent:
    async def go() -> Sent:
        async with _sender(receiver.url, **options) as sender:
            return await sender.send(event)

    return asyncio.run(go())


def _sender(url: str, method: Method = "POST", **options: Any) -> Sender:
    settings: dict[str, Any] = {"backoff_s": 0.01, "backoff_cap_s": 0.2, "rng": random.Random(7)} | options
    return Sender(url, USER, PASSWORD, method, **settings)


def _event(delivery_id: int = 4711) -> dict[str, Any]:
    return request_delivery(delivery_id, sample_items(), rng=random.Random(delivery_id))


# --- resending -----------------------------------------------------------------------------------------


def test_resends_until_200_and_a_202_is_resent(receiver: Receiver) -> None:
    receiver.script.extend([500, 202, 503, 200])
    event = _event()
    sent = _send(receiver, event)
    assert [a.status for a in sent.attempts] == [500, 202, 503, 200]
    assert sent.delivered and sent.key == event["idempotency_key"]
    assert [a.number for a in sent.attempts] == [1, 2, 3, 4]
    assert len({r.body for r in receiver.received}) == 1, "every resend carries the same body and key"
    assert all(a.latency_ms > 0 for a in sent.attempts)


def test_a_201_ends_the_resending(receiver: Receiver) -> None:
    receiver.script.append(201)
    sent = _send(receiver, _event())
    assert [a.status for a in sent.attempts] == [201] and sent.delivered
    assert sent.attempts[0].wait_ms == 0.0
    assert len(receiver.received) == 1


def test_backoff_grows_and_the_sender_gives_up_after_the_limit(receiver: Receiver) -> None:
    receiver.script.extend([503] * 10)
    sent = _send(receiver, _event(), max_attempts=5, backoff_s=0.01, backoff_cap_s=10.0)
    assert [a.status for a in sent.attempts] == [503] * 5 and not sent.delivered
    assert len(receiver.received) == 5, "no sixth send"
    waits = [a.wait_ms for a in sent.attempts]
    assert waits[-1] == 0.0
    assert all(later > earlier for earlier, later in itertools.pairwise(waits[:-1])), waits
    assert 10.0 <= waits[0] <= 15.0 and 80.0 <= waits[3] <= 120.0, waits
    # the receiver saw the waits: each gap at least the wait slept before it (lower bound only)
    gaps = [(b.at - a.at) * 1000 for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
    assert all(gap >= wait - 1.0 for gap, wait in zip(gaps, waits, strict=False)), (gaps, waits)


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        wait = backoff_s(attempt, 0.5, 30.0, rng)
        assert min(30.0, 0.5 * 2 ** (attempt - 1)) <= wait <= min(30.0, 0.75 * 2 ** (attempt - 1))
    assert backoff_s(20, 0.5, 30.0, rng) == 30.0


def test_an_unreachable_receiver_is_tried_up_to_the_limit_with_no_status() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: connections are refused
    sent = asyncio.run(_send_to(f"http://127.0.0.1:{port}/hooks/yourbarmate", _event(), max_attempts=3))
    assert [a.status for a in sent.attempts] == [None] * 3 and not sent.delivered
    assert all(a.error and "Connect" in a.error for a in sent.attempts)


def test_an_unanswered_attempt_ends_at_its_deadline_and_is_resent(receiver: Receiver) -> None:
    receiver.script.extend([HANG, 200])
    sent = _send(receiver, _event(), timeout_s=0.3)
    assert [a.status for a in sent.attempts] == [None, 200]
    assert sent.attempts[0].error == "no complete answer within 0.3 s"


async def _send_to(url: str, event: Mapping[str, Any], **options: Any) -> Sent:
    async with _sender(url, **options) as sender:
        return await sender.send(event)


# --- what goes on the wire -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_basic_auth_method_and_content_type_are_yourbarmates(receiver: Receiver, method: Method) -> None:
    event = _event()
    sent = _send(receiver, event, method=method)
    assert sent.delivered
    (got,) = receiver.received
    assert got.method == method and got.path == "/hooks/yourbarmate"
    scheme, _, token = got.headers["Authorization"].partition(" ")
    assert scheme == "Basic" and base64.b64decode(token).decode() == f"{USER}:{PASSWORD}"
    assert got.headers["Content-Type"] == "application/json"
    assert json.loads(got.body.decode("utf-8")) == event
    assert "Zürich".encode() in got.body, "UTF-8 as it is, not \\u escapes"


def test_custom_headers_go_with_every_request(receiver: Receiver) -> None:
    receiver.script.extend([500, 200])
    _send(receiver, _event(), headers={"X-Venue": "bar-1"})
    assert [r.headers["X-Venue"] for r in receiver.received] == ["bar-1", "bar-1"]


def test_wrong_credentials_are_refused_and_resent_like_any_failure(receiver: Receiver) -> None:
    async def go() -> Sent:
        async with _sender(receiver.url) as sender:
            return await sender.send_wrong_credentials(_event(), max_attempts=2)

    sent = asyncio.run(go())
    assert sent.label == "wrong-credentials"
    assert [a.status for a in sent.attempts] == [401, 401] and not sent.delivered
    user, _, password = (
        base64.b64decode(receiver.received[0].headers["Authorization"][6:]).decode().partition(":")
    )
    assert user == USER and password != PASSWORD
    assert PASSWORD not in repr(_sender(receiver.url)) and PASSWORD not in json.dumps(sent.to_json())


def test_duplicates_carry_the_same_key_and_are_each_delivered(receiver: Receiver) -> None:
    event = _event()

    async def go() -> list[Sent]:
        async with _sender(receiver.url) as sender:
            return await sender.send_duplicate(event, times=3)

    sent = asyncio.run(go())
    assert all(s.delivered for s in sent)
    keys = [b["idempotency_key"] for b in receiver.bodies()]
    assert keys == [event["idempotency_key"]] * 3


def test_reordered_sends_the_cancel_before_its_request(receiver: Receiver) -> None:
    request = _event(99)

    async def go() -> tuple[Sent, Sent]:
        async with _sender(receiver.url) as sender:
            return await sender.send_reordered(request)

    cancel, late = asyncio.run(go())
    assert cancel.label == "cancel-delivery" and late.label == "request-delivery"
    first, second = receiver.bodies()
    assert first["type"] == "cancel-delivery" and first["data"]["status"] == "CANCELLED"
    assert first["data"]["id"] == second["data"]["id"] == 99
    assert second == request
    assert first["idempotency_key"] != second["idempotency_key"]


def test_a_one_megabyte_body_goes_out_whole(receiver: Receiver) -> None:
    base = _event()
    (big,) = [b for b in bad_bodies(base, rng=random.Random(3)) if b.name == "one_megabyte"]

    async def go() -> Sent:
        async with _sender(receiver.url) as sender:
            return await sender.send_bad(big, max_attempts=2)

    sent = asyncio.run(go())
    assert [a.status for a in sent.attempts] == [413, 413]
    assert all(r.body == big.body for r in receiver.received)
    assert len(big.body) > ONE_MB and json.loads(big.body)["type"] == "request-delivery"


def test_bad_bodies_are_spoilt_in_one_place_each_with_a_fresh_key(receiver: Receiver) -> None:
    base = _event()
    bad = bad_bodies(base, rng=random.Random(5))
    names = {b.name for b in bad}
    assert {"null_delivery_id", "count_as_text", "unknown_unit", "not_json", "one_megabyte"} <= names
    keys = [b.key for b in bad if b.key is not None]
    assert len(set(keys)) == len(keys) and base["idempotency_key"] not in keys

    async def go() -> list[Sent]:
        async with _sender(receiver.url) as sender:
            return [await sender.send_bad(b, max_attempts=1) for b in bad]

    sent = asyncio.run(go())
    by_name = {s.label: s.status for s in sent}
    assert by_name["not_json"] == 415 and by_name["one_megabyte"] == 413 and by_name["unknown_unit"] == 200
    assert [r.body for r in receiver.received] == [b.body for b in bad]
    unit = json.loads(next(b.body for b in bad if b.name == "unknown_unit"))
    assert unit["data"]["request"]["items"][0]["vessel"]["unit"] == "gallon"
    unit["data"]["request"]["items"][0]["vessel"]["unit"] = "dl"
    unit["idempotency_key"] = base["idempotency_key"]
    assert unit == base, "spoilt in that one field only"


# --- the bodies follow seed 002 ---------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_address(address: Mapping[str, Any]) -> None:
    for name in ("address1", "zip", "city", "country"):
        assert isinstance(address[name], str), name
    assert len(address["country"]) == 2
    assert isinstance(address.get("address2", ""), str)


def _check_item(item: Mapping[str, Any]) -> None:
    assert isinstance(item["id"], str) and isinstance(item["name"], str)
    assert item.get("order_by", "vessel") in ("vessel", "kg")
    vessel = item["vessel"]
    assert _number(vessel["size"]) and vessel["size"] > 0 and vessel["unit"] in UNITS
    assert isinstance(vessel["type"], str) and isinstance(vessel.get("id", ""), str)
    if vessel["unit"] != "kg":
        assert isinstance(vessel["size"], int), "only kg sizes are fractional"
    assert _number(item["count"]) and item["count"] > 0
    expected = Decimal(str(item["count"]))
    if item["bundle"] is not None:
        b = item["bundle"]
        assert isinstance(b["id"], str) and isinstance(b["type"], str) and isinstance(b["size"], int)
        expected *= b["size"]
        if b["type"] == "PX":
            assert isinstance(b["pallet_bundle"]["size"], int)
            expected *= b["pallet_bundle"]["size"]
        else:
            assert "pallet_bundle" not in b
    assert Decimal(str(item["vessel_count"])) == expected
    assert isinstance(item["price"], int), "cents"
    assert item.get("price_per", "vessel") in ("vessel", "kg", "100g", "l")
    assert isinstance(item.get("message", ""), str)


def _check_event(event: Mapping[str, Any]) -> None:
    assert event["type"] in ("request-delivery", "cancel-delivery")
    key = event["idempotency_key"]
    assert isinstance(key, str) and len(key) == 21 and set(key) <= set(KEY_ALPHABET)
    data = event["data"]
    assert isinstance(data["id"], int) and data["type"] in ("DELIVERY", "RETURN")
    assert data["status"] == ("REQUESTED" if event["type"] == "request-delivery" else "CANCELLED")
    customer = data["customer"]
    assert isinstance(customer["id"], str)
    assert customer.get("company") is None or isinstance(customer["company"], str)
    _check_address(customer["address"])
    assert {"name", "email"} <= set(customer["contact"])
    request = data["request"]
    assert request["timestamp"].endswith("Z") and "T" in request["timestamp"]
    for nullable in ("company", "cost_center"):
        assert request.get(nullable) is None or isinstance(request[nullable], str)
    assert isinstance(request["customer_id"], str)
    _check_address(request["address"])
    assert {"name", "email"} <= set(request["user"])
    if request.get("scheduled") is not None:
        assert len(request["scheduled"]["date"]) == 10 and len(request["scheduled"].get("time", "00:00")) == 5
    assert request["items"]
    for item in request["items"]:
        _check_item(item)
    assert isinstance(request.get("message", ""), str)


@pytest.mark.parametrize("nullables", ["filled", "null", "missing"])
def test_bodies_follow_the_seed_structure(nullables: Any) -> None:
    request = request_delivery(1, sample_items(), delivery_type="RETURN", nullables=nullables)
    _check_event(request)
    _check_event(cancel_delivery(request))
    fields = ("company", "cost_center", "scheduled")
    present = [name in request["data"]["request"] for name in fields]
    assert present == [nullables != "missing"] * 3
    values = [request["data"]["request"].get(name) for name in fields]
    assert (values == [None] * 3) == (nullables != "filled")
    assert ("address2" in request["data"]["request"]["address"]) == (nullables == "filled")


def test_sample_items_cover_every_unit_bundles_pallets_and_fractions() -> None:
    items = sample_items()
    assert {i["vessel"]["unit"] for i in items} == set(UNITS)
    (by_weight,) = [i for i in items if i.get("order_by") == "kg"]
    assert (
        by_weight["vessel"]["size"] == 0.5 and by_weight["count"] == 2.5 and by_weight["vessel_count"] == 2.5
    )
    (on_pallet,) = [i for i in items if i["bundle"] is not None and i["bundle"]["type"] == "PX"]
    assert on_pallet["vessel_count"] == 40 * 24
    gin = items[0]
    assert (gin["vessel"]["size"], gin["vessel"]["unit"], gin["vessel_count"]) == (7, "dl", 12), "the seed's"
    keys = {request_delivery(1, items)["idempotency_key"] for _ in range(50)}
    assert len(keys) == 50, "a fresh key per event"


# --- rate and the command line -----------------------------------------------------------------------------


def test_a_rate_run_sends_its_events_each_once_with_distinct_keys(receiver: Receiver) -> None:
    async def go() -> Any:
        async with _sender(receiver.url) as sender:
            return await sender.send_rate(20, 0.5, lambda i: _event(1000 + i))

    report = asyncio.run(go())
    out = report.to_json()
    assert out["sent"] == out["delivered"] == out["attempts"] == 10
    assert {"p50", "p99", "max"} <= set(out["latency_ms"])
    assert sorted(b["data"]["id"] for b in receiver.bodies()) == list(range(1000, 1010))
    assert len({b["idempotency_key"] for b in receiver.bodies()}) == 10


def test_the_cli_runs_every_scenario_and_prints_a_json_summary(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password_file = tmp_path / "ybm.password"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    argv = ["--url", receiver.url, "--password-file", str(password_file), "--method", "PUT"]
    argv += ["--max-attempts", "2", "--backoff-s", "0.01", "--seed", "11", "--first-delivery-id", "500"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert PASSWORD not in json.dumps(out)
    sent = out["sent"]
    labels = [s["label"] for s in sent]
    request, cancel = "request-delivery", "cancel-delivery"
    assert labels[:7] == [request, request, request, request, cancel, cancel, request]
    assert labels[-1] == "wrong-credentials" and not sent[-1]["delivered"]
    assert all(s["delivered"] for s in sent[:7])
    assert out["summary"]["events"] == len(sent) and out["summary"]["statuses"]["401"] == 2
    assert {r.method for r in receiver.received} == {"PUT"}
    ids = [b["data"]["id"] for b in map(json.loads, (r.body for r in receiver.received[:7]))]
    assert ids == [500, 500, 501, 502, 502, 503, 503]


def test_the_cli_rate_mode_and_an_unreachable_url(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password_file = tmp_path / "ybm.password"
    password_file.write_text(PASSWORD, encoding="utf-8")
    base = ["--password-file", str(password_file), "--backoff-s", "0.01", "--max-attempts", "2"]
    assert cli.main(["--url", receiver.url, "--rate", "20", "--duration-s", "0.25", *base]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rate"]["sent"] == out["rate"]["delivered"] == 5 and out["summary"]["statuses"] == {"200": 5}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli.main(["--url", f"http://127.0.0.1:{port}/", "--scenario", "deliveries", *base]) == 1


def test_the_cli_says_in_one_line_what_is_wrong_with_the_password_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--url", "http://127.0.0.1:9/", "--password-file", str(tmp_path / "missing")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--password-file" in err and "cannot be read" in err and "Traceback" not in err
