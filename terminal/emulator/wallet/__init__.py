"""The wallet API emulator (pretix wallet PointOfSale, doc and real flavours) on loopback."""
