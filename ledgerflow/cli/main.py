"""`ledgerflow` command line: the dev stack, workers, accounts, transfers, reads.

Every command prints a readable table, or JSON with `--json`. An error prints
one line on stderr and exits non-zero: 2 for a malformed request, 3 for a
rejected transfer, 4 when a server cannot be reached, 5 when a confirmation
did not come in time, 6 when `verify`, `archive verify` or `reconcile` finds
the ledger, its archive or the regions not sound, 1 otherwise.
"""

# Each command group is a module of its own (`dev`, `ledger`, `read_side`,
# `archive`, `reconcile`, `bench`) that registers its commands, each with its
# handler; this module assembles the parser and turns errors into exit codes.

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ledgerflow.cli import api, archive, bench, dev, holds, ledger, read_side, reconcile, stream
from ledgerflow.cli.output import Handler, Unreachable
from ledgerflow.config import Settings
from ledgerflow.domain.errors import LedgerError, StoreUnavailable

EXIT_UNREACHABLE = 4


def build_parser() -> argparse.ArgumentParser:
    # `--json` is accepted before or after the command. The subcommands' copy
    # defaults to SUPPRESS so it cannot overwrite a `--json` given before them.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser = argparse.ArgumentParser(
        prog="ledgerflow", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (dev, ledger, holds, read_side, archive, reconcile, stream, api, bench):
        group.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        handler: Handler = args.handler
        return handler(args, settings)
    except StoreUnavailable as exc:  # (a command fails fast; run it again)
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except LedgerError as exc:
        print(f"error: {exc.type}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (ValueError, *_dev_stack_errors()) as exc:  # type: ignore[misc]  # a bad setting, or the dev stack
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ConnectionError, TimeoutError) as exc:
        # Temporal's connection errors are handled above; this is the database.
        print(f"error: cannot reach PostgreSQL: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: still one line (LEDGERFLOW_DEBUG=1 for the trace)
        if os.environ.get("LEDGERFLOW_DEBUG", "").lower() in ("1", "true", "yes", "on"):
            raise
        unreachable = _unreachable_database(exc)
        if unreachable:
            print(f"error: {unreachable}", file=sys.stderr)
            return EXIT_UNREACHABLE
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
        print(f"error: {type(exc).__name__}: {detail}", file=sys.stderr)
        return 1


def _dev_stack_errors() -> tuple[type[Exception], ...]:
    """The dev stack's error type, if a command loaded the dev stack (it can
    have raised one only then); the CLI does not load it to start."""
    process = sys.modules.get("ledgerflow.infra.process")
    return (process.StackError,) if process is not None else ()


def _unreachable_database(exc: BaseException) -> str | None:
    """SQLAlchemy wraps a refused connection; name PostgreSQL instead."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionError | OSError) and not isinstance(cause, TimeoutError):
            return f"cannot reach PostgreSQL: {cause}"
        cause = cause.__cause__ or cause.__context__
    return None


def run() -> None:
    """Console entry point: run `main` and leave without interpreter teardown.

    The Temporal client's Rust runtime threads can outlive the event loop, and
    CPython's finalization then aborts the process with "PyGILState_Release:
    thread state must be current" (temporalio/sdk-python#300, still open):
    a command that succeeded would exit with SIGABRT. Everything this process
    owes is flushed first, so skipping the teardown loses nothing.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
