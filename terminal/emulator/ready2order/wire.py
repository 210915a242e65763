"""What every emulated ready2order route shares: the API's error body and the request's bearer token."""

from __future__ import annotations

from terminal.emulator.wallet.routes import ApiRequest, ApiResponse, json_response

Answer = tuple[int, object]  # (HTTP status, JSON value): what the account's methods answer


def api_error(status: int, msg: str, code: str | None = None) -> Answer:
    """ready2order's error shape: ``{"error": true, "msg": ..., "code": ...}`` (INTEGRATION-NOTES)."""
    body: dict[str, object] = {"error": True, "msg": msg}
    if code is not None:
        body["code"] = code
    return status, body


def error_response(status: int, msg: str) -> ApiResponse:
    return json_response(*api_error(status, msg))


def bearer(req: ApiRequest) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None when the header is missing or another scheme."""
    scheme, _, given = req.headers.get("authorization", "").partition(" ")
    given = given.strip()
    return given if scheme.lower() == "bearer" and given else None
