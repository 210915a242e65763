"""Hardware adapters behind small interfaces (readers, display, GPIO), each with a software twin."""
