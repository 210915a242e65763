"""The yourbarmate webhook inside a running terminal: its password read, its receiver started and stopped
in the terminal's own event loop (``taptill run`` calls ``start`` after the journal is open and
migrated, and ``stop`` before it closes it)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from terminal.service.credentials import YOURBARMATE_PASSWORD
from terminal.service.secret import Secret, read_secret
from terminal.yourbarmate.config import YourbarmateConfig
from terminal.yourbarmate.receiver import Counts, WebhookReceiver

log = logging.getLogger(__name__)


def read_password(cfg: YourbarmateConfig) -> Secret:
    """The webhook's Basic password (its file, or the systemd credential); SecretError says what is wrong."""
    return read_secret(cfg.password_file, YOURBARMATE_PASSWORD.credential)


class YourbarmateRuntime:
    """Owns the webhook receiver for one terminal."""

    def __init__(
        self,
        cfg: YourbarmateConfig,
        journal_path: Path,
        *,
        password: Secret | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """``password`` None reads it now (SecretError); ``on_change`` runs in the loop after each event
        committed, for the device loop to recompute what is sold out or low."""
        self.cfg = cfg
        self.receiver = WebhookReceiver(
            cfg, password if password is not None else read_password(cfg), journal_path, on_change=on_change
        )

    @property
    def counts(self) -> Counts:
        return self.receiver.counts

    async def start(self) -> None:
        """Listen (ReceiverError, one line, when it cannot: the address is taken, the journal is gone)."""
        await self.receiver.start()

    async def stop(self) -> None:
        await self.receiver.stop()
