"""Draws every screen of terminal/screens/ onto a 1-bit 128×64 or 128×32 PIL image."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont

from terminal.money import format_cents
from terminal.screens import (
    DECLINE_TEXT,
    TAP_ACTION,
    ApproveAccessScreen,
    ApprovedScreen,
    BalanceScreen,
    CartScreen,
    CreditScreen,
    DeclinedScreen,
    IdleScreen,
    KioskScreen,
    NotRegisteredScreen,
    OfflineScreen,
    PriceLine,
    Screen,
    TableBillScreen,
    TableChangedScreen,
    TableChooseScreen,
    TableConfirmingScreen,
    TableLinesScreen,
    TablePaidScreen,
    pending_text,
    price_notes,
)
from terminal.screens.table import CHOOSE_HINT, PAY_ACTION

FONT_DIR = Path(__file__).parent / "fonts"
ELLIPSIS = "…"
SIZES: tuple[tuple[int, int], ...] = ((128, 64), (128, 32))

Font = ImageFont.FreeTypeFont


@cache
def font(bold: bool, size: int) -> Font:
    """The bundled DejaVu Sans; BASIC layout so an installed libraqm cannot move glyphs."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(FONT_DIR / name), size, layout_engine=ImageFont.Layout.BASIC)


@dataclass(frozen=True)
class Layout:
    """Pixel metrics of one panel height; every row is one line of body text."""

    width: int
    height: int
    bar_height: int
    title_size: int
    body_size: int
    row_pitch: int
    hero_size: int  # 0: no room for a hero line, it goes to the title bar's right side
    hero_height: int

    @property
    def title_font(self) -> Font:
        return font(True, self.title_size)

    @property
    def body_font(self) -> Font:
        return font(False, self.body_size)

    def rows(self, with_hero: bool) -> int:
        top = self.bar_height + (self.hero_height if with_hero and self.hero_size else 0)
        return (self.height - top) // self.row_pitch

    def row_y(self, index: int, with_hero: bool) -> int:
        top = self.bar_height + (self.hero_height if with_hero and self.hero_size else 0)
        return top + index * self.row_pitch


LAYOUTS: dict[tuple[int, int], Layout] = {
    (128, 64): Layout(
        128, 64, bar_height=13, title_size=11, body_size=11, row_pitch=12, hero_size=16, hero_height=21
    ),
    (128, 32): Layout(
        128, 32, bar_height=11, title_size=9, body_size=9, row_pitch=10, hero_size=0, hero_height=0
    ),
}


@dataclass(frozen=True)
class Composition:
    """What one screen shows, before it is fitted to a panel size."""

    title: str
    hero: str = ""  # the big line: an amount
    paragraphs: tuple[str, ...] = ()  # wrapped over the free rows
    rows: tuple[tuple[str, str], ...] = ()  # two columns (name, price), paged when they do not fit
    footer: str = ""  # always on the last row
    qr: str | None = None
    qr_fallback: tuple[str, ...] = ()  # the paragraphs instead, when the code is too big for the panel
    check: bool = False  # a tick beside the hero: money moved


# --- text fitting -------------------------------------------------------------------------------


def text_width(text: str, f: Font) -> int:
    return int(f.getlength(text))


def graphemes(text: str) -> list[str]:
    """Split into base characters with their combining marks, so shortening never splits a glyph."""
    out: list[str] = []
    for ch in text:
        if out and (unicodedata.combining(ch) or ch in "\u200d\ufe0f"):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def shorten(text: str, f: Font, width: int) -> str:
    """``text`` if it fits in ``width`` pixels, else the longest glyph prefix followed by an ellipsis."""
    if text_width(text, f) <= width:
        return text
    parts = graphemes(text)
    while parts:
        parts.pop()
        candidate = "".join(parts).rstrip() + ELLIPSIS
        if text_width(candidate, f) <= width:
            return candidate
    return ELLIPSIS if text_width(ELLIPSIS, f) <= width else ""


