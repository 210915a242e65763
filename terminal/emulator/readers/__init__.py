"""Twins of the card readers' far side: a private pcscd with a virtual reader, and a Type 2 tag for nfcpy."""
