"""`make mutate`: mutation testing of the money path with mutmut, one module at a time with the tests that
exercise it (targets.py), run in a copy of the tree under build/mutation/ (run.py)."""
