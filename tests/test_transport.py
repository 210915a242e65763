"""Transport attacks on the clients: a cleartext base URL, a proxy or CA from the environment, a gzip bomb."""

from __future__ import annotations

import argparse
import asyncio
import copy
import http.server
import socket
import ssl
import subprocess
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from provisioning.answers import AnswersError, add_flags, gather
from terminal.bench.gzip_bomb import gzip_bomb, measure_gzip_bomb
from terminal.config import ConfigError, parse_config
from terminal.emulator.wallet import WalletEmulator
from terminal.net.deadline import SendWatch
from terminal.net.transport import MAX_CACHED_URLS, ServerLink, cleartext_host, tls_context
from terminal.partybroker.client import PartybrokerClient
from terminal.partybroker.outcomes import Ambiguous, Drinks
from terminal.service.secret import Secret
from terminal.wallet.client import WalletClient
from terminal.wallet.outcomes import Found, Unavailable
from tests.raw_http import RawHttpServer, connect_never_completes, http_response
from tests.terminal_lab import MAX, taptill, write_config

BASE: dict[str, Any] = {
    "terminal": {"products": ["espresso"], "description": "Kaffee"},
    "wallet": {"base_url": "http://127.0.0.1:9/wallet"},
    "partybroker": {
        "base_url": "http://127.0.0.1:9/api",
        "party_id": "1234",
        "username": "taptill",
        "drinks": {"espresso": {"id": 145}},
    },
}


def _config(table: str, url: str, **keys: object) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data[table].update(base_url=url, **keys)
    return data


@pytest.mark.parametrize("table", ["wallet", "partybroker"])
@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://wallet.example/api", "wallet.example"),
        ("http://10.0.0.5:8000/api", "10.0.0.5"),
        ("http://[2001:db8::1]/api", "2001:db8::1"),
        ("http://127.0.0.1.nip.io/api", "127.0.0.1.nip.io"),  # resolves to loopback today, not tomorrow
        ("http://localhost.example/api", "localhost.example"),
        ("http://127.0.0.1@evil.example/api", "evil.example"),  # userinfo, not the host
    ],
)
def test_http_to_another_machine_is_refused_at_load_in_one_line(table: str, url: str, host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(table, url))
    said = str(caught.value)
    assert "\n" not in said and f"[{table}] base_url is http:// to {host}" in said, said
    assert f"allow_insecure = true in [{table}]" in said and "https://" in said


@pytest.mark.parametrize("table", ["wallet", "partybroker"])
def test_allow_insecure_lets_http_to_another_machine_through(table: str) -> None:
    cfg = parse_config(_config(table, "http://10.0.0.5:8000/api", allow_insecure=True))
    section = cfg.wallet if table == "wallet" else cfg.partybroker
    assert section is not None and section.allow_insecure is True
    assert section.base_url == "http://10.0.0.5:8000/api"
    with pytest.raises(ConfigError, match=rf"\[{table}\] allow_insecure must be true or false"):
        parse_config(_config(table, "http://10.0.0.5/api", allow_insecure="yes"))


@pytest.mark.parametrize(
    "url",
    [
        "https://wallet.example/api",
        "http://127.0.0.1:8000/api",
        "http://127.8.9.10/api",
        "http://[::1]:8000/api",
        "http://localhost:8000/api",
        "http://LOCALHOST/api",
    ],
)
def test_tls_anywhere_and_http_on_this_machine_load_without_the_switch(url: str) -> None:
    assert cleartext_host(url) is None
    cfg = parse_config(_config("wallet", url))
    assert cfg.wallet.base_url == url and cfg.wallet.allow_insecure is False


