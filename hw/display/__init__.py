"""The guest display: drawing screens (render) and the panels, files and consoles that show them."""
