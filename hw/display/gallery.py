"""Writes every screen at 128×64 and 128×32 as PNG, and one contact sheet of them all (docs/screens/).

Run: ``python -m hw.display.gallery docs/screens`` (add ``--scale 1`` for panel-sized files); the
README shows ``docs/screens/contact-sheet.png`` and a test keeps the folder equal to this output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from hw.display.render import SIZES, font, page_count, render
from terminal.model import DeclineReason
from terminal.screens import (
    ASK_STAFF,
    SELECT_ACTION,
    ApproveAccessScreen,
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
    PinScreen,
    PriceLine,
    ProcessingScreen,
    ReaderOfflineScreen,
    Screen,
    TableAlreadyPaidScreen,
    TableBillScreen,
    TableChangedScreen,
    TableChooseScreen,
    TableConfirmingScreen,
    TableLinesScreen,
    TableLoadingScreen,
    TablePaidScreen,
    TableProblemScreen,
)
from terminal.screens.table import BillLine, BillProblem

PAIRING_URL = "https://pretix.example/wallet/pair"
# as long as the ready2order emulator's: a 32-character grant access token
APPROVAL_URL = "https://app.ready2order.com/grant-access?grantAccessToken=Zk3xQ9vT2mWb7LpR4sYc8NdH1jFe6GaU"
CONTACT_SHEET = "contact-sheet.png"

PRICES = (
    PriceLine("Beer", 290),
    PriceLine("Club Mate", 250),
    PriceLine("Coffee", 150),
    PriceLine("Long Island Iced Tea Special", 850),
    PriceLine("Water", 100),
    PriceLine("Espresso", 120),
)

# The bar's stock (yourbarmate): one product gone, one running low
STOCK_PRICES = (
    PriceLine("Beer", 290, product="beer", low=True),
    PriceLine("Club Mate", 250, product="mate", sold_out=True),
    PriceLine("Coffee", 150, product="coffee"),
)

# One example of every screen; the golden tests render exactly these.
SAMPLES: dict[str, Screen] = {
    "idle": IdleScreen(prices=PRICES),
    "idle_short": IdleScreen(prices=PRICES[:2]),
    "idle_stale": IdleScreen(prices=PRICES[:3], stale=True),
    "offline": OfflineScreen(unconfirmed=3, prices=PRICES[:2]),
    "offline_closed": OfflineScreen(unconfirmed=12, accepting=False),
    "idle_select": IdleScreen(prices=PRICES[:3], title=SELECT_ACTION),
    "idle_stock": IdleScreen(prices=STOCK_PRICES),
    "processing": ProcessingScreen(),
    "approved": ApprovedScreen(amount_cents=290, balance_cents=710),
    "approved_offline": ApprovedScreen(amount_cents=290, balance_cents=710, confirmed=False, offline=True),
    "declined_balance": DeclinedScreen(DeclineReason.INSUFFICIENT_BALANCE, balance_cents=120),
    "declined_server": DeclinedScreen(DeclineReason.SERVER_TROUBLE),
    "declined_offline": DeclinedScreen(DeclineReason.OFFLINE),
    "declined_sold_out": DeclinedScreen(DeclineReason.SOLD_OUT),
    "not_registered": NotRegisteredScreen(uid="04A1B2C3D4E5F6"),
    "not_registered_qr": NotRegisteredScreen(uid="04A1B2C3D4E5F6", pairing_url=PAIRING_URL),
    "reader_offline": ReaderOfflineScreen(detail="Reconnecting to the card reader"),
    "out_of_service": OutOfServiceScreen(message=ASK_STAFF),
    "cart": CartScreen(
        items=(CartLine("Beer", 2, 290), CartLine("Club Mate", 1, 250)), cancel_button="cancel"
    ),
    "balance": BalanceScreen(balance_cents=1234),
    "kiosk_locked": KioskLockedScreen(),
    "kiosk_pin": PinScreen(entered=2, length=4),
    "kiosk": KioskScreen(amount_cents=2000),
    "kiosk_choose": KioskScreen(buttons=(("ten", 1000), ("twenty", 2000), ("fifty", 5000))),
    "credit": CreditScreen(amount_cents=2000, balance_cents=3234),
    "approve_access": ApproveAccessScreen(url=APPROVAL_URL),
    "table_choose": TableChooseScreen(12, position=12, count=40),
    "table_loading": TableLoadingScreen(12),
    "table_bill": TableBillScreen(12, amount_cents=4387, orders=2),
    "table_lines": TableLinesScreen(
        12,
        amount_cents=4387,
        lines=(
            BillLine("Burger Deluxe", 1450),
            BillLine("Pommes", 450),
            BillLine("Weißbier 0,5", 495),
            BillLine("Gift card", 1992),
        ),
    ),
    "table_changed": TableChangedScreen(12, amount_cents=4882),
    "table_paid": TablePaidScreen(12, amount_cents=4387, balance_cents=613),
    "table_confirming": TableConfirmingScreen(12, amount_cents=4387),
    "table_already_paid": TableAlreadyPaidScreen(12),
    "table_no_party": TableProblemScreen(12, BillProblem.NO_PARTY),
    "table_pos_unavailable": TableProblemScreen(12, BillProblem.POS_UNAVAILABLE),
    "table_access_denied": TableProblemScreen(12, BillProblem.ACCESS_DENIED),
    "table_unreadable": TableProblemScreen(12, BillProblem.UNREADABLE),
    "table_unreachable": TableProblemScreen(12, BillProblem.UNREACHABLE),
    "table_nothing_due": TableProblemScreen(12, BillProblem.NOTHING_DUE),
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


def gallery(*, scale: int = 3, locale: str = "de") -> dict[str, Image.Image]:
    """Every sample screen and page at both sizes by file name, the contact sheet last."""
    images: dict[str, Image.Image] = {}
    for name, screen in SAMPLES.items():
        for width, height in SIZES:
            for filename, img in frames(name, screen, width, height, locale):
                if scale != 1:
                    img = img.resize((width * scale, height * scale), Image.Resampling.NEAREST)
                images[filename] = img
    images[CONTACT_SHEET] = contact_sheet(locale=locale)
    return images


def write_gallery(folder: Path, *, scale: int = 3, locale: str = "de") -> list[Path]:
    """Write every sample screen and page at both sizes, and the contact sheet; lit pixels white on black."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, img in gallery(scale=scale, locale=locale).items():
        path = folder / filename
        img.save(path)
        written.append(path)
    return written


