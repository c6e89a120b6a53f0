"""`GET /v1/user/profile` as a hot read (`web.hot`): the caller's user row with the login
check in one statement, then their API keys' prefixes, as the route reads them."""

from __future__ import annotations

import re
from typing import cast

from sqlalchemy import Table, bindparam, select
from starlette.types import Scope

from agenthub.auth.schemas import Profile
from agenthub.db.models.auth import ApiKey
from agenthub.db.unit import Unit
from agenthub.web.credentials import ACTIVE_USER_ROW, login_params
from agenthub.web.hot import Claims, HotRead, Query, Template, count_caller

_KEYS = cast(Table, ApiKey.__table__)
_KEY_PREFIXES = (
    select(_KEYS.c.prefix)
    .where(_KEYS.c.user_id == bindparam("user_id"))
    .order_by(_KEYS.c.id.desc())
)


async def _profile(
    unit: Unit, scope: Scope, claims: Claims, _: tuple[str, ...], query: Query
) -> bytes | None:
    if query:
        return None
    user = await unit.row(ACTIVE_USER_ROW, login_params(claims))
    if user is None:  # the route answers 401
        return None
    await count_caller(scope, user["id"])
    keys = await unit.rows(_KEY_PREFIXES, {"user_id": user["id"]})
    profile = Profile.of(user, [key["prefix"] for key in keys])
    return profile.model_dump_json().encode()


READS = (HotRead(re.compile(r"/v1/user/profile"), Template("/v1/user/profile"), _profile),)
