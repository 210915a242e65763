"""The layout shows the architecture: the package root keeps only the core, and every folder says its job."""

from __future__ import annotations

import ast
from pathlib import Path

import terminal

ROOT = Path(terminal.__file__).resolve().parent

# The terminal's own core, and the domain types every part shares (model, money, uid).
CORE = {
    "__init__.py",
    "__main__.py",
    "cli.py",
    "config.py",
    "config_section.py",
    "controller.py",  # until the controller is a package of its own
    "device_loop.py",
    "effects.py",
    "events.py",
    "journal.py",
    "model.py",
    "money.py",
    "screens.py",  # until the screens are a package of their own
    "uid.py",
}


def test_the_package_root_keeps_only_the_core() -> None:
    allowed = set(CORE)
    if not (ROOT / "controller").is_dir():
        allowed.add("offline_policy.py")  # the controller's decision rule sits next to the controller module
    extra = sorted(p.name for p in ROOT.glob("*.py") if p.name not in allowed)
    assert extra == [], f"{extra} belong in a folder (wallet/, service/, ops/, net/ …), not the root"


def test_every_folder_is_a_package_whose_docstring_says_its_job() -> None:
    folders = [d for d in ROOT.rglob("*") if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))]
    assert len(folders) >= 5
    for folder in folders:
        init = folder / "__init__.py"
        assert init.is_file(), f"{folder.relative_to(ROOT.parent)} has modules but no __init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc.split("\n")[0].strip(), f"{init.relative_to(ROOT.parent)}: no docstring saying its job"
