"""`make mutate`'s table of money-path modules stays true to the tree: each module and test file it names
exists, and every money-path package is in it."""

from __future__ import annotations

from tests.mutation.run import REPO
from tests.mutation.targets import TARGETS


def test_every_module_and_test_file_of_make_mutate_exists() -> None:
    missing = [
        path for module, tests in TARGETS.items() for path in (module, *tests) if not (REPO / path).is_file()
    ]
    assert missing == [], f"tests/mutation/targets.py names files that are gone: {missing}"


def test_every_money_path_package_named_in_issue_18_is_mutated() -> None:
    folders = {module.rsplit("/", 1)[0] for module in TARGETS}
    assert {
        "terminal/controller",
        "terminal/outbox",
        "terminal",
        "terminal/wallet",
        "terminal/partybroker",
        "terminal/ready2order",
        "terminal/brink",
    } <= folders
