"""The money-path modules `make mutate` mutates, each with the test files that exercise it in-process.

mutmut runs, for each mutant, only those of a module's test files that called the mutated function, so
a file here costs its run time once (mutmut's stats) and then only its tests that reach the mutant. Tests
that drive ``taptill run`` as a subprocess are left out on purpose: the subprocess imports the unmutated
tree, so they could never kill a mutant. Hypothesis state machines (test_fuzz, test_outbox_stateful) are
left out for time: about a minute each for every mutant they reach. terminal/outbox/view.py (the backlog
`taptill queue` and `status` print, no money moved) is left out: only subprocess tests reach it; so is
terminal/outbox/destination.py, the destinations' interface (Protocol classes: no statement to mutate). `make
mutate` runs the smallest module first.
"""

from __future__ import annotations

CONTROLLER_TESTS = (
    "tests/test_controller.py",
    "tests/test_controller_flicker.py",
    "tests/test_controller_modes.py",
    "tests/test_controller_outcomes.py",
    "tests/test_controller_stock.py",
    "tests/test_controller_table.py",
)
OUTBOX_TESTS = ("tests/test_outbox_core.py",)
SALE_TESTS = ("tests/test_sale_sender.py",)

# module (a path from the repository's root) -> the test files that kill its mutants
TARGETS: dict[str, tuple[str, ...]] = {
    "terminal/controller/tap.py": ("tests/test_controller_modes.py", "tests/test_controller.py"),
    "terminal/outbox/landing.py": OUTBOX_TESTS,
    "terminal/controller/offline_policy.py": ("tests/test_controller.py",),
    "terminal/wallet/balance.py": ("tests/test_controller.py", *SALE_TESTS),
    "terminal/outbox/rate_limit.py": OUTBOX_TESTS,
    "terminal/ready2order/invoice_outbox.py": ("tests/test_invoice_outbox.py", "tests/test_r2o_mirror.py"),
    "terminal/outbox/schedule.py": OUTBOX_TESTS,
    "terminal/wallet/outcomes.py": ("tests/test_wallet_client.py",),
    "terminal/controller/retap_guard.py": CONTROLLER_TESTS,
    "terminal/partybroker/report_outbox.py": ("tests/test_report_outbox.py", *OUTBOX_TESTS),
    "terminal/partybroker/destination.py": (
        "tests/test_partybroker_destination.py",
        "tests/test_partybroker_client.py",
        *OUTBOX_TESTS,
    ),
    "terminal/wallet/sale_store.py": ("tests/test_sale_store.py", *SALE_TESTS),
    "terminal/wallet/parse.py": ("tests/test_wallet_parse.py", "tests/test_wallet_client.py"),
    "terminal/outbox/outcome.py": OUTBOX_TESTS,
    "terminal/outbox/table.py": ("tests/test_outbox_table.py", *OUTBOX_TESTS, *SALE_TESTS),
    "terminal/wallet/sale_sender.py": ("tests/test_sale_sender_steps.py", *SALE_TESTS),
    "terminal/wallet/destination.py": ("tests/test_wallet_destination.py", *SALE_TESTS),
    "terminal/ready2order/destination.py": (
        "tests/test_r2o_destination.py",
        "tests/test_r2o_mirror.py",
        "tests/test_settle.py",
    ),
    "terminal/brink/destination.py": ("tests/test_brink_destination.py", "tests/test_brink_payments.py"),
    "terminal/outbox/loop.py": ("tests/test_outbox_loop.py", *OUTBOX_TESTS),
    "terminal/brink/payment_outbox.py": (
        "tests/test_brink_payment_records.py",
        "tests/test_brink_payments.py",
    ),
    "terminal/wallet/client.py": (
        "tests/test_wallet_client_answers.py",
        "tests/test_wallet_client.py",
        "tests/test_transport.py",
    ),
    "terminal/controller/core.py": CONTROLLER_TESTS,
    "terminal/journal.py": (
        "tests/test_journal.py",
        "tests/test_journal_table.py",
        "tests/test_journal_open.py",
        "tests/test_journal_operators.py",
        "tests/test_journal_records.py",
        "tests/test_journal_damaged_in_use.py",
        *SALE_TESTS,
    ),
}
