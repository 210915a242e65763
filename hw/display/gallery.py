"""Writes every screen at 128×64 and 128×32 as PNG (the README's docs/screens/ images).

Run: ``python -m hw.display.gallery docs/screens`` (add ``--scale 1`` for panel-sized files).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from hw.display.render import SIZES, page_count, render
from terminal.model import DeclineReason
from terminal.screens import (
    ApprovedScreen,
    BalanceScreen,
    CartLine,
    CartScreen,
    CreditScreen,
    DeclinedScreen,
    IdleScreen,
    KioskLockedScreen,
    KioskScreen,
    NotRegisteredScreen,
    OfflineScreen,
    OutOfServiceScreen,
    PriceLine,
    ProcessingScreen,
    ReaderOfflineScreen,
    Screen,
)

PAIRING_URL = "https://pretix.example/wallet/pair"

PRICES = (
    PriceLine("Beer", 290),
    PriceLine("Club Mate", 250),
    PriceLine("Coffee", 150),
    PriceLine("Long Island Iced Tea Special", 850),
    PriceLine("Water", 100),
    PriceLine("Espresso", 120),
)

# One example of every screen; the golden tests render exactly these.
SAMPLES: dict[str, Screen] = {
    "idle": IdleScreen(prices=PRICES),
    "idle_short": IdleScreen(prices=PRICES[:2]),
    "idle_stale": IdleScreen(prices=PRICES[:3], stale=True),
    "offline": OfflineScreen(unconfirmed=3, prices=PRICES[:2]),
    "offline_closed": OfflineScreen(unconfirmed=12, accepting=False),
    "processing": ProcessingScreen(),
    "approved": ApprovedScreen(amount_cents=290, balance_cents=710),
    "approved_offline": ApprovedScreen(amount_cents=290, balance_cents=710, confirmed=False),
    "declined_balance": DeclinedScreen(DeclineReason.INSUFFICIENT_BALANCE, balance_cents=120),
    "declined_server": DeclinedScreen(DeclineReason.SERVER_TROUBLE),
    "not_registered": NotRegisteredScreen(uid="04A1B2C3D4E5F6"),
    "not_registered_qr": NotRegisteredScreen(uid="04A1B2C3D4E5F6", pairing_url=PAIRING_URL),
    "reader_offline": ReaderOfflineScreen(detail="Reconnecting to the card reader"),
    "out_of_service": OutOfServiceScreen(message="Journal storage is full, call staff"),
    "cart": CartScreen(items=(CartLine("Beer", 2, 290), CartLine("Club Mate", 1, 250))),
    "balance": BalanceScreen(balance_cents=1234),
    "kiosk_locked": KioskLockedScreen(),
    "kiosk": KioskScreen(amount_cents=2000),
    "kiosk_choose": KioskScreen(),
    "credit": CreditScreen(amount_cents=2000, balance_cents=3234),
}


def frames(name: str, screen: Screen, width: int, height: int, locale: str) -> list[tuple[str, Image.Image]]:
    """Every page of one sample screen, named ``<name>_<w>x<h>[_p<n>].png``."""
    pages = page_count(screen, width, height, locale=locale)
    out = []
    for page in range(pages):
        suffix = f"_p{page + 1}" if pages > 1 else ""
        img = render(screen, width, height, locale=locale, page=page)
        out.append((f"{name}_{width}x{height}{suffix}.png", img))
    return out


def write_gallery(folder: Path, *, scale: int = 3, locale: str = "de") -> list[Path]:
    """Write every sample screen and page at both sizes; lit pixels white on black, like the panel."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, screen in SAMPLES.items():
        for width, height in SIZES:
            for filename, img in frames(name, screen, width, height, locale):
                if scale != 1:
                    img = img.resize((width * scale, height * scale), Image.Resampling.NEAREST)
                path = folder / filename
                img.save(path)
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folder", type=Path, nargs="?", default=Path("docs/screens"))
    parser.add_argument("--scale", type=int, default=3, help="pixels per panel pixel (default 3)")
    parser.add_argument("--locale", default="de", choices=("de", "en"))
    args = parser.parse_args(argv)
    written = write_gallery(args.folder, scale=args.scale, locale=args.locale)
    print(f"wrote {len(written)} PNG files to {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
