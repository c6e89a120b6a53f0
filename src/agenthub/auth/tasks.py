"""The accounts' background work: the purge of deleted accounts."""

from __future__ import annotations

from datetime import datetime, timedelta

from agenthub.auth.service import purge_deleted_users
from agenthub.jobs.context import JobContext
from agenthub.jobs.maintenance import BATCH, in_batches, purge


@purge("accounts", order=20)
async def purge_accounts(ctx: JobContext, now: datetime) -> int:
    """Accounts deleted more than `AGENTHUB_ACCOUNT_RETENTION_DAYS` ago, with all they owned."""
    cutoff = now - timedelta(days=ctx.settings.account_retention_days)
    return await in_batches(ctx.database, lambda db: purge_deleted_users(db, cutoff, BATCH))
