"""Card readers: PC/SC (pyscard), nfcpy and the sim socket, supervised and restarted on failure."""
