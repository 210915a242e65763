"""Runs mutmut on one money-path module in a copy of the tree (build/mutation/<module>/) and reads its score.

Each module gets its own copy so that mutmut's configuration (which file to mutate, which tests to run) is
the module's alone; the copy is taken afresh and mutmut's results are dropped on every run, so a score
always reflects the code and tests as they are now. mypy (the project's ``mypy --strict``) rejects a
mutant before any test runs: such a mutant could never be committed, so it counts as killed.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import tomlkit

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / "build" / "mutation"

# mutmut's names for a mutant's fate (`mutmut results`): these three mean the mutant was caught.
DETECTED = ("killed", "caught by type check", "timeout")


class MutationRunFailed(RuntimeError):
    """mutmut could not run a module (its clean test run failed, or it found no test reaching the module)."""


@dataclass(frozen=True)
class Score:
    """What became of one module's mutants: ``statuses`` counts mutmut's statuses, ``survivors`` names
    the mutants no test (nor mypy) caught, ``seconds`` is the wall time of the whole run."""

    module: str
    statuses: Counter[str]
    survivors: tuple[str, ...]
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def detected(self) -> int:
        return sum(self.statuses[status] for status in DETECTED)

    @property
    def ratio(self) -> float:
        """Caught mutants over all mutants, 0.0 to 1.0 (1.0 for a module with no mutant)."""
        return self.detected / self.total if self.total else 1.0

    def line(self) -> str:
        return (
            f"{self.module}: {self.detected}/{self.total} killed ({self.statuses['caught by type check']} by"
            f" mypy), {len(self.survivors)} survived, {100 * self.ratio:.1f} % in {self.seconds:.0f} s"
        )


def has_functions(module: str) -> bool:
    """Whether ``module`` has a function or method: mutmut 3 mutates only their bodies, so a module of
    dataclasses and constants alone has no mutant (and mutmut stops, finding no test that reaches one)."""
    tree = ast.parse((REPO / module).read_text())
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) for node in ast.walk(tree))


def workdir_of(module: str) -> Path:
    return WORK / module.removesuffix(".py").replace("/", ".")


def mutate(module: str, tests: tuple[str, ...], workers: int) -> Score:
    """Mutate ``module`` (a path from the repository's root), run ``tests`` against each mutant in
    ``workers`` processes, and read the score. Raises MutationRunFailed with the log's path."""
    work = workdir_of(module)
    _copy_tree(work)
    _configure(work, module, tests)
    log = work / "mutmut.log"
    start = time.monotonic()
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(workers)],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise MutationRunFailed(f"mutmut failed on {module} (exit {done.returncode}): see {log}")
    statuses = _results(work)
    survivors = tuple(sorted(name for name, status in statuses.items() if status not in DETECTED))
    return Score(module, Counter(statuses.values()), survivors, seconds)


def show(module: str, mutant: str) -> str:
    """The diff of one mutant of ``module``'s last run, as `mutmut show` prints it."""
    return _mutmut(workdir_of(module), "show", mutant)


def _copy_tree(work: Path) -> None:
    """The repository's files as git sees them (tracked, and new ones not ignored) into ``work``, with
    their times (mutmut compares them); mutmut's results of the last run go."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    if work.exists():
        for entry in work.iterdir():
            if entry.name != ".mypy_cache":  # kept: mypy's cache makes its next check of the tree quick
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if not source.is_file():  # deleted in the working tree but still tracked
            continue
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _configure(work: Path, module: str, tests: tuple[str, ...]) -> None:
    """The copy's pyproject.toml gets the module and its tests added to the repository's [tool.mutmut]."""
    pyproject = work / "pyproject.toml"
    document = tomlkit.parse(pyproject.read_text())
    mutmut = document["tool"]["mutmut"]
    mutmut["only_mutate"] = [module]
    mutmut["pytest_add_cli_args_test_selection"] = list(tests)
    # mypy runs in mutants/; its cache stays one level up, across runs. "mypy" must be an argument of
    # its own: mutmut reads mypy's JSON only when it sees that word in the command.
    mutmut["type_check_command"] = [
        sys.executable,
        "-m",
        "mypy",
        "--output",
        "json",
        "--no-warn-unused-ignores",  # mutmut's generated code carries ignores that strict mode flags
        "--cache-dir",
        "../.mypy_cache",
        module,
    ]
    pyproject.write_text(tomlkit.dumps(document))


def _results(work: Path) -> dict[str, str]:
    """Each mutant's status from `mutmut results --all true` (lines ``    name: status``)."""
    statuses: dict[str, str] = {}
    for line in _mutmut(work, "results", "--all", "true").splitlines():
        name, sep, status = line.strip().partition(": ")
        if sep:
            statuses[name] = status
    return statuses


def _mutmut(work: Path, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args], cwd=work, capture_output=True, text=True, check=True
    ).stdout
