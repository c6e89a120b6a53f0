"""Dependencies of the runner routes: the app's `Runners`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agenthub.runners.registry import Runners


async def get_runners(request: Request) -> Runners:
    """The app's runners (`app.state.runners`), shared with its in-process worker."""
    runners: Runners = request.app.state.runners
    return runners


RunnersDep = Annotated[Runners, Depends(get_runners)]
