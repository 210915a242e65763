"""The benchmark (`make bench`, `python -m terminal.bench`): test-lab code the firmware never imports."""
