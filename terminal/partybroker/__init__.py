"""Partybroker: the stock-exchange drink prices of a party, its API client and the price board."""
