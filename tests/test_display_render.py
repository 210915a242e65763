"""The screen renderer: shortening at glyph boundaries, wrapping, money by locale, the pairing QR code,
and guest words (plain, whole on both panel sizes)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hw.display.gallery import SAMPLES
from hw.display.render import (
    ELLIPSIS,
    LAYOUTS,
    SIZES,
    _body_lines,
    _paging,
    compose,
    font,
    graphemes,
    page_count,
    qr_matrix,
    qr_placement,
    render,
    shorten,
    text_width,
    wrap,
)
from terminal.model import DeclineReason
from terminal.screens import (
    ASK_STAFF,
    SELECT_ACTION,
    TAP_ACTION,
    ApprovedScreen,
    CartLine,
    CartScreen,
    DeclinedScreen,
    IdleScreen,
    KioskLockedScreen,
    KioskScreen,
    NotRegisteredScreen,
    OfflineScreen,
    OutOfServiceScreen,
    PriceLine,
    ReaderOfflineScreen,
    Screen,
)

pytestmark = pytest.mark.oled

URL = "https://pretix.example/wallet/pair"
BODY = font(False, 11)


def test_text_that_fits_is_left_alone() -> None:
    assert shorten("Beer", BODY, 128) == "Beer"


def test_long_text_ends_in_an_ellipsis_within_the_width() -> None:
    text = "Long Island Iced Tea Special"
    short = shorten(text, BODY, 60)
    assert short.endswith(ELLIPSIS)
    assert text.startswith(short[:-1])
    assert text_width(short, BODY) <= 60
    # the longest such prefix: one more glyph would not fit
    longer = text[: len(short)] + ELLIPSIS
    assert text_width(longer, BODY) > 60


def test_shortening_never_separates_a_combining_accent_from_its_letter() -> None:
    text = "Cafe\u0301 Cre\u0300me Bru\u0302le\u0301e"  # decomposed accents
    for width in range(8, text_width(text, BODY)):
        short = shorten(text, BODY, width)
        kept = short.removesuffix(ELLIPSIS)
        assert graphemes(kept) == graphemes(text)[: len(graphemes(kept))]


@settings(max_examples=200, deadline=None)
@given(
    st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=40),
    st.integers(min_value=0, max_value=130),
)
def test_shortened_text_always_fits_and_is_a_prefix(text: str, width: int) -> None:
    short = shorten(text, BODY, width)
    assert text_width(short, BODY) <= width or short == ""
    if short != text:
        assert short == "" or short.endswith(ELLIPSIS)
        assert text.startswith(short.removesuffix(ELLIPSIS))


def test_wrap_breaks_at_spaces_and_shortens_the_last_line() -> None:
    lines = wrap("Journal storage is full, call the staff at the bar now please", BODY, 126, 2)
    assert len(lines) == 2
    assert lines[0] == "Journal storage is full,"
    assert lines[1].endswith(ELLIPSIS)
    assert all(text_width(line, BODY) <= 126 for line in lines)
    assert wrap("Choose amount", BODY, 126, 3) == ["Choose amount"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzW€"), min_size=1, max_size=25), max_size=12),
    st.integers(min_value=20, max_value=126),
    st.integers(min_value=1, max_value=4),
)
def test_wrapped_lines_fit_and_keep_the_words_in_order(words: list[str], width: int, rows: int) -> None:
    text = " ".join(words)
    lines = wrap(text, BODY, width, rows)
    assert len(lines) <= rows
    assert all(text_width(line, BODY) <= width for line in lines)
    if not any(ELLIPSIS in line for line in lines):
        assert " ".join(lines).split() == words  # nothing lost when nothing was shortened


def test_money_on_screen_follows_the_locale() -> None:
    approved = ApprovedScreen(amount_cents=290, balance_cents=123456)
    de = compose(approved, "de", "EUR")
    en = compose(approved, "en", "EUR")
    assert (de.hero, de.paragraphs) == ("2,90 €", ("Balance 1.234,56 €",))
    assert (en.hero, en.paragraphs) == ("€2.90", ("Balance €1,234.56",))
    assert render(approved, locale="de").tobytes() != render(approved, locale="en").tobytes()
    cart = compose(CartScreen(items=(CartLine("Beer", 2, 290),)), "de", "EUR")
    assert cart.title == "Total 5,80 €" and cart.rows == (("2x Beer", "5,80 €"),)


def test_euro_sign_is_a_real_glyph_not_a_missing_box() -> None:
    # a font without € would draw the same .notdef box for € and for another missing character
    f = font(False, 11)
    assert f.getmask("€").getbbox() != f.getmask("\uffff").getbbox()


def lit(img: Image.Image, box: tuple[int, int, int, int]) -> int:
    return img.crop(box).convert("L").histogram()[255]


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_pairing_qr_code_is_drawn_module_for_module(width: int, height: int) -> None:
    img = render(NotRegisteredScreen(uid="04A1B2C3", pairing_url=URL), width, height)
    placed = qr_placement(URL, LAYOUTS[(width, height)])
    assert placed is not None
    left, top, box = placed
    matrix = qr_matrix(URL)
    px = img.load()
    assert px is not None
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            x, y = left + (c + 1) * box, top + (r + 1) * box
            assert all(px[x + dx, y + dy] == (0 if dark else 1) for dx in range(box) for dy in range(box))
    side = (len(matrix) + 2) * box
    # the quiet zone around the modules is lit
    assert all(px[left + i, top] == 1 and px[left + i, top + side - 1] == 1 for i in range(side))
    assert side <= height and left + side <= width


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_no_qr_code_without_a_pairing_url(width: int, height: int) -> None:
    layout = LAYOUTS[(width, height)]
    placed = qr_placement(URL, layout)
    assert placed is not None
    left, _, _ = placed
    plain = render(NotRegisteredScreen(uid="04A1B2C3"), width, height)
    with_qr = render(NotRegisteredScreen(uid="04A1B2C3", pairing_url=URL), width, height)
    # below the first body line, where the code would be
    region = (left, layout.bar_height + layout.row_pitch + 2, width, height)
    assert lit(plain, region) == 0
    area = (region[2] - region[0]) * (region[3] - region[1])
    assert lit(with_qr, region) > area // 4


def test_configured_pairing_url_is_used_when_the_screen_has_none() -> None:
    screen = NotRegisteredScreen(uid="04A1B2C3")
    assert (
        render(screen, pairing_url=URL).tobytes()
        == render(NotRegisteredScreen(uid="04A1B2C3", pairing_url=URL)).tobytes()
    )


def test_a_url_too_long_for_the_panel_falls_back_to_text() -> None:
    url = "https://pretix.example/" + "x" * 300
    assert qr_placement(url, LAYOUTS[(128, 32)]) is None
    img = render(NotRegisteredScreen(uid="04A1B2C3", pairing_url=url), 128, 32)
    assert img.tobytes() == render(NotRegisteredScreen(uid="04A1B2C3"), 128, 32).tobytes()


def test_price_board_pages_wrap_around_and_names_never_run_into_prices() -> None:
    prices = tuple(PriceLine("Extraordinarily long product name", 100 * i) for i in range(1, 8))
    board = IdleScreen(prices=prices)
    assert render(board, page=0).tobytes() == render(board, page=2).tobytes()  # 7 rows: 2 pages of 4
    img = render(board)
    # on each row, a gap of at least 3 dark columns separates the shortened name from the price
    for row in range(4):
        y0 = LAYOUTS[(128, 64)].row_y(row, False)
        columns = [any(img.getpixel((x, y)) for y in range(y0, y0 + 12)) for x in range(128)]
        runs = "".join("#" if c else "." for c in columns).strip(".")
        assert "..." in runs


def test_unsupported_panel_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no layout for a 96x16 panel; supported sizes are 128x64, 128x32"):
        render(ApprovedScreen(amount_cents=1), 96, 16)


# --- guest words: what a guest reads is plain and whole ---------------------------------------

# Words of the journal, the outbox and the wallet API that mean nothing to a guest
INTERNAL = re.compile(
    r"unconfirmed|journal|no sales|outbox|pending|reconcil|operator|storage|server|internal|error"
    r"|idempoten|\bHTTP\b|\b[1-5]\d\d\b",
    re.IGNORECASE,
)


def guest_screens() -> list[Screen]:
    """Every sample screen, every decline (with and without a balance) and what the controller shows."""
    declines: list[Screen] = [
        DeclinedScreen(reason, balance) for reason in DeclineReason for balance in (None, 710)
    ]
    offline: list[Screen] = [
        OfflineScreen(unconfirmed=n, accepting=accepting, action=action)
        for n in (0, 404)
        for accepting in (True, False)
        for action in (TAP_ACTION, SELECT_ACTION)
    ]
    return [
        *SAMPLES.values(),
        *declines,
        *offline,
        OutOfServiceScreen(ASK_STAFF),
        ReaderOfflineScreen("reconnecting…"),
    ]


def words(screen: Screen, locale: str) -> list[str]:
    comp = compose(screen, locale, "EUR")
    text = screen.text(locale, "EUR")
    return [comp.title, comp.hero, *comp.paragraphs, *(c for row in comp.rows for c in row), comp.footer,
            text.title, *text.lines]  # fmt: skip


@pytest.mark.parametrize("locale", ["de", "en"])
def test_guest_screens_use_no_internal_words(locale: str) -> None:
    for screen in guest_screens():
        found = [w for w in words(screen, locale) if INTERNAL.search(w)]
        assert not found, f"{screen}: {found}"


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_every_decline_and_idle_line_fits_the_panel_whole(width: int, height: int) -> None:
    # shortened with an ellipsis it would hide why: every reason fits, also with a balance beside it
    layout = LAYOUTS[(width, height)]
    screens: list[Screen] = [
        DeclinedScreen(reason, balance) for reason in DeclineReason for balance in (None, 710)
    ]
    screens += [
        OfflineScreen(accepting=accepting, action=action)
        for accepting in (True, False)
        for action in (TAP_ACTION, SELECT_ACTION)
    ]
    screens += [IdleScreen(title=SELECT_ACTION), KioskLockedScreen(), OutOfServiceScreen(ASK_STAFF)]
    screens += [ApprovedScreen(amount_cents=290, balance_cents=123456, confirmed=False)]
    screens += [KioskScreen(buttons=(("twenty", 2000),)), KioskScreen(amount_cents=5000)]
    for screen in screens:
        comp = compose(screen, "de", "EUR")
        assert text_width(comp.title, layout.title_font) <= layout.width - 4, comp.title
        lines = _body_lines(comp, layout, _paging(comp, layout)[0], 0)
        assert not any(ELLIPSIS in left for left, _ in lines), (screen, lines)
        shown = " ".join(" ".join(left for left, _ in lines).split())
        assert all(" ".join(p.split()) in shown for p in comp.paragraphs), (screen, lines)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_a_paged_board_keeps_its_title_whole_rather_than_the_page_number(width: int, height: int) -> None:
    layout = LAYOUTS[(width, height)]
    many = IdleScreen(prices=tuple(PriceLine(f"Product {i}", 100 + i) for i in range(9)), title=SELECT_ACTION)
    few = IdleScreen(prices=(PriceLine("Product 0", 100),), title=SELECT_ACTION)
    assert page_count(many, width, height) > 1 and page_count(few, width, height) == 1
    # the bar where the title is drawn: the same pixels as on a board too short to need a page number
    title = (0, 0, 3 + text_width(SELECT_ACTION, layout.title_font), layout.bar_height)
    assert (
        render(many, width, height).crop(title).tobytes() == render(few, width, height).crop(title).tobytes()
    )


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("kinds", [1, 2, 3, 4, 7])
def test_every_cart_item_is_shown_and_every_page_names_the_cancel_button(
    width: int, height: int, kinds: int
) -> None:
    """A phantom press must be visible: paging through the cart shows every line, and every page ends
    with how to pay and the one button that empties the cart, unshortened."""
    cart = CartScreen(
        items=tuple(CartLine(f"Drink {i}", 1 + i % 2, 100 * (i + 1)) for i in range(kinds)),
        cancel_button="cancel",
    )
    layout = LAYOUTS[(width, height)]
    comp = compose(cart, "de", "EUR")
    per_page, pages = _paging(comp, layout)
    assert pages == page_count(cart, width, height)
    shown: list[str] = []
    for page in range(pages):
        lines = _body_lines(comp, layout, per_page, page)
        assert lines[-1] == ("Tap to pay · [cancel]", "")
        assert text_width(lines[-1][0], layout.body_font) <= width - 2, "the prompt would be shortened"
        shown += [left for left, _ in lines[:-1]]
    assert shown == [f"{1 + i % 2}x Drink {i}" for i in range(kinds)]
