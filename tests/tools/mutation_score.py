"""The mutation score per module, from the results `mutmut run` left in
`mutants/` (`make mutate` runs both).

    .venv/bin/python -m tests.tools.mutation_score [--min 85]

A mutant counts as killed if a test failed, timed out or the type check
refused it; "no tests" (no unit test reaches the code) and survivors count
against the score. Exits non-zero if any module is under `--min`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 36, 37, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


def scores(root: Path) -> dict[str, Counter[str]]:
    by_module: dict[str, Counter[str]] = {}
    for meta in sorted(root.rglob("*.py.meta")):
        module = str(meta.relative_to(root)).removesuffix(".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        tally: Counter[str] = Counter()
        for code in codes.values():
            if code in KILLED:
                tally["killed"] += 1
            elif code in SURVIVED:
                tally["survived"] += 1
            elif code in NO_TESTS:
                tally["no tests"] += 1
            elif code is None:
                tally["not checked"] += 1
            else:
                tally["other"] += 1
        by_module[module] = tally
    return by_module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tools.mutation_score")
    parser.add_argument("--root", type=Path, default=Path("mutants"))
    parser.add_argument("--min", type=float, default=0.0, help="lowest score allowed, in %%")
    args = parser.parse_args(argv)
    results = scores(args.root)
    if not results:
        print("no mutation results: run `mutmut run` first", file=sys.stderr)
        return 2
    print(f"{'module':42} {'mutants':>7} {'killed':>6} {'survived':>8} {'no tests':>8} "
          f"{'score':>6}")  # fmt: skip
    worst = 100.0
    total: Counter[str] = Counter()
    for module, tally in results.items():
        total.update(tally)
        count = sum(tally.values())
        score = 100.0 * tally["killed"] / count if count else 100.0
        worst = min(worst, score)
        print(f"{module:42} {count:7} {tally['killed']:6} {tally['survived']:8} "
              f"{tally['no tests']:8} {score:5.1f}%")  # fmt: skip
    count = sum(total.values())
    print(f"{'all':42} {count:7} {total['killed']:6} {total['survived']:8} "
          f"{total['no tests']:8} {100.0 * total['killed'] / count:5.1f}%")  # fmt: skip
    if total["not checked"] or total["other"]:
        print(f"not checked: {total['not checked']}, other: {total['other']}", file=sys.stderr)
    return 0 if worst >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