def test_a_config_with_http_to_another_machine_fails_doctor_in_one_line(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        text = config.read_text(encoding="utf-8").replace(emulator.base_url, "http://wallet.invalid/api")
    config.write_text(text, encoding="utf-8")
    proc = taptill("doctor", "--config", str(config), check=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAIL config") and len(proc.stdout.splitlines()) == 1, proc.stdout
    assert "allow_insecure = true in [wallet]" in proc.stdout

    config.write_text(text.replace("[wallet]\n", "[wallet]\nallow_insecure = true\n"), encoding="utf-8")
    lines = taptill("doctor", "--config", str(config), check=False).stdout.splitlines()
    transport = [line for line in lines if line.split()[1] == "transport"]
    assert len(transport) == 1 and transport[0].startswith("WARN transport"), lines
    assert "http:// to wallet.invalid" in transport[0] and "use https:// in [wallet]" in transport[0]


def _answers(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=Path)
    add_flags(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("flag", ["--wallet-url", "--partybroker-url"])
def test_provisioning_refuses_an_http_url_to_another_machine(flag: str) -> None:
    env = {"TAPTILL_WALLET_TOKEN": "t" * 20, "TAPTILL_PARTYBROKER_PASSWORD": "p" * 8}
    pb = ["--party-id", "1", "--partybroker-user", "u"]
    loopback = ["--wallet-url", "http://127.0.0.1:8000/api", "--partybroker-url", "http://[::1]:8001/api"]
    assert gather(_answers(*loopback, *pb), env).wallet_url == "http://127.0.0.1:8000/api"
    argv = [*loopback, *pb, flag, "http://wallet.example/api"]  # the later flag wins
    with pytest.raises(AnswersError, match=r"is http:// to wallet\.example: .*use https://"):
        gather(_answers(*argv), env)


# --- the environment has no say --------------------------------------------------------------------


def _run(coro: Any) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


def test_proxy_variables_do_not_redirect_the_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy named in the environment would see the bearer token and Basic password: it is ignored."""
    proxy_answer = http_response(200, b'{"token_id": "04AA", "balance": 1}')
    with WalletEmulator.demo("doc") as emulator, RawHttpServer([proxy_answer]) as proxy:
        proxy_url = proxy.base_url.removesuffix("/wallet")
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)

        async def plain_httpx() -> int:  # the control: the variables do redirect a default client
            async with httpx.AsyncClient() as plain:
                return (await plain.get(f"{emulator.base_url}/pos/wallets/token/{MAX}")).status_code

        assert _run(plain_httpx()) == 200 and proxy.served == 1

        async def ours() -> tuple[object, object]:
            wallet = WalletClient(emulator.base_url, Secret(emulator.api_token), timeout_s=10.0)
            party = PartybrokerClient(emulator.base_url, "1", "u", Secret("p"), timeout_s=5.0)
            try:
                return await wallet.wallet(MAX), await party.drinks()
            finally:
                await wallet.aclose()
                await party.aclose()

        found, _drinks = _run(ours())
    assert isinstance(found, Found) and found.wallet.token_id == MAX
    assert proxy.served == 1, "a client of ours went through the proxy from the environment"


def _header_lines(request: bytes) -> dict[str, str]:
    head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head)}


def test_the_clients_send_their_headers_and_never_a_cookie_a_server_set() -> None:
    """The headers are the clients' own (none of aiohttp's defaults: no compression asked for), and a
    server's cookies are neither kept nor sent back (a server or proxy could tag the terminal's requests)."""
    wallet_json = f'{{"token_id": "{MAX}", "balance": 1}}'.encode()  # an answer for the card asked about
    answer = http_response(200, wallet_json, Set_Cookie="session=tracked; Path=/")
    drinks_json = b'[{"id": 145, "title": "W", "price": 290}]'
    with RawHttpServer([answer]) as wallet_server, RawHttpServer([http_response(200, drinks_json)]) as party:

        async def ours() -> None:
            wallet = WalletClient(wallet_server.base_url, Secret("secret-token-0123456789"), timeout_s=5.0)
            pb = PartybrokerClient(party.base_url, "1", "u", Secret("p"), timeout_s=5.0)
            try:
                assert isinstance(await wallet.wallet(MAX), Found)
                assert isinstance(await wallet.wallet(MAX), Found)
                assert isinstance(await pb.drinks(), Drinks)
            finally:
                await wallet.aclose()
                await pb.aclose()

        _run(ours())
    first, second = (_header_lines(r) for r in wallet_server.requests)
    for sent in (first, second):
        assert sent["authorization"] == "Bearer secret-token-0123456789"
        assert sent["accept"] == "application/json" and sent["accept-encoding"] == "identity"
        assert sent["user-agent"].startswith("taptill/") and sent["host"].startswith("127.0.0.1:")
    assert "cookie" not in second, "a cookie the server set came back with the next request"
    (asked,) = (_header_lines(r) for r in party.requests)
    assert asked["authorization"].startswith("Basic ") and asked["accept-encoding"] == "identity"


@pytest.fixture
def hostile_tls(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """An HTTPS server on 127.0.0.1 whose certificate a CA of our own signed: (origin, CA file, paths asked).

    Nothing but an SSL_CERT_FILE naming that CA makes a client trust it.
    """

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True, timeout=60)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=evil CA")
    openssl("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (tmp_path / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nauthorityKeyIdentifier=keyid\nbasicConstraints=CA:FALSE\n"
    )
    openssl(
        "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf",
    )  # fmt: skip
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = b'{"token_id": "04AA", "balance": 1}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", tmp_path / "ca.pem", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_ca_variables_in_the_environment_do_not_make_the_clients_trust_a_server(
    hostile_tls: tuple[str, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    origin, ca_file, asked = hostile_tls
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.setenv("SSL_CERT_DIR", str(ca_file.parent))

    async def plain_httpx() -> int:  # the control: the variable does make a default client trust it
        async with httpx.AsyncClient() as plain:
            return (await plain.get(f"{origin}/control")).status_code

    assert _run(plain_httpx()) == 200 and asked == ["/control"]

    async def ours() -> tuple[object, object]:
        wallet = WalletClient(f"{origin}/wallet", Secret("secret-token-0123456789"), timeout_s=5.0)
        party = PartybrokerClient(f"{origin}/pb", "1", "u", Secret("p"), timeout_s=5.0)
        try:
            return await wallet.wallet(MAX), await party.drinks()
        finally:
            await wallet.aclose()
            await party.aclose()

    looked_up, drinks = _run(ours())
    assert isinstance(looked_up, Unavailable) and isinstance(drinks, Ambiguous), (looked_up, drinks)
    assert asked == ["/control"], "a client of ours trusted the CA from the environment and sent a request"


def test_the_links_trust_the_systems_ca_store_whatever_the_environment_names(
    hostile_tls: tuple[str, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """tls_context reads OpenSSL's built-in store (Debian: /etc/ssl/certs), never SSL_CERT_FILE/DIR."""
    _origin, ca_file, _asked = hostile_tls
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.setenv("SSL_CERT_DIR", str(ca_file.parent))
    tls_context.cache_clear()
    try:
        context = tls_context()
    finally:
        tls_context.cache_clear()
    trusted = context.get_ca_certs()
    assert len(trusted) > 50, "the system's CA bundle was not loaded"
    assert not any(("commonName", "evil CA") in field for ca in trusted for field in ca["subject"])
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


# --- the gzip bomb ---------------------------------------------------------------------------------


def test_the_bomb_is_a_real_one() -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 1_100_000
    inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
    assert len(inflate.decompress(bomb[:65536])) > 60 * 2**20  # one network read: over 60 MiB
    assert int.from_bytes(bomb[-4:], "little") == 1 << 30  # ISIZE: the inflated length, 1 GiB
    small = gzip_bomb(3)
    assert zlib.decompress(small, zlib.MAX_WBITS | 16) == bytes(3 << 20)  # header, blocks and CRC are valid


def test_a_gzip_bomb_fails_every_call_cleanly_and_does_not_raise_rss() -> None:
    """Each client, in a child process, meets 1 MB of gzip inflating to 1 GiB; its peak RSS is measured."""
    got = measure_gzip_bomb()["gzip_bomb_rss_mb"]
    warm, bombed = got["warm_up"], got["outcomes"]
    assert got["over_baseline_mb"] < 10.0, got  # before: 203 MB (a 64 KiB read inflated at once)
    assert [warm[k]["type"] for k in sorted(warm)] == ["Drinks", "Drinks", "Applied", "Found"]
    # Nothing decided as done or rejected: a lookup is unavailable, a debit stays maybe-applied (the
    # sale sender reconciles it), the drinks list is ambiguous and not applied, and a Partybroker sale
    # answered 2xx is recorded as before for any unreadable body.
    assert bombed["wallet_lookup"]["type"] == "Unavailable"
    assert bombed["wallet_debit"]["type"] == "Unavailable" and bombed["wallet_debit"]["maybe_applied"]
    assert bombed["partybroker_drinks"]["type"] == "Ambiguous"
    assert bombed["partybroker_drinks"]["maybe_applied"] is False
    assert bombed["partybroker_sale"]["type"] == "Recorded"
    assert all("gzip-encoded body" in o["reason"] for o in bombed.values()), bombed


def test_a_compressed_answer_is_refused_though_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients ask for identity; a server that compresses anyway is not believed, however small."""
    body = zlib.compress(b'[{"id": 145, "title": "W", "price": 290}]', wbits=zlib.MAX_WBITS | 16)
    answer = http_response(200, body, Content_Encoding="gzip")
    with RawHttpServer([answer]) as server:

        async def drinks() -> object:
            async with PartybrokerClient(server.base_url, "1", "u", Secret("p")) as party:
                return await party.drinks()

        got = _run(drinks())
    assert isinstance(got, Ambiguous) and not isinstance(got, Drinks) and not got.maybe_applied
    assert "gzip-encoded" in got.reason


def test_a_link_parses_each_url_once_keeps_few_and_still_refuses_one_that_is_not_a_url() -> None:
    """A URL is parsed once and reused (issue 10: parsing was three quarters of building a request), but a
    URL per card must not grow the cache through a months-long run, and every request goes where asked."""
    # The server closes each connection after its answer, and says so: none is reused.
    with RawHttpServer([http_response(204, b"", Connection="close")]) as server:
        origin = server.base_url.removesuffix("/wallet")
        urls = [f"{origin}/pos/wallets/token/04{n:012X}/" for n in range(MAX_CACHED_URLS + 44)]
        link = ServerLink(max_connections=1, keepalive_s=30.0, headers={})
        timeout = aiohttp.ClientTimeout(total=None, connect=5.0)

        async def send_all() -> None:
            try:
                for url in [*urls, urls[0], urls[-1]]:
                    response = await link.send("GET", url, timeout=timeout)
                    assert response.status == 204
                    response.release()
                for bad in ("http://[::1/", f"{origin}/pos/terminal/\x01\u2028?page=2"):
                    with pytest.raises(aiohttp.InvalidURL):
                        await link.send("GET", bad, timeout=timeout)
            finally:
                await link.aclose()

        _run(send_all())
        asked = [request.split(b" ", 2)[1].decode() for request in server.requests]
    assert [origin + path for path in asked] == [*urls, urls[0], urls[-1]]
    assert 0 < len(link._urls) <= MAX_CACHED_URLS
    assert urls[-1] in link._urls  # the last one asked is kept


def test_a_send_watch_says_may_have_arrived_from_the_moment_a_connection_is_had() -> None:
    """SendWatch (aiohttp's tracing): False only while a started request has no connection yet (refused,
    still connecting); True once it has one, new or kept alive; True when nothing was traced (unknown)."""
    assert SendWatch().may_have_arrived  # no trace seen: the safe side
    timeout = aiohttp.ClientTimeout(total=None, connect=5.0)

    async def watched(url: str, within_s: float = 5.0) -> tuple[bool, str]:
        link = ServerLink(max_connections=1, keepalive_s=30.0, headers={})
        watch = SendWatch()
        try:
            async with asyncio.timeout(within_s):
                response = await link.send("GET", url, timeout=timeout, watch=watch)
            response.release()
            return watch.may_have_arrived, "answered"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return watch.may_have_arrived, type(exc).__name__
        finally:
            await link.aclose()

    with socket.socket() as closed:  # a port nobody listens on: refused
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}/x"
        assert _run(watched(refused)) == (False, "ClientConnectorError")
    with connect_never_completes() as port:
        assert _run(watched(f"http://127.0.0.1:{port}/x", within_s=0.3)) == (False, "TimeoutError")
    with RawHttpServer([http_response(200, b"{}")]) as server:
        assert _run(watched(server.base_url)) == (True, "answered")
    with RawHttpServer([b""]) as server:  # connected, then closed with no answer: may have arrived
        assert _run(watched(server.base_url)) == (True, "ServerDisconnectedError")


def test_a_links_headers_never_show_the_token() -> None:
    link = ServerLink(
        max_connections=1, keepalive_s=30.0, headers={"Authorization": "Bearer sekrit-0123456789"}
    )
    assert "sekrit" not in repr(link.headers) and "sekrit" not in str(link.headers)
    assert link.headers["Authorization"] == "Bearer sekrit-0123456789"
