"""Local emulators of the servers taptill talks to, for `taptill demo` and for tests on loopback."""