def wrap(text: str, f: Font, width: int, max_lines: int) -> list[str]:
    """Word-wrap into at most ``max_lines`` lines; the last one is shortened when text remains."""
    if max_lines <= 0:
        return []
    words = text.split()
    lines: list[str] = []
    current = ""
    i = 0
    while i < len(words):
        candidate = f"{current} {words[i]}" if current else words[i]
        if text_width(candidate, f) <= width or not current:
            current = candidate
            i += 1
            if len(lines) < max_lines - 1 and text_width(current, f) > width:
                lines.append(shorten(current, f, width))  # one word wider than the line
                current = ""
            continue
        if len(lines) == max_lines - 1:
            break
        lines.append(current)
        current = ""
    rest = " ".join([current, *words[i:]]).strip()
    if rest:
        lines.append(shorten(rest, f, width))
    return lines


# --- composing screens --------------------------------------------------------------------------


def _money(cents: int, locale: str, currency: str) -> str:
    return format_cents(cents, locale, currency)


def _price_rows(
    prices: tuple[PriceLine, ...], stale: bool, locale: str, currency: str
) -> tuple[tuple[str, str], ...]:
    return tuple((p.name, p.price_text(locale, currency, stale)) for p in prices)


def compose(screen: Screen, locale: str, currency: str, pairing_url: str | None = None) -> Composition:
    """The content of ``screen``; the screen's own text() for anything without a special layout."""

    def m(cents: int) -> str:
        return _money(cents, locale, currency)

    match screen:
        case IdleScreen():
            rows = _price_rows(screen.prices, screen.stale, locale, currency)
            rows += tuple((note, "") for note in price_notes(screen.prices, screen.stale))
            return Composition(screen.title, rows=rows)
        case OfflineScreen():
            rows = _price_rows(screen.prices, False, locale, currency) if screen.accepting else ()
            return Composition("OFFLINE", paragraphs=(screen.first_line,), rows=rows)
        case ApprovedScreen():
            lines = [] if screen.balance_cents is None else [f"Balance {m(screen.balance_cents)}"]
            if not screen.confirmed:
                lines.append(pending_text(screen.offline))
            return Composition("Approved", hero=m(screen.amount_cents), paragraphs=tuple(lines), check=True)
        case DeclinedScreen():
            lines = [DECLINE_TEXT[screen.reason]]
            if screen.balance_cents is not None:
                lines.append(f"Balance {m(screen.balance_cents)}")
            return Composition("Declined", paragraphs=tuple(lines))
        case NotRegisteredScreen():
            url = screen.pairing_url or pairing_url
            if url:
                return Composition(
                    "Unknown card", paragraphs=("Scan to pair",), qr=url, qr_fallback=("Card not registered",)
                )
            return Composition("Unknown card", paragraphs=("Card not registered",))
        case ApproveAccessScreen():
            # the URL itself is on the console: a 128x32 panel has no room for the code
            return Composition(
                screen.system,
                paragraphs=("Scan to approve",),
                qr=screen.url,
                qr_fallback=("Approve: see console",),
            )
        case CartScreen():
            rows = tuple((f"{i.quantity}x {i.name}", m(i.quantity * i.price_cents)) for i in screen.items)
            return Composition(f"Total {m(screen.total_cents)}", rows=rows, footer=screen.prompt)
        case BalanceScreen():
            return Composition("Balance", hero=m(screen.balance_cents))
        case KioskScreen() if screen.amount_cents > 0:
            return Composition("Top-up", hero=f"+{m(screen.amount_cents)}", paragraphs=(TAP_ACTION,))
        case KioskScreen():
            # every row for the buttons (what each adds): a 128x32 panel has only two
            rows = tuple((name, f"+{m(cents)}") for name, cents in screen.buttons)
            return Composition("Top-up: choose", paragraphs=() if rows else ("Choose amount",), rows=rows)
        case CreditScreen():
            balance = () if screen.balance_cents is None else (f"Balance {m(screen.balance_cents)}",)
            return Composition("Credited", hero=f"+{m(screen.amount_cents)}", paragraphs=balance, check=True)
        case TableChooseScreen():
            return Composition("Choose table", hero=f"Table {screen.table_id}", paragraphs=(CHOOSE_HINT,))
        case TableBillScreen():
            return Composition(
                f"Table {screen.table_id}",
                hero=m(screen.amount_cents),
                paragraphs=(screen.orders_text,),
                footer=PAY_ACTION,
            )
        case TableLinesScreen():
            rows = tuple((line.description, m(line.price_cents)) for line in screen.lines)
            title = f"Table {screen.table_id}: {m(screen.amount_cents)}"
            return Composition(title, rows=rows, footer=PAY_ACTION)
        case TableConfirmingScreen():
            return Composition(
                f"Table {screen.table_id}",
                hero=m(screen.amount_cents),
                paragraphs=("Confirming payment", "Staff: taptill status"),
            )
        case TableChangedScreen():
            # the guest is at that table: the amount says more than its number on a 128x32 bar
            return Composition(
                "New bill", hero=m(screen.amount_cents), paragraphs=("Nothing charged", "Tap again to pay")
            )
        case TablePaidScreen():
            # Two rows under the amount on either panel: what staff must do first, then the balance (a
            # table bill is shown paid only on the wallet's word: TableConfirmingScreen otherwise).
            lines = ["Close it at the POS"] if screen.close_at_pos else []
            if screen.balance_cents is not None:
                lines.append(f"Balance {m(screen.balance_cents)}")
            return Composition(
                f"Table {screen.table_id} paid",
                hero=m(screen.amount_cents),
                paragraphs=tuple(lines),
                check=True,
            )
    text = screen.text(locale, currency)
    return Composition(text.title, paragraphs=tuple(line for line in text.lines if line))


