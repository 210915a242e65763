"""The control endpoints under ``/_emulator`` (never faulted), for tests and emulators run as a subprocess.

``GET/POST/DELETE /_emulator/faults`` (``{"profile": "real"}`` there switches to a real server's answer
times), ``GET /_emulator/ledger``, ``GET/DELETE /_emulator/stats``, ``POST /_emulator/wallets``,
``POST /_emulator/token`` (``{"revoked": true}`` answers 401 to every API request as for a revoked token,
``false`` accepts it again), ``GET /_emulator/products`` and (``real`` only) ``POST /_emulator/products``
with ``{"unsellable": [3]}`` to set the item ids in no quota.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from terminal.emulator.faults import FaultConfigError
from terminal.emulator.wallet.routes import ApiResponse, json_response, parse_json

if TYPE_CHECKING:
    from terminal.emulator.wallet.server import WalletEmulator

CONTROL_PREFIX = "/_emulator"


def is_control_path(path: str) -> bool:
    """Whether ``path`` is a control endpoint rather than the API."""
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


def handle_control(emulator: WalletEmulator, method: str, path: str, body: bytes) -> ApiResponse:
    what = path[len(CONTROL_PREFIX) :].strip("/")
    if what == "faults":
        if method == "GET":
            return json_response(200, emulator.faults.state())
        if method == "DELETE":
            emulator.faults.clear()
            return json_response(200, emulator.faults.state())
        if method == "POST":
            obj, bad_json = parse_json(body)
            if bad_json is not None:
                return bad_json
            try:
                emulator.faults.configure(obj)
            except FaultConfigError as exc:
                return json_response(400, {"detail": str(exc)})
            return json_response(200, emulator.faults.state())
    elif what == "ledger" and method == "GET":
        return json_response(200, emulator.ledger.snapshot())
    elif what == "stats":
        if method == "DELETE":
            emulator.faults.reset_stats()
        if method in ("GET", "DELETE"):
            return json_response(200, emulator.stats())
    elif what == "token" and method == "POST":
        obj, bad_json = parse_json(body)
        if bad_json is not None:
            return bad_json
        if not isinstance(obj, dict) or not isinstance(obj.get("revoked"), bool):
            return json_response(400, {"detail": 'send {"revoked": true} or {"revoked": false}'})
        emulator.revoke_token(obj["revoked"])
        return json_response(200, {"revoked": obj["revoked"]})
    elif what == "wallets" and method == "POST":
        return _control_add_wallet(emulator, body)
    elif what == "products" and method == "GET":
        return json_response(200, _products_state(emulator))
    elif what == "products" and method == "POST":
        return _control_products(emulator, body)
    elif what == "" and method == "GET":
        return json_response(200, {"flavour": emulator.flavour, "base_url": emulator.base_url})
    return json_response(404, {"detail": f"no control endpoint {method} {path}"})


def _products_state(emulator: WalletEmulator) -> dict[str, Any]:
    products = [{"id": pid, "friendly_name": n, "price": p} for pid, n, p in emulator.settings.products]
    return {"products": products, "unsellable": sorted(emulator.unsellable)}


def _control_products(emulator: WalletEmulator, body: bytes) -> ApiResponse:
    obj, bad_json = parse_json(body)
    if bad_json is not None:
        return bad_json
    if not isinstance(obj, dict) or not isinstance(obj.get("unsellable"), list):
        return json_response(400, {"detail": 'send {"unsellable": [3]}: the item ids in no quota'})
    try:
        emulator.set_unsellable(obj["unsellable"])
    except ValueError as exc:
        return json_response(400, {"detail": str(exc)})
    return json_response(200, _products_state(emulator))


def _control_add_wallet(emulator: WalletEmulator, body: bytes) -> ApiResponse:
    obj, bad_json = parse_json(body)
    if bad_json is not None:
        return bad_json
    if not isinstance(obj, dict):
        return json_response(
            400, {"detail": 'send {"token_id": "04A1...", "balance": 500, "paired_user": ""}'}
        )
    token_id, balance, paired_user = (
        obj.get("token_id"),
        obj.get("balance", 0),
        obj.get("paired_user", ""),
    )
    if (
        not isinstance(token_id, str)
        or not token_id
        or not isinstance(balance, int)
        or isinstance(balance, bool)
        or not isinstance(paired_user, str)
    ):
        fix = "token_id must be a non-empty string, balance integer cents, paired_user a string"
        return json_response(400, {"detail": fix})
    wallet = emulator.add_wallet(token_id, balance, paired_user)
    return json_response(201, asdict(wallet))
