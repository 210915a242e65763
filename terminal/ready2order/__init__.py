"""ready2order: every sale the wallet booked mirrored as an invoice in the venue's fiscal cloud POS."""
