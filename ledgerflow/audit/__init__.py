"""The audit side: point-in-time balances, audit trails and `verify`."""
