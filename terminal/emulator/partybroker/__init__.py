"""The Partybroker API emulator on loopback."""
