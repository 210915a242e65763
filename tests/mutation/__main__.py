"""`python -m tests.mutation [MODULE ...]`: mutation scores of the money-path modules (all of them, smallest
first, or the ones named), one line each, and the surviving mutants; exit 1 if any module is under 90 %."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from tests.mutation.run import REPO, MutationRunFailed, Score, has_functions, mutate, show
from tests.mutation.targets import TARGETS

ERR = sys.stderr
TARGET_RATIO = 0.9  # issue 18: at least 90 % of each money-path module's mutants killed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make mutate", description=__doc__)
    parser.add_argument("modules", nargs="*", metavar="MODULE", help="e.g. terminal/outbox/schedule.py")
    parser.add_argument("--workers", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--show", action="store_true", help="print each survivor's diff")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        print(f"not a money-path module: {', '.join(unknown)}; add it to tests/mutation/targets.py", file=ERR)
        return 2
    if importlib.util.find_spec("mutmut") is None:
        print("mutmut is not installed: run `make mutate` (it installs taptill's [mutate] extra)", file=ERR)
        return 2
    modules = args.modules or sorted(TARGETS, key=lambda m: len((REPO / m).read_bytes()))
    scores: list[Score] = []
    failed: list[str] = []
    for module in modules:
        if not has_functions(module):
            print(f"{module}: no function, nothing for mutmut to mutate (its types are checked by mypy)")
            continue
        try:
            score = mutate(module, TARGETS[module], args.workers)
        except MutationRunFailed as exc:
            print(exc, file=ERR, flush=True)
            failed.append(module)
            continue
        scores.append(score)
        print(score.line(), flush=True)
        for name in score.survivors:
            print(f"    survived: {name}")
            if args.show:
                print(show(module, name))
    if len(scores) > 1:
        print("\nmodule                                   mutants  killed  survived  score")
        for s in scores:
            print(f"{s.module:40} {s.total:7} {s.detected:7} {len(s.survivors):9} {100 * s.ratio:5.1f} %")
    under = [s.module for s in scores if s.ratio < TARGET_RATIO]
    if under:
        print(f"under {TARGET_RATIO:.0%} killed: {', '.join(under)}", file=ERR)
    if failed:
        print(f"not scored (mutmut failed): {', '.join(failed)}", file=ERR)
    return 1 if under or failed else 0


if __name__ == "__main__":
    sys.exit(main())
