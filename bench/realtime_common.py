"""Small helpers shared by `bench/realtime.py`, its client processes and its baseline server."""

from __future__ import annotations

import json
import math
import resource
from typing import Any, Literal

import psutil

Compression = Literal["deflate"] | None


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def raise_nofile_limit() -> int:
    """Raise this process's open-file limit to its hard limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far; NaN once it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return math.nan
    return times.user + times.system
