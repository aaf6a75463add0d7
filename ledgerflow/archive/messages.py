"""Inputs and outputs of the archive's workflow and activities, and their names.

Plain dataclasses of the standard library: the workflow module imports them
through the sandbox, never the archiver itself (SQLAlchemy, boto3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PLAN_SEGMENT = "plan_archive_segment"
UPLOAD_SEGMENT = "upload_archive_segment"
RECORD_SEGMENT = "record_archive_segment"
PRUNE_ARCHIVE = "prune_archive"


@dataclass(frozen=True)
class ArchiveRequest:
    """Archive one region's events older than the cut-off, segment by segment.

    A run archives at most `max_segments` and then continues as new, so its
    history stays short however large the backlog. `retry_window_s` bounds how
    long one step keeps retrying an unreachable S3 before the run fails
    (visibly); the next run resumes the segment in flight.
    """

    region: str
    prune: bool = False
    max_segments: int = 50
    retry_window_s: int = 600
    #: Carried over continue-as-new: what earlier runs of this chain archived.
    segments_before: int = 0
    events_before: int = 0


@dataclass(frozen=True)
class ArchiveResult:
    region: str
    segments: int
    events: int
    archived_through_seq: int
    last_digest: str | None
    pruned_events: int = 0
    pruned_through_segment: int | None = None


@dataclass(frozen=True)
class PlanSegmentInput:
    region: str


@dataclass(frozen=True)
class SegmentPlan:
    """A segment whose range is fixed before anything is uploaded.

    The range is (from_tx_id, from_position) exclusive to (to_tx_id,
    to_position) inclusive in the global order; it lies below the transaction
    horizon, so no event can ever join it.
    """

    region: str
    segment_no: int
    first_seq: int
    last_seq: int
    event_count: int
    from_tx_id: int
    from_position: int
    to_tx_id: int
    to_position: int
    first_recorded_at: datetime
    cutoff: datetime
    segment_key: str
    manifest_key: str
    digest_key: str
    retain_until: datetime | None


@dataclass(frozen=True)
class PlanSegmentOutput:
    plan: SegmentPlan | None


@dataclass(frozen=True)
class SegmentUpload:
    """What was uploaded and read back: the checksums and the chain link."""

    segment_sha256: str
    segment_bytes: int
    manifest_sha256: str
    prev_digest: str
    digest: str
    manifest: dict[str, Any] = field(default_factory=dict)
    #: The object versions written and read back (None where the store keeps
    #: no versions); the archive reads these, never merely the newest.
    segment_version_id: str | None = None
    manifest_version_id: str | None = None
    digest_version_id: str | None = None


@dataclass(frozen=True)
class RecordSegmentInput:
    plan: SegmentPlan
    upload: SegmentUpload


@dataclass(frozen=True)
class RecordSegmentOutput:
    segment_no: int
    last_seq: int
    events: int
    digest: str


@dataclass(frozen=True)
class PruneInput:
    region: str


@dataclass(frozen=True)
class PruneOutput:
    verified_segments: int
    pruned_through_segment: int | None
    events_pruned: int
