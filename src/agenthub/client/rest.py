"""`AgentHubClient`: the REST API over `httpx.AsyncClient`, with login, one automatic token
refresh on 401, problem+json errors as `ApiError` and cursor pagination."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from agenthub.client.errors import ApiError
from agenthub.client.realtime import RealtimeClient

AUTH_PATHS = ("/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout", "/v1/auth/register")
REFRESH_MARGIN_SECONDS = 30


class AgentHubClient:
    """An async REST client. `token` is an access token (JWT) or an API key (`ahk_...`).

    Pass `transport` (e.g. `httpx.ASGITransport(app)`) or a ready `http_client` to route the
    requests elsewhere; a given `http_client` is not closed by `aclose()`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        refresh_token: str | None = None,
        timeout: float = 10,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.refresh_token = refresh_token
        self._expires_at: float | None = None
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport
        )
        self._refresh_lock = asyncio.Lock()

    async def __aenter__(self) -> AgentHubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- authentication ---------------------------------------------------------------------

    async def login(self, email: str, password: str) -> dict[str, Any]:
        """Log in; keeps the access and refresh tokens and returns the token pair."""
        tokens = await self.post("/v1/auth/login", json={"email": email, "password": password})
        self._keep(tokens)
        return dict(tokens)

    async def refresh(self) -> dict[str, Any]:
        """Rotate the refresh token for a new access token (`ValueError` without one)."""
        if self.refresh_token is None:
            raise ValueError("no refresh token: log in first")
        body = {"refresh_token": self.refresh_token}
        tokens = await self.post("/v1/auth/refresh", json=body)
        self._keep(tokens)
        return dict(tokens)

    async def access_token(self) -> str | None:
        """The current token, refreshed first when it expires within 30 s (and can be)."""
        expiring = (
            self._expires_at is not None
            and time.monotonic() > self._expires_at - REFRESH_MARGIN_SECONDS
        )
        if expiring and self.refresh_token is not None:
            await self._refresh_once(self.token)
        return self.token

    def _keep(self, tokens: Mapping[str, Any]) -> None:
        self.token = str(tokens["access_token"])
        self.refresh_token = tokens.get("refresh_token") or self.refresh_token
        expires_in = tokens.get("expires_in")
        self._expires_at = time.monotonic() + float(expires_in) if expires_in else None

    async def _refresh_once(self, used_token: str | None) -> bool:
        """Refresh unless another request already did since `used_token` was sent (refresh
        tokens rotate: refreshing twice with one token would revoke the login)."""
        async with self._refresh_lock:
            if self.token != used_token:
                return True
            if self.refresh_token is None:
                return False
            try:
                await self.refresh()
            except ApiError:
                self.refresh_token = None
                return False
            return True

    # -- requests ---------------------------------------------------------------------------

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with the token; on a 401 refresh once (if possible) and retry. Raises
        `ApiError` for a non-2xx response; returns the raw response otherwise."""
        is_auth = path.split("?", 1)[0] in AUTH_PATHS
        token = self.token if is_auth else await self.access_token()
        response = await self._send(method, path, token, kwargs)
        if (
            response.status_code == 401
            and not is_auth
            and self.refresh_token is not None
            and await self._refresh_once(token)
        ):
            response = await self._send(method, path, self.token, kwargs)
        if response.is_success:
            return response
        raise ApiError(response.status_code, _problem(response))

    async def _send(
        self, method: str, path: str, token: str | None, kwargs: dict[str, Any]
    ) -> httpx.Response:
        headers = dict(kwargs.get("headers") or {})
        if token is not None and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {token}"
        url = path if "://" in path else self.base_url + path
        return await self._http.request(method, url, **{**kwargs, "headers": headers})

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Like `send`, returning the parsed JSON body (None when empty, text if not JSON)."""
        response = await self.send(method, path, **kwargs)
        if not response.content:
            return None
        if "json" in response.headers.get("content-type", ""):
            return response.json()
        return response.text

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Any:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Any:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Any:
        return await self.request("DELETE", path, **kwargs)

    async def paginate(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Any]:
        """Every item of a list endpoint, following `next_cursor` through `after`."""
        query = dict(params or {})
        while True:
            page = await self.get(path, params=query)
            for item in page["data"]:
                yield item
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return
            query["after"] = cursor

    def realtime(self, **options: Any) -> RealtimeClient:
        """A `RealtimeClient` for this server, connecting with this client's current token
        (refreshed when due); `options` go to `RealtimeClient`. Call `connect()` on it."""
        return RealtimeClient(self.base_url, token_provider=self.access_token, **options)


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {
        "type": "about:blank",
        "title": response.reason_phrase,
        "status": response.status_code,
        "detail": response.text or None,
    }
