"""The screen model: what the guest sees, as small typed values that every display renders.

``common.py`` holds the screens every way to sell shows; ``select.py``, ``topup.py`` and ``table.py``
those only that mode shows; ``setup.py`` those a person setting the terminal up sees. Every screen type is
re-exported here, so a display (and the golden-image test) sees them all.
"""

from terminal.screens.common import (
    ASK_STAFF,
    DECLINE_TEXT,
    TAP_ACTION,
    ApprovedScreen,
    BalanceScreen,
    CreditScreen,
    DeclinedScreen,
    IdleScreen,
    NotRegisteredScreen,
    OfflineScreen,
    OutOfServiceScreen,
    PriceLine,
    ProcessingScreen,
    ReaderOfflineScreen,
    Screen,
    ScreenText,
    pending_text,
    price_notes,
)
from terminal.screens.select import SELECT_ACTION, CartLine, CartScreen
from terminal.screens.setup import ApproveAccessScreen
from terminal.screens.table import (
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
from terminal.screens.topup import KioskLockedScreen, KioskScreen, PinScreen

__all__ = [
    "ASK_STAFF",
    "DECLINE_TEXT",
    "SELECT_ACTION",
    "TAP_ACTION",
    "ApproveAccessScreen",
    "ApprovedScreen",
    "BalanceScreen",
    "CartLine",
    "CartScreen",
    "CreditScreen",
    "DeclinedScreen",
    "IdleScreen",
    "KioskLockedScreen",
    "KioskScreen",
    "NotRegisteredScreen",
    "OfflineScreen",
    "OutOfServiceScreen",
    "PinScreen",
    "PriceLine",
    "ProcessingScreen",
    "ReaderOfflineScreen",
    "Screen",
    "ScreenText",
    "TableAlreadyPaidScreen",
    "TableBillScreen",
    "TableChangedScreen",
    "TableChooseScreen",
    "TableConfirmingScreen",
    "TableLinesScreen",
    "TableLoadingScreen",
    "TablePaidScreen",
    "TableProblemScreen",
    "pending_text",
    "price_notes",
]
