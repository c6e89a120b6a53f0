"""`GET /v1/jobs/{id}` (the polling fallback of `job:{id}`) as a hot read (`web.hot`): the
caller's job, read with the login check in one statement."""

from __future__ import annotations

import re
from typing import cast

from sqlalchemy import Table, bindparam, select
from starlette.types import Scope

from agenthub.core.ids import is_valid
from agenthub.db.models.auth import User
from agenthub.db.models.jobs import Job
from agenthub.db.unit import Unit
from agenthub.jobs.schemas import JobOut
from agenthub.web.credentials import ACTIVE_LOGIN, login_params
from agenthub.web.hot import Claims, HotRead, Query, Template, count_caller

_JOBS = cast(Table, Job.__table__)
_OWNED_BY_ACTIVE_LOGIN = select(_JOBS).where(
    _JOBS.c.id == bindparam("id"), _JOBS.c.user_id == User.id, *ACTIVE_LOGIN
)


async def _job(
    unit: Unit, scope: Scope, claims: Claims, params: tuple[str, ...], query: Query
) -> bytes | None:
    if query or not is_valid(params[0], "job"):
        return None
    job = await unit.row(_OWNED_BY_ACTIVE_LOGIN, {"id": params[0], **login_params(claims)})
    if job is None:  # the route tells 401 from 404
        return None
    await count_caller(scope, job["user_id"])
    return JobOut.model_validate(job).model_dump_json().encode()


READS = (HotRead(re.compile(r"/v1/jobs/([^/]{1,64})"), Template("/v1/jobs/{job_id}"), _job),)
