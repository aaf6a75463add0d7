"""Activities: every piece of I/O a workflow needs, behind retry policies."""