SHEET_SCALE = 2  # panel pixels are too small to read at 1:1 on a screen
SHEET_COLUMNS = 4
SHEET_GAP = 12  # pixels between tiles and around the sheet
LABEL_SIZE = 13


def contact_sheet(*, locale: str = "de") -> Image.Image:
    """One greyscale image of every sample screen and page: a 128×64 section, then a 128×32 section.

    Each tile is the panel image (lit pixels white on black) with its sample name and page below.
    """
    label_font = font(False, LABEL_SIZE)
    heading_font = font(True, LABEL_SIZE + 3)
    sections = []
    for width, height in SIZES:
        tiles = []
        for name, screen in SAMPLES.items():
            pages = frames(name, screen, width, height, locale)
            for page, (_, img) in enumerate(pages):
                label = name.replace("_", " ") + (f" {page + 1}/{len(pages)}" if len(pages) > 1 else "")
                tiles.append((label, img))
        sections.append((f"{width}×{height}", width * SHEET_SCALE, height * SHEET_SCALE, tiles))
    label_h = LABEL_SIZE + 6
    heading_h = LABEL_SIZE + 3 + SHEET_GAP
    cell_w = max(w for _, w, _, _ in sections) + SHEET_GAP
    sheet_w = SHEET_GAP + SHEET_COLUMNS * cell_w
    sheet_h = SHEET_GAP
    for _, _, tile_h, tiles in sections:
        rows = -(-len(tiles) // SHEET_COLUMNS)
        sheet_h += heading_h + rows * (tile_h + label_h + SHEET_GAP)
    sheet = Image.new("L", (sheet_w, sheet_h), 255)
    draw = ImageDraw.Draw(sheet)
    draw.fontmode = "1"  # the same pixels wherever it is rendered: the test compares them
    y = SHEET_GAP
    for heading, tile_w, tile_h, tiles in sections:
        draw.text((SHEET_GAP, y), heading, font=heading_font, fill=0)
        y += heading_h
        for index, (label, img) in enumerate(tiles):
            column, row = index % SHEET_COLUMNS, index // SHEET_COLUMNS
            x = SHEET_GAP + column * cell_w
            top = y + row * (tile_h + label_h + SHEET_GAP)
            scaled = img.resize((tile_w, tile_h), Image.Resampling.NEAREST).convert("L")
            sheet.paste(scaled, (x, top))
            draw.text((x, top + tile_h + 2), label, font=label_font, fill=0)
        y += -(-len(tiles) // SHEET_COLUMNS) * (tile_h + label_h + SHEET_GAP)
    return sheet


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
