"""Full path templates of the routes: the labels of metrics, logs and the performance window."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute
from starlette.types import Scope


class RouteTemplates:
    """The full template of the route a request matched, read from the app's route table.

    FastAPI leaves the route as declared in `scope["route"]`: one of a router included in
    another knows only its own part (`/{session_id}/messages`, not
    `/v1/sessions/{session_id}/messages`). Plain Starlette routes (`/openapi.json`) leave no
    route at all, only their endpoint. Both are looked up in tables built at the first
    request, once every router has been included.
    """

    def __init__(self) -> None:
        self._by_route: dict[int, str] | None = None
        self._by_endpoint: dict[int, str] = {}

    def of(self, scope: Scope) -> str | None:
        if self._by_route is None:
            self._by_route, self._by_endpoint = _tables(getattr(scope.get("app"), "routes", []))
        route = scope.get("route")
        if route is None:
            return self._by_endpoint.get(id(scope.get("endpoint")))
        path = self._by_route.get(id(route), getattr(route, "path", None))
        return path if isinstance(path, str) else None


def _tables(routes: Sequence[BaseRoute]) -> tuple[dict[int, str], dict[int, str]]:
    """Full templates by route as declared and by endpoint, each keyed by `id` (routes compare
    by value, so they cannot be keys). An endpoint served at several paths is left out: it
    does not tell which one matched."""
    by_route: dict[int, str] = {}
    by_endpoint: dict[int, set[str]] = {}
    for context in iter_route_contexts(routes):
        if context.path is None:
            continue
        by_route[id(context.original_route)] = context.path
        if context.endpoint is not None:
            by_endpoint.setdefault(id(context.endpoint), set()).add(context.path)
    unique = {endpoint: paths.pop() for endpoint, paths in by_endpoint.items() if len(paths) == 1}
    return by_route, unique
