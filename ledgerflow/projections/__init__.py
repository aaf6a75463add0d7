"""CQRS read models built from the event store: balances and statements."""
