"""The ready2order API emulator on loopback: the grant flow and the account endpoints taptill uses."""
