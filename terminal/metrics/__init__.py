"""The optional Prometheus endpoint for a fleet (issue 16): [metrics], what it counts, how it is served."""
