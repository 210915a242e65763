"""ready2order: the venue's cloud POS, where every wallet sale is mirrored as a fiscal record."""
