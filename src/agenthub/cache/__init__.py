"""Cached expensive reads (the stats routes), made stale by the writes that change them.

Entries live in a *scope*: a user's id for that user's own aggregates, `ALL_USERS` for an
administrator's view over everyone. Each scope has a version. A reader notes the version
before it queries and stores its value under that version; the value is a hit only while the
scope still has it. Writes move versions on, after their commit:

- `Database.transaction` learns which users a unit of work wrote for. An `after_flush` hook sees
  every ORM row added, changed or deleted and records its `user_id`; the few bulk `UPDATE` /
  `DELETE` statements on owned rows (the job queue's guarded transitions, job cancel, delete
  and purge, session purge) record their owners with `invalidate_cache_of` (or
  `invalidate_every_cache`), as `core.events.emit` records events.
- Once the commit succeeded, and before the unit's domain events go out (a client refetching on
  an event reads fresh numbers), `Cache.invalidate(users)` moves on the versions of those
  users and of `ALL_USERS`.

A reader that saw the old version stores under the old version, so the next reader misses; a
reader that saw the new version queried after the commit. The same hook serves API requests
and job workers, which write through `Database` too. Domain events were the other candidate:
job and message events name a job or a session, not its owner, while the ORM row carries it.
Writes to credentials and the audit log (`IGNORED_TABLES`) move no version: sign-ins write them
and no cached read counts them. The TTL is only a backstop.

Backends: `MemoryCache` (one process, LRU-bounded) and `RedisCache` (shared by every node and
worker, keys under `{redis_prefix}:cache:`). A failing Redis never fails a request nor holds
it longer than its short socket timeouts: a read is a miss computed from the database, a
store is skipped, and Redis is left alone for `RETRY_SECONDS`. An invalidation that may have
been lost makes every entry suspect: no hits until the node has replaced the Redis *epoch*
(part of every version), which it retries in the background. Without Redis each process
caches for itself, so other server processes or a separate `agenthub worker` go stale for up
to `AGENTHUB_CACHE_TTL_SECONDS`.

Modules: `base` (the interface and the routes' dependency), `stale` (the unit-of-work hook),
`memory` and `redis` (the backends; `agenthub.wiring` picks one).
"""
