"""yourbarmate: delivery events from the venue's ordering platform kept as a stock ledger per product."""
