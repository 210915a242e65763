"""What taptill-provision tells a person: lines as they happen, or one JSON object at the end (--json)."""

from __future__ import annotations

import json
import sys

from provisioning.exits import EXIT_CHANGED, EXIT_UNCHANGED
from terminal.model import printable

DIFF_KEYS = ("diff", "config_diff")  # the JSON report's multi-line values


class Report:
    """Human lines as they happen, or one JSON object at the end (--json). Everything it prints goes
    through ``terminal.model.printable``: the lines quote servers (product names, drink titles, a
    redirect's target), and a server's escape sequence must not reach the terminal of whoever provisions."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.data: dict[str, object] = {}

    def line(self, key: str, value: object, text: str) -> None:
        self.data[key] = value
        if not self.as_json:
            print(f"{key + ':':<12} {printable(text)}", flush=True)

    def prompt(self, key: str, value: object, text: str) -> None:
        """A line a person must act on now (open a link): with --json it goes to standard error at once,
        so standard output stays one JSON object."""
        self.line(key, value, text)
        if self.as_json:
            print(f"{key + ':':<12} {printable(text)}", file=sys.stderr, flush=True)

    def finish(self, code: int, message: str) -> int:
        self.data["exit_code"] = code
        self.data["message"] = message
        if self.as_json:
            print(json.dumps(_printable_values(self.data), ensure_ascii=False, indent=2))
        else:
            out = sys.stderr if code not in (EXIT_CHANGED, EXIT_UNCHANGED) else sys.stdout
            print(printable(message), file=out)
        return code


def printable_lines(text: str) -> str:
    """``text`` (a diff, a config) with each line made printable and its line breaks kept."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _printable_values(value: object, key: str = "") -> object:
    """``value`` (the JSON report) with every string made one printable line (json.dumps escapes C0
    controls, but passes C1 controls and bidi overrides as they are); the diffs keep their lines."""
    if isinstance(value, str):
        return printable_lines(value) if key in DIFF_KEYS else printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): _printable_values(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable_values(v) for v in value]
    return value
