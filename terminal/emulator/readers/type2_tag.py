"""An NTAG213-like Type 2 tag (7-byte UID) that answers nfcpy's ``udp`` driver over plain UDP on loopback."""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
from enum import Enum
from functools import reduce
from operator import xor
from types import TracebackType

from terminal.uid import normalise_uid

# The wire format of nfc/clf/udp.py: one datagram per frame, b"<bitrate+type> <hex>", or b"RFOFF".
_BRTY = b"106A"
_RFOFF = b"RFOFF"

_SENS_RES = bytes.fromhex("4400")  # ATQA of an NTAG21x: double-size UID, no bit-frame anticollision
_SAK_MORE = bytes.fromhex("04")  # cascade level 1 done, UID not complete
_SAK_TYPE2 = bytes.fromhex("00")  # UID complete, Type 2 tag (no ISO 14443-4)
_NAK = bytes.fromhex("00")
_VERSION_NTAG213 = bytes.fromhex("0004040201000F03")  # GET_VERSION answer nfcpy maps to NTAG213
_PAGES = 45  # NTAG213: pages 0..44
_DEFAULT_UID = "04A1B2C3D4E5F6"


class _State(Enum):
    IDLE = "idle"  # field on, not yet woken (or muted by an unsupported command)
    READY1 = "ready1"  # woken by SENS_REQ, cascade level 1 pending
    READY2 = "ready2"  # cascade level 1 selected, level 2 pending
    ACTIVE = "active"  # selected: answers READ and GET_VERSION
    HALT = "halt"  # halted: only a WUPA (52) wakes it


def ntag213_memory(uid: bytes) -> bytes:
    """The 180 bytes of an NTAG213 holding ``uid`` (7 bytes) and an empty NDEF message."""
    if len(uid) != 7:
        raise ValueError(f"an NTAG213 UID has 7 bytes, got {len(uid)}; pass a 14-digit hex UID")
    bcc0 = 0x88 ^ uid[0] ^ uid[1] ^ uid[2]
    bcc1 = uid[3] ^ uid[4] ^ uid[5] ^ uid[6]
    memory = bytearray(_PAGES * 4)
    memory[0:12] = uid[0:3] + bytes([bcc0]) + uid[3:7] + bytes([bcc1, 0x48, 0x00, 0x00])
    memory[12:16] = bytes.fromhex("E1101200")  # capability container: NDEF 1.0, 144 bytes, read/write
    memory[16:20] = bytes.fromhex("0300FE00")  # an empty NDEF message TLV, then the terminator TLV
    memory[41 * 4 : 45 * 4] = bytes.fromhex("000000FF00050000FFFFFFFF00000000")
    return bytes(memory)


def _cascade_levels(uid: bytes) -> tuple[bytes, bytes]:
    """SDD_RES of cascade levels 1 and 2 for a 7-byte UID: the cascade tag 88, UID bytes and their BCC."""
    cl1 = bytes([0x88]) + uid[0:3]
    cl2 = uid[3:7]
    return cl1 + bytes([reduce(xor, cl1)]), cl2 + bytes([reduce(xor, cl2)])


