"""The embedded local stack (Temporal, PostgreSQL, S3) behind `ledgerflow dev`.

The Embedded* classes (`infra.postgres`, `infra.temporal`, `infra.s3`) are
also building blocks for tests that need a throwaway server in a temp dir on
a free port; `infra.stack.DevStack` runs them together. Nothing is imported
here: importing `infra.process` for its `StackError` must not start loading
boto3, Alembic and the stack (the CLI would pay for it on every command).
"""
