"""How the CLI prints: a readable table, or JSON with `--json`."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ledgerflow.wire import plain

if TYPE_CHECKING:
    from ledgerflow.config import Settings

#: What a command runs: its parsed arguments and the settings, to an exit code.
Handler = Callable[[argparse.Namespace, "Settings"], int]
#: The subparsers object `register` functions add their commands to.
if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands = argparse._SubParsersAction


class Unreachable(Exception):
    """A server the command needs does not answer (exit code 4)."""


def run_async(
    command: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]],
) -> Handler:
    """A handler that runs an async command in its own event loop."""

    def handle(args: argparse.Namespace, settings: Settings) -> int:
        return asyncio.run(command(args, settings))

    return handle


def instant(text: str) -> datetime:
    """An ISO 8601 instant with a time zone, as an argument type."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 instant: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +00:00)")
    return value


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def emit(args: argparse.Namespace, value: Any, rows: list[dict[str, Any]], cols: list[str]) -> None:
    if args.json:
        print(json.dumps(plain(value), indent=2, sort_keys=True))
    else:
        print_table(rows, cols)
