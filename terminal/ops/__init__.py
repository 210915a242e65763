"""Operators' tools, run by a person: doctor, recover (salvage), demo, the tap decision line."""
