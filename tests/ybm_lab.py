"""A yourbarmate webhook receiver running for real on 127.0.0.1 (its own event loop in a thread), a
migrated journal under it, and yourbarmate's bodies (the seed's example and variations)."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Self

import httpx

from terminal.journal import Journal
from terminal.service.secret import Secret
from terminal.yourbarmate.config import StockProduct, YourbarmateConfig
from terminal.yourbarmate.receiver import WebhookReceiver

USER, PASSWORD = "ybm", "s3cret-webhook"
PATH = "/hooks/yourbarmate"
PRODUCTS = {
    "2": StockProduct("gin", 40, "ml"),
    "17": StockProduct("helles", 500, "ml"),
    "30": StockProduct("nuts", 50, "g"),
    "40": StockProduct("crisps", 1, "pieces"),
}

# The seed's example message (seeds/002), as yourbarmate sends it.
SEED_EXAMPLE: dict[str, Any] = {
    "type": "request-delivery",
    "idempotency_key": "aJb5iQs18NrZqg3H-tiDq",
    "data": {
        "id": 123456789,
        "type": "DELIVERY",
        "status": "REQUESTED",
        "customer": {
            "id": "12345",
            "company": "Mein Club AG",
            "address": {"address1": "Beispielstrasse 1", "zip": "8045", "city": "Zürich", "country": "CH"},
            "contact": {"name": "Besitzer", "email": "besitzer@mein-club.ch"},
        },
        "request": {
            "timestamp": "2021-06-23T14:46:48.309Z",
            "address": {"address1": "Beispielstrasse 42", "zip": "8045", "city": "Zürich", "country": "CH"},
            "scheduled": {"date": "2020-05-26", "time": "12:30"},
            "items": [
                {
                    "id": "2",
                    "name": "Gin",
                    "vessel": {"size": 7, "unit": "dl", "type": "BO"},
                    "count": 2,
                    "bundle": {"id": "001", "type": "CT", "size": 6},
                    "vessel_count": 12,
                    "price": 750,
                }
            ],
            "user": {"name": "Lagerist", "email": "lagerist@mein-club.ch"},
            "message": "Vielen Dank!",
        },
    },
}


def request_event(
    key: str, delivery: int | str, items: list[dict[str, Any]], kind: str = "DELIVERY"
) -> dict[str, Any]:
    """The seed's example with another key, delivery id, type and items."""
    body = copy.deepcopy(SEED_EXAMPLE)
    body["idempotency_key"] = key
    body["data"]["id"] = delivery
    body["data"]["type"] = kind
    body["data"]["request"]["items"] = items
    return body


def cancel_event(key: str, delivery: int | str) -> dict[str, Any]:
    return {
        "type": "cancel-delivery",
        "idempotency_key": key,
        "data": {"id": delivery, "status": "CANCELLED"},
    }


def item(product: str, vessels: Any, size: Any, unit: str) -> dict[str, Any]:
    return {
        "id": product,
        "name": f"p{product}",
        "vessel": {"size": size, "unit": unit},
        "count": vessels,
        "bundle": None,
        "vessel_count": vessels,
        "price": 100,
    }


def config(port: int = 0, read_timeout_s: float = 10.0) -> YourbarmateConfig:
    return YourbarmateConfig(
        host="127.0.0.1",
        port=port,
        path=PATH,
        username=USER,
        products=PRODUCTS,
        read_timeout_s=read_timeout_s,
    )


class ReceiverLab:
    """The receiver in a thread of its own (its loop), on a free port, over a fresh journal."""

    def __init__(self, folder: Path, read_timeout_s: float = 10.0) -> None:
        self.journal_path = folder / "journal.sqlite3"
        Journal.open(self.journal_path).close()  # created and migrated, as `taptill run` does
        self.changes = 0
        self.receiver = WebhookReceiver(
            config(read_timeout_s=read_timeout_s),
            Secret(PASSWORD),
            self.journal_path,
            on_change=self._changed,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ybm-lab", daemon=True)

    def _changed(self) -> None:
        self.changes += 1

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=30)

    def __enter__(self) -> Self:
        self._thread.start()
        self._run(self.receiver.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._run(self.receiver.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    @property
    def port(self) -> int:
        return self.receiver.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def post(
        self,
        body: Any,
        *,
        method: str = "POST",
        auth: tuple[str, str] | None = (USER, PASSWORD),
        content_type: str = "application/json",
        raw: bytes | None = None,
    ) -> httpx.Response:
        data = raw if raw is not None else json.dumps(body).encode()
        with httpx.Client(timeout=10) as client:
            return client.request(
                method, self.url, content=data, auth=auth, headers={"Content-Type": content_type}
            )

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        journal = Journal.open_read_only(self.journal_path)
        try:
            return journal.query(sql, params)
        finally:
            journal.close()

    def moves(self) -> list[tuple[str, str, int, str | None]]:
        return [
            (r[0], r[1], int(r[2]), r[3])
            for r in self.rows("SELECT product, kind, amount, ref FROM stock_moves ORDER BY id")
        ]


def lab(folder: Path, **kwargs: Any) -> Iterator[ReceiverLab]:
    with ReceiverLab(folder, **kwargs) as running:
        yield running


def serve_alone(journal: Path, port: int) -> None:
    """The receiver alone in a process of its own until killed (the crash tests kill it with SIGKILL);
    prints its port once it listens."""

    async def serve() -> None:
        receiver = WebhookReceiver(config(port=port), Secret(PASSWORD), journal)
        await receiver.start()
        print(receiver.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    import sys

    serve_alone(Path(sys.argv[1]), int(sys.argv[2]))
