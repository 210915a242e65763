"""Secrets: private files or systemd credentials only, and the value never shows in repr, str or errors."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest

from terminal.service.secret import Secret, SecretError, read_secret

VALUE = "tok_9f8e7d6c5b4a-very-secret"


def secret_file(directory: Path, mode: int, text: str = VALUE + "\n") -> Path:
    path = directory / "wallet.token"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_private_file_is_read_and_stripped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert read_secret(secret_file(tmp_path, 0o600), "wallet.token").reveal() == VALUE
    assert read_secret(secret_file(tmp_path, 0o400), "wallet.token").reveal() == VALUE


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o601, 0o610, 0o666])
def test_a_file_others_can_touch_is_refused_with_the_chmod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = secret_file(tmp_path, mode)
    with pytest.raises(SecretError) as info:
        read_secret(path, "wallet.token")
    message = str(info.value)
    assert str(path) in message and f"chmod 600 {path}" in message
    assert VALUE not in message and "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", "is empty"), ("  \n", "is empty"), (None, "does not exist")],
)
def test_empty_or_missing_files_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None, expected: str
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = secret_file(tmp_path, 0o600, text) if text is not None else tmp_path / "nope.token"
    with pytest.raises(SecretError, match=expected):
        read_secret(path, "wallet.token")


def test_binary_garbage_is_refused_without_echoing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "wallet.token"
    path.write_bytes(b"\xff\xfe" + VALUE.encode())
    path.chmod(0o600)
    with pytest.raises(SecretError) as info:
        read_secret(path, "wallet.token")
    assert VALUE not in str(info.value) and "UTF-8" in str(info.value)


def test_no_path_and_no_credential_names_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(SecretError, match=r"LoadCredential=wallet\.token:PATH"):
        read_secret(None, "wallet.token")


def test_systemd_credentials_directory_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    # systemd's credential files are 0440 owned by root's group; their mode is systemd's business.
    (creds / "wallet.token").write_text("from-systemd\n")
    (creds / "wallet.token").chmod(0o444)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    private = secret_file(tmp_path, 0o600)
    assert read_secret(private, "wallet.token").reveal() == "from-systemd"
    # A credential systemd did not pass falls back to the file, with its mode checked.
    assert read_secret(private, "other.token").reveal() == VALUE
    with pytest.raises(SecretError, match="chmod 600"):
        read_secret(secret_file(tmp_path, 0o644), "other.token")


def test_the_value_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(VALUE)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret]), repr({"t": secret})]
    assert all(VALUE not in text for text in shown)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").warning("token is %s / %r", secret, secret)
    assert VALUE not in caplog.text
    try:
        raise RuntimeError(f"request failed with {secret}")
    except RuntimeError:
        assert VALUE not in traceback.format_exc()
    assert not hasattr(secret, "__dict__")  # vars() cannot show it either


def test_equality_compares_values_without_revealing() -> None:
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert Secret("a") != "a"  # a Secret never equals the bare string that could be logged
    assert len({Secret("a"), Secret("a")}) == 1


@pytest.mark.parametrize("mode", [0o700, 0o755])
def test_a_directory_is_named_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    folder = tmp_path / "wallet.token"
    folder.mkdir(mode=mode)
    with pytest.raises(SecretError) as info:
        read_secret(folder, "wallet.token")
    assert str(info.value) == (
        f"secret file {folder} is a directory; point the key at the file in it that holds the secret"
    )


def test_a_fifo_is_refused_without_blocking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    fifo = tmp_path / "wallet.token"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(SecretError, match="is not a regular file"):
        read_secret(fifo, "wallet.token")
