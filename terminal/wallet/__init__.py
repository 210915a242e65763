"""The pretix wallet server: client with typed outcomes, parse, catalog, health, sale delivery."""
