"""The event store (write model) and its PostgreSQL implementation."""
