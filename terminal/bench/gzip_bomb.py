"""What a gzip bomb costs the clients: peak RSS over baseline while every client meets a 1 GiB gzip body.

A server on 127.0.0.1 answers under ``/bomb`` with about 1 MB of gzip that inflates to 1 GiB, and under
``/plain`` with the same JSON uncompressed. A child process (so its RSS is the clients' alone, not the
server's or the bomb's) warms up both clients on ``/plain``, takes its peak RSS as the baseline, then
makes a wallet lookup, a debit, a drinks list and a Partybroker sale against ``/bomb``, and reports
its peak RSS again with each call's outcome. ``python -m terminal.bench.gzip_bomb`` prints the JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import resource
import socket
import socketserver
import struct
import subprocess
import sys
import types
import zlib
from typing import Any, Self

from terminal.emulator.serving import ServingThread

CARD = "04B0B0B0B0B0B0"
INFLATED_MIB = 1024
CHILD_TIMEOUT_S = 300.0  # a generous bound for a loaded machine; the child itself needs a few seconds
WALLET = json.dumps({"id": 1, "token_id": CARD, "balance": 1750, "paired_user": ""}).encode()
DRINKS = b'[{"id": 145, "title": "Bier", "price": 290, "currency": "EUR"}]'
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03"  # deflate, no name, mtime 0, best, Unix


def gzip_bomb(inflated_mib: int = INFLATED_MIB) -> bytes:
    """A valid gzip member of ``inflated_mib`` MiB of zeros, about 1 KB per MiB (1 GiB: about 1 MB).

    Built from one compressed MiB repeated: a full flush resets deflate's history, so every MiB after
    the first compresses to the same bytes; only the CRC needs the whole input (computed, not stored).
    """
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()
    crc = 0
    for _ in range(inflated_mib):
        crc = zlib.crc32(zeros, crc)
    trailer = struct.pack("<II", crc, (inflated_mib << 20) & 0xFFFFFFFF)
    return _GZIP_HEADER + first + again * (inflated_mib - 1) + end + trailer


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30.0)
        try:
            method, path = _read_request(sock)
            body = DRINKS if "/drinks" in path else WALLET
            status = 201 if method == "POST" and "/transactions" in path else 200
            encoding = ""
            if path.startswith("/bomb"):
                body, encoding = self.server.bomb, "Content-Encoding: gzip\r\n"
                self.server.bombs_served += 1
            head = (
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{encoding}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            sock.sendall(head.encode("latin-1") + body)
        except OSError:  # the client hung up on the bomb: what it should do
            pass


def _read_request(sock: socket.socket) -> tuple[str, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    method, path, *_ = [*lines[0].split(" "), "", ""]
    return method, path


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    bomb = b""
    bombs_served = 0


class BombServer:
    """HTTP on 127.0.0.1: ``/bomb/...`` answers with ``bomb`` gzip-encoded, ``/plain/...`` uncompressed."""

    def __init__(self, bomb: bytes) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.bomb = bomb
        self._serving = ServingThread(self._server, "gzip-bomb")

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._serving.port}"

    @property
    def bombs_served(self) -> int:
        return self._server.bombs_served

    def __enter__(self) -> Self:
        self._serving.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        self._serving.stop()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _described(outcome: object) -> dict[str, Any]:
    fields = dataclasses.asdict(outcome) if dataclasses.is_dataclass(outcome) else {}  # type: ignore[arg-type]
    kept = {k: v for k, v in fields.items() if isinstance(v, str | bool | int | float | None)}
    return {"type": type(outcome).__name__, **kept}


async def _clients_against(origin: str) -> dict[str, Any]:
    from terminal.partybroker.client import PartybrokerClient
    from terminal.partybroker.outcomes import DrinkRef, Sale
    from terminal.service.secret import Secret
    from terminal.wallet.client import WalletClient

    async def calls(where: str) -> dict[str, Any]:
        wallet = WalletClient(f"{origin}/{where}/wallet", Secret("bench-token"), timeout_s=60.0)
        party = PartybrokerClient(f"{origin}/{where}/pb", "1", "bench", Secret("bench"), timeout_s=60.0)
        try:
            return {
                "wallet_lookup": _described(await wallet.wallet(CARD)),
                "wallet_debit": _described(
                    await wallet.transact(CARD, [1], description="bench", tag=None, idempotency_key="k" * 24)
                ),
                "partybroker_drinks": _described(await party.drinks()),
                "partybroker_sale": _described(await party.buy([Sale(DrinkRef(id=145), 1)])),
            }
        finally:
            await wallet.aclose()
            await party.aclose()

    warm = await calls("plain")
    gc.collect()
    baseline = _peak_rss_mb()
    bombed = await calls("bomb")
    peak = _peak_rss_mb()
    return {
        "baseline_mb": round(baseline, 2),
        "peak_mb": round(peak, 2),
        "over_baseline_mb": round(peak - baseline, 2),
        "warm_up": warm,
        "outcomes": bombed,
    }


def measure_gzip_bomb(inflated_mib: int = INFLATED_MIB) -> dict[str, Any]:
    """``gzip_bomb_rss_mb``: the child's peak RSS before and after the bomb (MB) and each call's outcome.

    Raises RuntimeError when the child fails or the server served the bomb to fewer than four calls.
    """
    from terminal.bench.process import SOURCE_ROOT

    bomb = gzip_bomb(inflated_mib)
    with BombServer(bomb) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "terminal.bench.gzip_bomb", "--child", server.origin],
            cwd=SOURCE_ROOT,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        served = server.bombs_served
    if proc.returncode != 0:
        raise RuntimeError(f"the bomb's client process failed ({proc.returncode}): {proc.stderr[-500:]}")
    if served < 4:
        raise RuntimeError(f"the bomb was served {served} times, expected 4 (one per call)")
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    result["bomb_bytes"] = len(bomb)
    result["inflates_to_bytes"] = inflated_mib << 20
    return {"gzip_bomb_rss_mb": result}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"] and len(argv) == 2:
        print(json.dumps(asyncio.run(_clients_against(argv[1]))), flush=True)
        return 0
    if argv:
        print("usage: python -m terminal.bench.gzip_bomb  (prints one JSON line)", file=sys.stderr)
        return 2
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps(measure_gzip_bomb()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
