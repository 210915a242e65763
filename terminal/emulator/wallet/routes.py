"""The wallet API's paths and the requests and answers both flavours share (JSON, HTML, the Bearer check)."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

# -- requests and responses ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request as the API flavours see it; header names are lower case."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    origin: str  # "http://host:port", for absolute links


@dataclass
class ApiResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, obj: object, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse(status, json.dumps(obj).encode(), "application/json", dict(headers or {}))


def html_response(status: int, title: str, text: str) -> ApiResponse:
    page = (
        f'<!doctype html>\n<html lang="en"><head><title>{title}</title></head>'
        f"<body><h1>{title}</h1><p>{text}</p></body></html>\n"
    )
    return ApiResponse(status, page.encode(), "text/html; charset=utf-8")


def not_allowed(method: str, allowed: str) -> ApiResponse:
    return json_response(405, {"detail": f'Method "{method}" not allowed.'}, {"Allow": allowed})


def parse_json(body: bytes) -> tuple[object, ApiResponse | None]:
    def refuse_constant(name: str) -> object:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=refuse_constant), None
    except (UnicodeDecodeError, ValueError) as exc:
        return None, json_response(400, {"detail": f"JSON parse error - {exc}"})


def check_bearer(
    req: ApiRequest, api_token: str, invalid_detail: str, *, revoked: bool = False
) -> ApiResponse | None:
    """401 unless the request carries ``api_token``; a ``revoked`` token is answered as a wrong one."""
    challenge = {"WWW-Authenticate": 'Bearer realm="api"'}
    header = req.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return json_response(401, {"detail": "Authentication credentials were not provided."}, challenge)
    if revoked or not hmac.compare_digest(given.strip().encode(), api_token.encode()):
        return json_response(401, {"detail": invalid_detail}, challenge)
    return None


def accepts_json(accept: str | None) -> bool:
    if not accept:
        return True
    media_types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(media_types & {"*/*", "application/*", "application/json", ""})


# -- routes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A matched API path: ``kind`` is "terminal", "wallet" or "transaction"."""

    kind: str
    token: str | None
    slash: bool


_TERMINAL_PATH = re.compile(r"^/pos/terminal(?P<slash>/?)$")
_WALLET_PATH = re.compile(r"^/pos/wallets/token/(?P<token>[^/]+)(?P<tx>/transactions)?(?P<slash>/?)$")


def match_route(rest: str) -> Route | None:
    if m := _TERMINAL_PATH.match(rest):
        return Route("terminal", None, bool(m["slash"]))
    if m := _WALLET_PATH.match(rest):
        return Route("transaction" if m["tx"] else "wallet", unquote(m["token"]), bool(m["slash"]))
    return None


class ApiPrefix:
    """Matches the configured prefix; organizer and event slugs match any value, so a wrong slug is seen."""

    def __init__(self, prefix: str) -> None:
        self.text = prefix.rstrip("/")
        segments = self.text.split("/")
        parts = [
            "[^/]+" if i > 0 and segments[i - 1] in ("organizers", "events") else re.escape(seg)
            for i, seg in enumerate(segments)
        ]
        self._pattern = re.compile("^" + "/".join(parts) + "(?P<rest>/.*)?$")

    def split(self, path: str) -> tuple[str, bool] | None:
        """Return (path after the prefix, whether the slugs are exactly the configured ones)."""
        m = self._pattern.match(path)
        if m is None:
            return None
        rest = m["rest"] or ""
        return rest, path[: len(path) - len(rest)] == self.text

    def route_kind(self, path: str) -> str:
        split = self.split(path)
        route = match_route(split[0]) if split else None
        return route.kind if route else "other"
