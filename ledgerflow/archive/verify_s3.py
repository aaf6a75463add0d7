"""`archive verify --s3-only`: prove a region's archive from S3 alone.

Trusts nothing in PostgreSQL (an auditor with read access to the bucket and
nothing else can run it; so can anyone after the region's database is lost):

1. the digest links `<region>/digests/000000000001.json, ...` are numbered
   without a gap, each names the previous digest, and each digest is
   SHA-256(previous digest || manifest SHA-256) from the genesis;
2. each link's manifest exists under the key it names and has the SHA-256 the
   link says; each manifest's segment exists under the key *it* names (a
   manifest naming a missing object is a finding: issue 13, finding 10) and
   has the SHA-256 the manifest says;
3. the manifests join up (archive sequence and global-order ranges), and
   each describes its segment exactly (recomputed from the events);
4. every currency nets to zero per segment, and every account's hash chain
   holds across segments;
5. every key holds one version only: a version written over an archived
   object (object lock keeps the old version, not the key) is reported, and
   the first version is the one read.

Events whose earlier versions are not archived yet (still hot) cannot be
chained from S3 alone; they are counted, not reported.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from ledgerflow.archive.objectstore import ObjectMissing, ObjectStore
from ledgerflow.archive.segments import (
    GENESIS_DIGEST,
    SegmentKeys,
    build_manifest,
    chained_digest,
    decode_checkable,
    json_object,
    manifest_problem,
    sha256_hex,
)
from ledgerflow.archive.verify import AccountChains, ArchiveVerifyReport
from ledgerflow.audit.verify import Finding


async def _first_version(
    objects: ObjectStore, key: str, report: ArchiveVerifyReport, where: str
) -> bytes:
    """The key's first version (the one the archive wrote); a later one is a finding."""
    written = await objects.versions(key)
    if len(written) > 1:
        report.findings.append(
            Finding(report.region, "rewritten", None, None,
                    f"{where}: {key} was written again ({len(written)} versions)")
        )  # fmt: skip
    if written and await objects.head(key) is None:
        report.findings.append(
            Finding(report.region, "object", None, None,
                    f"{where}: {key} was deleted (its versions are kept, a reader of the "
                    "key gets nothing)")
        )  # fmt: skip
    return await objects.get(key, written[0] if written else None)


async def verify_archive_from_s3(objects: ObjectStore, region: str) -> ArchiveVerifyReport:
    report = ArchiveVerifyReport(region)
    started = time.perf_counter()

    def finding(check: str, problem: str) -> None:
        report.findings.append(Finding(region, check, None, None, problem))

    chains = AccountChains(report, {})
    prev_digest, prev_last_seq, prev_through = GENESIS_DIGEST, 0, [0, 0]
    links = sorted(await objects.list_keys(f"{region}/digests/"))
    for number, link_key in enumerate(links, start=1):
        where = f"digest link {link_key}"
        if link_key != f"{region}/digests/{number:012d}.json":
            finding("continuity", f"{where}: expected link {number} here")
        try:
            link = json_object(await _first_version(objects, link_key, report, where))
            if link is None:
                raise ValueError("not a JSON object")
            manifest_key = str(link["manifest_key"])
            manifest_body = await _first_version(objects, manifest_key, report, where)
        except ObjectMissing as exc:
            finding("object", f"{where}: {exc}")
            continue
        except (ValueError, KeyError) as exc:
            finding("digest-chain", f"{where}: unreadable ({exc})")
            continue
        report.segments_checked += 1
        if link.get("prev_digest") != prev_digest or link.get("digest") != chained_digest(
            prev_digest, str(link.get("manifest_sha256"))
        ):
            finding("digest-chain", f"{where}: does not chain from link {number - 1}")
        prev_digest = str(link.get("digest"))
        if sha256_hex(manifest_body) != link.get("manifest_sha256"):
            finding("checksum", f"{where}: {manifest_key} does not have the SHA-256 it names")
        read = json_object(manifest_body)
        problem = "not a JSON object" if read is None else manifest_problem(read)
        if read is None or problem is not None:
            finding("manifest", f"{manifest_key}: {problem}")
            continue
        manifest: dict[str, Any] = read
        if (manifest.get("segment_no"), manifest.get("first_seq")) != (number, prev_last_seq + 1):
            finding("continuity", f"{manifest_key}: not segment {number} from seq "
                                  f"{prev_last_seq + 1}")  # fmt: skip
        if (manifest.get("global_order") or {}).get("after") != prev_through:
            finding("continuity", f"{manifest_key}: does not start where segment "
                                  f"{number - 1} ended")  # fmt: skip
        prev_last_seq = int(manifest.get("last_seq", prev_last_seq))
        prev_through = (manifest.get("global_order") or {}).get("through", prev_through)
        segment_key = str(manifest.get("segment_key"))
        try:
            body = await _first_version(objects, segment_key, report, manifest_key)
        except ObjectMissing as exc:
            finding("object", f"{manifest_key} names {segment_key}: {exc}")
            continue
        report.bytes_downloaded += len(body) + len(manifest_body)
        if sha256_hex(body) != manifest.get("segment_sha256"):
            finding("checksum", f"{segment_key} does not have the SHA-256 its manifest names")
        try:
            events = decode_checkable(body)
        except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
            finding("segment", f"{segment_key}: cannot be decoded ({exc})")
            continue
        report.events_checked += len(events)
        if events:
            rebuilt = build_manifest(
                region=region,
                segment_no=number,
                first_seq=int(manifest.get("first_seq", 0)),
                after=_after(manifest),
                cutoff=datetime.fromisoformat(str(manifest.get("cutoff"))),
                keys=SegmentKeys(segment_key, manifest_key, link_key),
                segment_sha256=sha256_hex(body),
                segment_bytes=len(body),
                events=events,
            )
            if rebuilt != manifest:
                finding("manifest", f"{manifest_key} does not describe {segment_key}")
        chains.feed_segment(events, manifest, segment_key)
    report.seconds = time.perf_counter() - started
    return report


def _after(manifest: dict[str, Any]) -> tuple[int, int]:
    after = (manifest.get("global_order") or {}).get("after") or [0, 0]
    return int(after[0]), int(after[1])
