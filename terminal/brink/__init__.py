"""PAR Brink's Ordering service (seed 003): a table's open party, its amount due, payments applied to it."""
