"""Failpoints: named places where a test may make this process die on purpose.

Off unless `LEDGERFLOW_FAILPOINTS` is set, which only the simulator and the
fault suite do, for worker processes of their own stacks: a comma-separated
list of `<name>=<transfer id prefix>`. When a process passes a failpoint for
a matching transfer, it SIGKILLs itself there, exactly between two steps
that are otherwise impossible to separate from outside (for example after a
posting committed and before its projection). The harness restarts the
worker without the variable.

Places: `after-append` (activities/ledger.py: a posting is committed, its
caller not yet answered).
"""

from __future__ import annotations

import os
import signal

_ARMED: list[tuple[str, str]] = [
    (name.strip(), prefix.strip())
    for item in (os.environ.get("LEDGERFLOW_FAILPOINTS") or "").split(",")
    if "=" in item
    for name, prefix in [item.split("=", 1)]
]


def reached(name: str, transfer_id: str) -> None:
    """Die here if a failpoint of this name is armed for this transfer."""
    for armed, prefix in _ARMED:
        if armed == name and transfer_id.startswith(prefix):
            os.kill(os.getpid(), signal.SIGKILL)
