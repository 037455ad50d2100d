"""What `crr-worker status` and `failed` print: an aligned table people read, or JSON lines for scripts.

The table never truncates (ids and keys are what an operator copies) and puts the reason last, the one column
whose length varies most. Times are ISO 8601 UTC to the second, like `aws s3api` and `kubectl` print them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timezone

from crr_worker.entries import FAILED, StatusEntry

HEADER = ("SITE", "BUCKET", "KEY", "VERSION", "STATUS", "TARGET VERSION", "UPDATED", "REASON")
EMPTY = "-"
GAP = "  "
CONTROL_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})  # a key's line break stays on its row


def iso_utc(epoch_ms: int) -> str:
    """`epoch_ms` as 2026-12-01T08:00:03Z; "-" for 0 (a status that never recorded a time)."""
    if not epoch_ms:
        return EMPTY
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_row(status: StatusEntry) -> tuple[str, ...]:
    """One status as table cells; a delete marker's version says so, and so does a version deleted from the source
    (replicateVersionDeletes: its status is that of the replica's deletion); line breaks of a reason become spaces."""
    version = status.entry.version_id or EMPTY
    if status.entry.is_delete_marker:
        version += " (delete marker)"
    if status.entry.deleted:
        version += " (deleted)"
    reason = " ".join(status.reason.split())
    state = status.status
    if state == FAILED:
        state += " (replay %s)" % iso_utc(status.replay_at) if status.replay_at else " (final)"
    return (status.site, status.entry.bucket, status.entry.key.translate(CONTROL_ESCAPES), version, state,
            status.target_version_id or EMPTY, iso_utc(status.updated_at), reason or EMPTY)


def table(rows: Iterable[tuple[str, ...]], header: tuple[str, ...] = HEADER) -> list[str]:
    """The header and rows as lines of columns padded to their widest cell; the last column is not padded."""
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return [GAP.join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]).rstrip() for row in rows]


def status_lines(statuses: list[StatusEntry], as_json: bool) -> list[str]:
    """The lines to print: one JSON object per status (the API's fields), or the table, its header included."""
    if as_json:
        return [json.dumps(status.to_dict(), ensure_ascii=False) for status in statuses]
    return table(status_row(status) for status in statuses)
