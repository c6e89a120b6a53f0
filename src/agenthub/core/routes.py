"""Full path templates of the routes: the labels of metrics, logs and the performance window."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute
from starlette.types import Scope

# Where FastAPI's router leaves the route a request matched, with its full template (the test
# of every route's label fails if a release moves it).
FASTAPI_SCOPE = "fastapi"
EFFECTIVE_ROUTE = "effective_route_context"


class RouteTemplates:
    """The full template of the route a request matched.

    FastAPI leaves the route as declared in `scope["route"]`: one of a router included in
    another knows only its own part (`/{session_id}/messages`, not
    `/v1/sessions/{session_id}/messages`); the full template is on the effective route the
    router resolved, which it keeps in the scope. A route of the app itself is full already;
    a plain Starlette one (`/openapi.json`) leaves only its endpoint, looked up in a table of
    the app's own routes built at its first request. Nothing here builds the routes of
    included routers: FastAPI builds those lazily, as requests reach them.
    """

    def __init__(self) -> None:
        self._by_endpoint: dict[int, str] | None = None

    def of(self, scope: Scope) -> str | None:
        effective = scope.get(FASTAPI_SCOPE, {}).get(EFFECTIVE_ROUTE)
        path = getattr(effective or scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        if self._by_endpoint is None:
            self._by_endpoint = _by_endpoint(getattr(scope.get("app"), "routes", []))
        return self._by_endpoint.get(id(scope.get("endpoint")))


def _by_endpoint(routes: Sequence[BaseRoute]) -> dict[int, str]:
    """The app's own routes' templates by endpoint, keyed by `id`. An endpoint served at
    several paths is left out: it does not tell which one matched."""
    paths: dict[int, set[str]] = {}
    for route in routes:
        endpoint, path = getattr(route, "endpoint", None), getattr(route, "path", None)
        if endpoint is not None and isinstance(path, str):
            paths.setdefault(id(endpoint), set()).add(path)
    return {endpoint: found.pop() for endpoint, found in paths.items() if len(found) == 1}
