"""The embedded local stack (Temporal, PostgreSQL, S3) behind `ledgerflow dev`.

The Embedded* classes are also building blocks for tests that need a throwaway
server in a temp dir on a free port.
"""

from infra.postgres import EmbeddedPostgres
from infra.process import PortInUseError, StackError, find_free_port
from infra.s3 import EmbeddedS3
from infra.stack import DevStack, ServiceStatus
from infra.temporal import EmbeddedTemporal, temporal_binary

__all__ = [
    "DevStack",
    "EmbeddedPostgres",
    "EmbeddedS3",
    "EmbeddedTemporal",
    "PortInUseError",
    "ServiceStatus",
    "StackError",
    "find_free_port",
    "temporal_binary",
]
