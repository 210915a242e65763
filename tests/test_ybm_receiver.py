"""yourbarmate's webhook on the wire: a real aiohttp server on 127.0.0.1 over a real journal, sent to
with httpx and raw sockets (a body that lies about its length, a slow drip); and a fuzz test that no body
makes it answer 500."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminal.net.inbound import HEAD_DEADLINE_S
from terminal.yourbarmate.receiver import MAX_BODY_BYTES, MAX_CONNECTIONS
from tests.inbound_lab import closed_by_server, drip_until_cut, idle_connections, still_open, wait_until
from tests.test_ybm_parse import FIELDS, JSON, _mutated
from tests.ybm_lab import PASSWORD, PATH, SEED_EXAMPLE, USER, ReceiverLab, cancel_event, item, request_event


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[ReceiverLab]:
    with ReceiverLab(tmp_path, read_timeout_s=1.0) as running:
        yield running


def head(lab: ReceiverLab, length: int | str, *, auth: str = f"{USER}:{PASSWORD}", extra: str = "") -> bytes:
    token = base64.b64encode(auth.encode()).decode()
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{lab.port}\r\nAuthorization: Basic {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_the_seed_example_is_committed_then_answered_200_and_gin_is_ordered(lab: ReceiverLab) -> None:
    r = lab.post(SEED_EXAMPLE)
    assert (r.status_code, r.json()) == (200, {"status": "accepted"})
    assert lab.moves() == [("gin", "ordered", 8400, "123456789")]
    (row,) = lab.rows("SELECT idempotency_key, kind, delivery_id, delivery_type, payload FROM ybm_events")
    assert row[:4] == ("aJb5iQs18NrZqg3H-tiDq", "request-delivery", "123456789", "DELIVERY")
    assert json.loads(row[4]) == SEED_EXAMPLE
    assert lab.changes == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_each_method_yourbarmate_offers_is_accepted(lab: ReceiverLab, method: str) -> None:
    assert (
        lab.post(request_event(f"k-{method}", 5, [item("17", 2, 50, "l")]), method=method).status_code == 200
    )
    assert lab.moves() == [("helles", "ordered", 100_000, "5")]


def test_other_methods_are_405_and_other_paths_404(lab: ReceiverLab) -> None:
    with httpx.Client(timeout=10, auth=(USER, PASSWORD)) as client:
        assert client.get(lab.url).status_code == 405
        assert client.delete(lab.url).status_code == 405
        assert client.post(lab.url + "x", json=SEED_EXAMPLE).status_code == 404
        assert client.post(f"http://127.0.0.1:{lab.port}/", json=SEED_EXAMPLE).status_code == 404
    assert lab.moves() == []


@pytest.mark.parametrize(
    "auth",
    [(USER, "wrong"), ("wrong", PASSWORD), ("", ""), (USER, PASSWORD + "x"), (USER.upper(), PASSWORD), None],
)
def test_wrong_credentials_are_401_without_saying_which_part(lab: ReceiverLab, auth: Any) -> None:
    r = lab.post(SEED_EXAMPLE, auth=auth)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert r.text == "credentials required\n"  # the same words whichever part was wrong
    assert lab.moves() == [] and lab.rows("SELECT * FROM ybm_events") == []


@pytest.mark.parametrize(
    "header", ["Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()]
)
def test_a_garbled_authorization_header_is_401(lab: ReceiverLab, header: str) -> None:
    r = httpx.post(
        lab.url, content=b"{}", headers={"Authorization": header, "Content-Type": "application/json"}
    )
    assert r.status_code == 401


def test_a_body_over_64_kib_is_413_by_its_content_length_before_it_is_sent(lab: ReceiverLab) -> None:
    with socket.create_connection(("127.0.0.1", lab.port)) as sock:
        sock.sendall(head(lab, 1_000_000))  # the head alone: the server must not wait for a megabyte
        assert answer(sock).startswith(b"HTTP/1.1 413")


def test_expect_100_continue_is_refused_before_the_body_comes(lab: ReceiverLab) -> None:
    with socket.create_connection(("127.0.0.1", lab.port)) as sock:
        sock.sendall(head(lab, 1_000_000, extra="Expect: 100-continue\r\n"))
        assert answer(sock).startswith(b"HTTP/1.1 413")
    with socket.create_connection(("127.0.0.1", lab.port)) as sock:
        body = json.dumps(SEED_EXAMPLE).encode()
        sock.sendall(head(lab, len(body), extra="Expect: 100-continue\r\n"))
        sock.settimeout(10)
        assert sock.recv(100).startswith(b"HTTP/1.1 100")
        sock.sendall(body)
        assert b"200 OK" in sock.recv(1000)
    assert lab.moves() == [("gin", "ordered", 8400, "123456789")]


def test_a_chunked_body_over_64_kib_is_413_and_exactly_64_kib_is_read(lab: ReceiverLab) -> None:
    def chunks(total: int) -> Iterator[bytes]:
        for start in range(0, total, 4096):
            yield b" " * min(4096, total - start)

    with httpx.Client(timeout=10, auth=(USER, PASSWORD)) as client:
        headers = {"Content-Type": "application/json"}
        assert client.post(lab.url, content=chunks(MAX_BODY_BYTES + 1), headers=headers).status_code == 413
        assert client.post(lab.url, content=chunks(MAX_BODY_BYTES), headers=headers).status_code == 200
    assert lab.rows("SELECT reason FROM ybm_quarantine")[0][0].startswith("body is not UTF-8 JSON")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_a_body_that_is_not_json_is_415(lab: ReceiverLab, content_type: str) -> None:
    assert lab.post(SEED_EXAMPLE, content_type=content_type).status_code == 415
    assert lab.moves() == []


def test_a_json_typed_body_that_can_never_parse_is_quarantined_and_answered_200(lab: ReceiverLab) -> None:
    # yourbarmate resends anything but 200/201: a 400 would bring the same broken bytes back forever
    r = lab.post(
        None, raw=b'{"type": "request-delivery", "idem', content_type="application/json; charset=utf-8"
    )
    assert (r.status_code, r.json()) == (200, {"status": "quarantined"})
    ((key, reason, body),) = lab.rows("SELECT idempotency_key, reason, body FROM ybm_quarantine")
    assert key is None and "not UTF-8 JSON" in reason and body == '{"type": "request-delivery", "idem'


def test_an_unknown_unit_is_quarantined_with_its_reason_and_moves_nothing(lab: ReceiverLab) -> None:
    doc = request_event("k-pint", 7, [item("17", 10, 1, "pint")])
    assert lab.post(doc).json() == {"status": "quarantined"}
    ((key, reason),) = lab.rows("SELECT idempotency_key, reason FROM ybm_quarantine")
    assert key == "k-pint" and "items[0].vessel.unit" in reason and "pint" in reason
    assert lab.moves() == [] and lab.rows("SELECT * FROM ybm_events") == []


def test_an_item_in_another_measure_than_its_product_is_quarantined(lab: ReceiverLab) -> None:
    doc = request_event("k-kg", 7, [item("17", 1, 30, "kg")])  # helles is counted in ml
    assert lab.post(doc).json() == {"status": "quarantined"}
    assert "counted in ml" in lab.rows("SELECT reason FROM ybm_quarantine")[0][0]
    assert lab.moves() == []


def test_fractional_kilograms_and_unmapped_products(lab: ReceiverLab) -> None:
    items = [item("30", 3, 2.5, "kg"), item("99", 1, 1, "l"), item("40", 24, 1, "quantity")]
    assert lab.post(request_event("k-kg", "D7", items)).status_code == 200
    assert lab.moves() == [("nuts", "ordered", 7500, "D7"), ("crisps", "ordered", 24, "D7")]


def test_a_repeated_key_is_200_with_no_second_effect(lab: ReceiverLab) -> None:
    for _ in range(3):
        assert lab.post(SEED_EXAMPLE).status_code == 200
    changed = dict(SEED_EXAMPLE, data={**SEED_EXAMPLE["data"], "id": 5})  # the same key, other content
    assert lab.post(changed).json() == {"status": "duplicate"}
    assert lab.moves() == [("gin", "ordered", 8400, "123456789")]
    assert len(lab.rows("SELECT * FROM ybm_events")) == 1


def test_a_cancel_after_its_request_takes_the_order_back(lab: ReceiverLab) -> None:
    lab.post(request_event("r1", 11, [item("2", 6, 7, "dl")]))
    assert lab.post(cancel_event("c1", 11)).status_code == 200
    assert lab.moves() == [("gin", "ordered", 4200, "11"), ("gin", "cancelled", 4200, "11")]


def test_a_cancel_before_its_request_is_kept_and_the_request_then_adds_nothing(lab: ReceiverLab) -> None:
    assert lab.post(cancel_event("c1", 12)).json() == {"status": "accepted"}
    assert lab.post(request_event("r1", 12, [item("2", 6, 7, "dl")])).json() == {"status": "accepted"}
    assert lab.moves() == []
    kinds = lab.rows("SELECT kind FROM ybm_events ORDER BY received_at")
    assert [k[0] for k in kinds] == ["cancel-delivery", "request-delivery"]


def test_a_body_that_lies_about_its_length_and_ends_is_not_applied(lab: ReceiverLab) -> None:
    body = json.dumps(SEED_EXAMPLE).encode()
    with socket.create_connection(("127.0.0.1", lab.port)) as sock:
        sock.sendall(head(lab, len(body) + 100) + body)
        sock.shutdown(socket.SHUT_WR)  # the sender is done, 100 bytes short of what it announced
        assert not answer(sock).startswith(b"HTTP/1.1 200")
    assert lab.moves() == [] and lab.rows("SELECT * FROM ybm_quarantine") == []


def test_a_dripping_body_is_cut_off_with_408_and_not_applied(lab: ReceiverLab) -> None:
    body = json.dumps(SEED_EXAMPLE).encode()
    with socket.create_connection(("127.0.0.1", lab.port)) as sock:
        sock.sendall(head(lab, len(body)))
        said = b""
        sock.settimeout(0.3)
        for byte in body:  # a byte every 0.3 s: the whole body would take minutes
            try:
                sock.sendall(bytes([byte]))
                said += sock.recv(1000)
            except TimeoutError:
                continue
            except OSError:
                break
            if said:
                break
        said += answer(sock)
    assert said.startswith(b"HTTP/1.1 408")
    assert lab.moves() == []
    assert lab.post(SEED_EXAMPLE).status_code == 200  # the receiver goes on


def test_the_counts_reach_the_journal_for_status(tmp_path: Path) -> None:
    with ReceiverLab(tmp_path) as lab:
        lab.post(SEED_EXAMPLE)
        lab.post(SEED_EXAMPLE)
        lab.post(None, raw=b"[")
        lab.post(SEED_EXAMPLE, auth=(USER, "no"))
        lab.post(None, raw=b" " * (MAX_BODY_BYTES + 1))
    ((value,),) = lab.rows("SELECT value FROM cache WHERE key = 'yourbarmate_status'")
    counts = json.loads(value)
    assert {k: counts[k] for k in ("accepted", "duplicate", "quarantined", "refused_auth", "too_large")} == {
        "accepted": 1,
        "duplicate": 1,
        "quarantined": 1,
        "refused_auth": 1,
        "too_large": 1,
    }


def test_the_password_and_authorization_header_never_reach_the_log(
    lab: ReceiverLab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    lab.post(SEED_EXAMPLE, auth=(USER, PASSWORD + "-wrong"))
    lab.post(SEED_EXAMPLE)
    lab.post(request_event("\x1b[2Jk", 1, [item("2", 1, 1, "pint")]))
    text = caplog.text
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert PASSWORD not in text and token not in text and "Authorization" not in text
    assert "\x1b" not in text


BODIES = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.tuples(st.sampled_from(FIELDS), JSON).map(lambda pv: json.dumps(_mutated(pv[1], pv[0])).encode()),
)


@settings(
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)
@given(body=BODIES)
def test_fuzz_the_receiver_answers_every_body_200_or_4xx_never_500(lab: ReceiverLab, body: bytes) -> None:
    r = lab.post(None, raw=body)
    assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text)


def test_stop_finishes_and_frees_the_port(tmp_path: Path) -> None:
    with ReceiverLab(tmp_path) as lab:
        port = lab.port
    start = time.monotonic()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    assert time.monotonic() - start < 30


def test_a_dripping_request_head_is_cut_off_by_the_head_deadline(lab: ReceiverLab) -> None:
    dripped = b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 400  # 200 s at this pace
    took = drip_until_cut(lab.port, dripped)
    assert HEAD_DEADLINE_S <= took < HEAD_DEADLINE_S + 15  # from accept, however often a byte comes
    assert lab.receiver.guard.cut_off == 1  # cut by the server for its head
    assert lab.post(SEED_EXAMPLE).status_code == 200  # the receiver goes on


def test_idle_connections_beyond_the_cap_are_closed_at_once_and_a_post_still_lands(tmp_path: Path) -> None:
    running = ReceiverLab(tmp_path)
    running.receiver.guard.head_deadline_s = 600.0  # only the cap acts here, however slow the machine
    with running as lab:
        held = idle_connections(lab.port, MAX_CONNECTIONS)
        extra = idle_connections(lab.port, 10)
        try:
            assert all(closed_by_server(sock) for sock in extra)
            assert all(still_open(sock) for sock in held)
            guard = lab.receiver.guard
            assert (guard.open, guard.turned_away) == (MAX_CONNECTIONS, 10)
            held.pop().close()
            wait_until(lambda: guard.open < MAX_CONNECTIONS, "the closed connection to be let go")
            assert lab.post(SEED_EXAMPLE).status_code == 200
        finally:
            for sock in held + extra:
                sock.close()
    assert lab.moves() == [("gin", "ordered", 8400, "123456789")]


def test_an_oversize_authorization_header_never_reaches_the_log(
    lab: ReceiverLab, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's parser quotes a header that is too long in its exception, and aiohttp.server logs it."""
    caplog.set_level("DEBUG")
    marker = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with socket.create_connection(("127.0.0.1", lab.port), timeout=30) as sock:
        sock.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {marker}{'Q' * 9000}\r\n\r\n".encode()
        )
        assert answer(sock).startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    logged = caplog.text
    assert "LineTooLong" in logged  # aiohttp's record is kept, without the bytes
    assert marker not in logged and PASSWORD not in logged
