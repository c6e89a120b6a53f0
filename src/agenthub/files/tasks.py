"""The files' background work: the sweep of stored content no file refers to."""

from __future__ import annotations

from datetime import datetime, timedelta

from agenthub.files.service import sweep_orphans
from agenthub.files.storage import LocalStorage
from agenthub.jobs.context import JobContext
from agenthub.jobs.maintenance import purge

ORPHAN_AGE = timedelta(hours=1)
"""Stored content younger than this is never an orphan: its upload may not have committed."""


@purge("orphan_files", order=40)
async def purge_orphans(ctx: JobContext, now: datetime) -> int:
    """Stored content older than an hour that no file row references. It runs after the
    accounts' purge (committed), so the files of the accounts purged in this run are among
    them."""
    storage = LocalStorage(ctx.settings.files_dir)
    return await ctx.database.run(lambda db: sweep_orphans(db, storage, now - ORPHAN_AGE))