# --- drawing ------------------------------------------------------------------------------------


def page_count(
    screen: Screen,
    width: int = 128,
    height: int = 64,
    *,
    locale: str = "de",
    currency: str = "EUR",
    pairing_url: str | None = None,
) -> int:
    """How many pages the screen's rows need at this size (1 when everything fits)."""
    layout = layout_for(width, height)
    comp = compose(screen, locale, currency, pairing_url)
    return _paging(comp, layout)[1]


def layout_for(width: int, height: int) -> Layout:
    try:
        return LAYOUTS[(width, height)]
    except KeyError:
        sizes = ", ".join(f"{w}x{h}" for w, h in SIZES)
        raise ValueError(f"no layout for a {width}x{height} panel; supported sizes are {sizes}") from None


def _paging(comp: Composition, layout: Layout) -> tuple[int, int]:
    """(rows per page, page count) for the composition's two-column rows."""
    free = layout.rows(bool(comp.hero)) - len(comp.paragraphs) - (1 if comp.footer else 0)
    if not comp.rows or free <= 0:
        return 0, 1
    return free, max(1, -(-len(comp.rows) // free))


def render(
    screen: Screen,
    width: int = 128,
    height: int = 64,
    *,
    locale: str = "de",
    currency: str = "EUR",
    page: int = 0,
    pairing_url: str | None = None,
) -> Image.Image:
    """A mode "1" image of ``screen``; ``page`` picks the page of a long price board (wraps around)."""
    layout = layout_for(width, height)
    comp = compose(screen, locale, currency, pairing_url)
    img = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(img)
    draw.fontmode = "1"  # no anti-aliasing: identical pixels whatever FreeType rasterises in grey
    if comp.qr:
        if _draw_qr_screen(draw, img, comp, layout):
            return img
        comp = Composition(comp.title, paragraphs=comp.qr_fallback)
    per_page, pages = _paging(comp, layout)
    page %= pages
    title_right = f"{page + 1}/{pages}" if pages > 1 else ""
    room = layout.width - 4 - (text_width(title_right, layout.title_font) + 6)
    if title_right and text_width(comp.title, layout.title_font) > room:
        title_right = ""  # the title says what to do ("Choose, then tap"): whole, rather than a page number
    hero_in_bar = bool(comp.hero) and not layout.hero_size
    _draw_bar(draw, layout, comp.title, comp.hero if hero_in_bar else title_right)
    with_hero = bool(comp.hero) and bool(layout.hero_size)
    if with_hero:
        _draw_hero(draw, layout, comp)
    lines = _body_lines(comp, layout, per_page, page)
    body = layout.body_font
    for i, (left, right) in enumerate(lines):
        y = layout.row_y(i, with_hero)
        right_w = text_width(right, body) if right else 0
        left_w = layout.width - 2 - (right_w + 4 if right else 0)
        draw.text((1, y), shorten(left, body, left_w), font=body, fill=1)
        if right:
            draw.text((layout.width - 1 - right_w, y), right, font=body, fill=1)
    return img


def _body_lines(comp: Composition, layout: Layout, per_page: int, page: int) -> list[tuple[str, str]]:
    total = layout.rows(bool(comp.hero))
    free = total - (1 if comp.footer else 0)
    lines: list[tuple[str, str]] = []
    body = layout.body_font
    width = layout.width - 2
    if comp.rows and per_page:
        lines += [(p, "") for p in comp.paragraphs[:free]]
        lines += list(comp.rows[page * per_page : (page + 1) * per_page])
    else:
        paragraphs = comp.paragraphs
        for i, paragraph in enumerate(paragraphs):
            budget = free - len(lines) - (len(paragraphs) - i - 1)
            lines += [(line, "") for line in wrap(paragraph, body, width, max(budget, 1 if i == 0 else 0))]
        lines = lines[:free]
    if comp.footer:
        lines.append((comp.footer, ""))
    return lines


def _draw_bar(draw: ImageDraw.ImageDraw, layout: Layout, title: str, right: str) -> None:
    """The title in dark letters on a lit bar across the top."""
    f = layout.title_font
    fg = 0
    draw.rectangle((0, 0, layout.width - 1, layout.bar_height - 1), fill=1)
    right_w = text_width(right, f) if right else 0
    room = layout.width - 4 - (right_w + 6 if right else 0)
    # y -1: the fonts' internal leading would otherwise push the caps to the bar's bottom edge
    draw.text((2, -1), shorten(title, f, room), font=f, fill=fg)
    if right:
        draw.text((layout.width - 2 - right_w, -1), right, font=f, fill=fg)


def _draw_hero(draw: ImageDraw.ImageDraw, layout: Layout, comp: Composition) -> None:
    icon = 14 if comp.check else 0
    room = layout.width - 2 - (icon + 4 if icon else 0)
    f = font(True, layout.hero_size)
    if text_width(comp.hero, f) > room:
        f = layout.title_font  # a huge amount: smaller digits rather than a shortened number
    y = layout.bar_height + 1
    draw.text((1, y), shorten(comp.hero, f, room), font=f, fill=1)
    if comp.check:
        x, top = layout.width - 15, y + 3
        draw.line((x, top + 7, x + 4, top + 11, x + 13, top + 1), fill=1, width=2)


@cache
def qr_matrix(url: str) -> tuple[tuple[bool, ...], ...]:
    """The QR modules of ``url`` (error correction L, no quiet zone), row by row."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_L, border=0, box_size=1)
    qr.add_data(url)
    qr.make(fit=True)
    return tuple(tuple(bool(m) for m in row) for row in qr.get_matrix())


def qr_placement(url: str, layout: Layout) -> tuple[int, int, int] | None:
    """(left, top, pixels per module) of the QR code, or None when it cannot fit the panel."""
    modules = len(qr_matrix(url))
    box = layout.height // (modules + 2)  # one lit module of quiet zone on each side
    if box < 1:
        return None
    side = (modules + 2) * box
    return layout.width - side, (layout.height - side) // 2, box


def _draw_qr_screen(draw: ImageDraw.ImageDraw, img: Image.Image, comp: Composition, layout: Layout) -> bool:
    """A screen with a QR code on the right (pairing a card, approving access); False when it is too big."""
    assert comp.qr is not None
    placed = qr_placement(comp.qr, layout)
    if placed is None:
        return False
    left, top, box = placed
    matrix = qr_matrix(comp.qr)
    side = (len(matrix) + 2) * box
    # dark modules on a lit field: phones read the usual polarity, not an inverted code
    draw.rectangle((left, top, left + side - 1, top + side - 1), fill=1)
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark:
                x, y = left + (c + 1) * box, top + (r + 1) * box
                draw.rectangle((x, y, x + box - 1, y + box - 1), fill=0)
    text_w = left - 3
    rows = layout.height // layout.row_pitch
    title_lines = wrap(comp.title, layout.title_font, text_w, max(1, rows - len(comp.paragraphs)))
    lines = [(line, layout.title_font) for line in title_lines]
    for i, paragraph in enumerate(comp.paragraphs):
        budget = rows - len(lines) - (len(comp.paragraphs) - i - 1)
        lines += [(line, layout.body_font) for line in wrap(paragraph, layout.body_font, text_w, budget)]
    for i, (line, f) in enumerate(lines[:rows]):
        draw.text((0, i * layout.row_pitch - 1), line, font=f, fill=1)
    return True
