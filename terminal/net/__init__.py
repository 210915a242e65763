"""What every client of an external system shares on the wire: one deadline per HTTP call."""