class Type2TagEmulator:
    """A tag in front of an nfcpy ``udp:127.0.0.1:PORT`` reader; place() and remove() move it in and out."""

    def __init__(self, uid: str = _DEFAULT_UID, port: int = 0, present: bool = True) -> None:
        self._lock = threading.Lock()
        self._uid = self._parse_uid(uid)
        self._present = present
        self._state = _State.IDLE
        self._requested_port = port
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.frames_received = 0
        # SENS_REQ/ALL_REQ frames, present or not: each is a reader's sense (a poll for a new tag), while
        # a held tag's presence checks are READs. Tests wait for one before placing a tag that must be
        # a tap rather than a tag already lying there when the reader started.
        self.senses_received = 0
        self._corrupt_next = False
        self._broken = False

    @staticmethod
    def _parse_uid(uid: str) -> bytes:
        raw = bytes.fromhex(normalise_uid(uid))
        if len(raw) != 7:
            raise ValueError(f"the Type 2 tag emulator needs a 7-byte UID, got {len(raw)} bytes ({uid!r})")
        return raw

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the tag emulator is not started; call start() first")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def device(self) -> str:
        """The nfcpy device path a reader uses to reach this tag."""
        return f"udp:127.0.0.1:{self.port}"

    @property
    def uid(self) -> str:
        with self._lock:
            return self._uid.hex().upper()

    @property
    def present(self) -> bool:
        with self._lock:
            return self._present

    def place(self, uid: str | None = None) -> None:
        """Put a tag (optionally with a new UID) into the field."""
        with self._lock:
            if uid is not None:
                self._uid = self._parse_uid(uid)
            self._present = True
            self._state = _State.IDLE

    def remove(self) -> None:
        """Take the tag out of the field: it answers nothing until placed again."""
        with self._lock:
            self._present = False
            self._state = _State.IDLE

    def corrupt_next_answer(self) -> None:
        """Send one malformed frame instead of the next answer; nfcpy fails as on a broken device."""
        with self._lock:
            self._corrupt_next = True

    def break_device(self) -> None:
        """Answer every frame, tag or no tag, with a malformed one until mend(): a reader that fails at
        every poll (a broken device or cable), as nfcpy's driver sees it."""
        with self._lock:
            self._broken = True

    def mend(self) -> None:
        with self._lock:
            self._broken = False

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the tag emulator is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", self._requested_port))
        self._socket = sock
        self._thread = threading.Thread(target=self._serve, name="type2-tag-emulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        sock, thread = self._socket, self._thread
        if sock is None or thread is None:
            return
        # close() alone does not wake a thread blocked in recvfrom; shutdown() does.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        thread.join(timeout=2.0)
        sock.close()
        self._thread = None

    def __enter__(self) -> Type2TagEmulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        sock = self._socket
        assert sock is not None
        while True:
            try:
                datagram, peer = sock.recvfrom(1024)
            except OSError:
                return
            if not datagram:  # shutdown() by stop()
                return
            reply = self.answer(datagram)
            if reply is not None:
                try:
                    sock.sendto(reply, peer)
                except OSError:
                    return

    def answer(self, datagram: bytes) -> bytes | None:
        """The datagram the tag sends back for one received datagram, or None when it stays silent."""
        with self._lock:
            self.frames_received += 1
            if datagram.startswith(_RFOFF):
                self._state = _State.IDLE
                return None
            parts = datagram.split()
            if len(parts) != 2 or parts[0] != _BRTY:
                return None
            try:
                command = bytes.fromhex(parts[1].decode("ascii"))
            except ValueError:
                return None
            if command in (b"\x26", b"\x52"):
                self.senses_received += 1
            if self._broken:
                return _BRTY + b" zz"
            if not self._present:
                return None
            response = self._respond(command)
            if response is None:
                return None
            if self._corrupt_next:
                self._corrupt_next = False
                return _BRTY + b" zz"
            return _BRTY + b" " + response.hex().encode("ascii")

    def _respond(self, command: bytes) -> bytes | None:
        cl1, cl2 = _cascade_levels(self._uid)
        state = self._state
        if (command == b"\x26" and state is not _State.HALT) or command == b"\x52":
            self._state = _State.READY1
            return _SENS_RES
        if state is _State.READY1 and command == b"\x93\x20":
            return cl1
        if state is _State.READY1 and command == b"\x93\x70" + cl1:
            self._state = _State.READY2
            return _SAK_MORE
        if state is _State.READY2 and command == b"\x95\x20":
            return cl2
        if state is _State.READY2 and command == b"\x95\x70" + cl2:
            self._state = _State.ACTIVE
            return _SAK_TYPE2
        if state is _State.ACTIVE and len(command) == 2 and command[0] == 0x30:
            return self._read(command[1])
        if state is _State.ACTIVE and command == b"\x60":
            return _VERSION_NTAG213
        if state is _State.ACTIVE and command == b"\x50\x00":
            self._state = _State.HALT
            return None
        # A real Type 2 tag goes mute on anything it does not support (nfcpy relies on that when it
        # probes with AUTHENTICATE 1A); it wakes again on the next SENS_REQ.
        if state is not _State.HALT:
            self._state = _State.IDLE
        return None

    def _read(self, page: int) -> bytes:
        if page >= _PAGES:
            self._state = _State.IDLE
            return _NAK
        memory = ntag213_memory(self._uid)
        # READ returns four pages and wraps around to page 0 at the end of memory.
        return bytes(memory[(page * 4 + i) % len(memory)] for i in range(16))


def main(argv: list[str] | None = None) -> int:
    """Run a tag on 127.0.0.1:PORT; stdin lines ``place [UID]``, ``remove`` and ``quit`` move it."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=54321, help="UDP port the nfcpy reader is told to use")
    parser.add_argument("--uid", default=_DEFAULT_UID, help="7-byte UID as 14 hex digits")
    parser.add_argument("--absent", action="store_true", help="start with the tag out of the field")
    args = parser.parse_args(argv)
    with Type2TagEmulator(uid=args.uid, port=args.port, present=not args.absent) as tag:
        print(f"type 2 tag {tag.uid} on {tag.device} ({'present' if tag.present else 'absent'})", flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "quit":
                break
            try:
                if words[0] == "place":
                    tag.place(words[1] if len(words) > 1 else None)
                elif words[0] == "remove":
                    tag.remove()
                else:
                    print(f"unknown command {words[0]!r}; use place [UID], remove or quit", flush=True)
                    continue
            except ValueError as exc:
                print(exc, flush=True)
                continue
            print(f"{tag.uid} {'present' if tag.present else 'absent'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
