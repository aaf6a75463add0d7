"""The ledger's domain: money, records, events and errors.

Standard library only, so that workflow code can import it through the
Temporal sandbox without pulling in I/O libraries.
"""
