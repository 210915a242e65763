"""The terminal as a process under systemd: wiring and run, readiness, logs, locks, clocks, health."""
