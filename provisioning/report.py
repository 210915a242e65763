"""What taptill-provision tells a person: lines as they happen, or one JSON object at the end (--json)."""

from __future__ import annotations

import json
import sys

from provisioning.exits import EXIT_CHANGED, EXIT_UNCHANGED


class Report:
    """Human lines as they happen, or one JSON object at the end (--json)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.data: dict[str, object] = {}

    def line(self, key: str, value: object, text: str) -> None:
        self.data[key] = value
        if not self.as_json:
            print(f"{key + ':':<12} {text}", flush=True)

    def prompt(self, key: str, value: object, text: str) -> None:
        """A line a person must act on now (open a link): with --json it goes to standard error at once,
        so standard output stays one JSON object."""
        self.line(key, value, text)
        if self.as_json:
            print(f"{key + ':':<12} {text}", file=sys.stderr, flush=True)

    def finish(self, code: int, message: str) -> int:
        self.data["exit_code"] = code
        self.data["message"] = message
        if self.as_json:
            print(json.dumps(self.data, ensure_ascii=False, indent=2))
        else:
            print(message, file=sys.stderr if code not in (EXIT_CHANGED, EXIT_UNCHANGED) else sys.stdout)
        return code
