"""docs/screens (the README's contact sheet and one PNG per screen) is exactly what the code draws now."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from hw.display.gallery import CONTACT_SHEET, gallery

pytestmark = pytest.mark.oled

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "screens"
REGENERATE = "run `python -m hw.display.gallery docs/screens` and review the images"


def test_docs_screens_are_what_the_code_draws_now() -> None:
    drawn = gallery()
    committed = {p.name for p in DOCS.glob("*.png")}
    assert committed == set(drawn), f"docs/screens has other files than the gallery writes: {REGENERATE}"
    stale = []
    for name, image in drawn.items():
        with Image.open(DOCS / name) as saved:
            if saved.size != image.size or saved.convert(image.mode).tobytes() != image.tobytes():
                stale.append(name)
    assert not stale, f"{', '.join(stale)} differ from what the code draws: {REGENERATE}"


def test_the_readme_shows_the_contact_sheet_and_only_images_that_exist() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    shown = re.findall(r"!\[[^\]]*\]\((docs/screens/[^)]+)\)", readme)
    assert f"docs/screens/{CONTACT_SHEET}" in shown
    assert all((REPO / path).is_file() for path in shown), shown
