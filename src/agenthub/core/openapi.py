"""OpenAPI document: every operation documents its problem+json errors."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from agenthub.core.errors import PROBLEM_JSON, FieldError, Problem

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_PROBLEM_RESPONSE = {
    "description": "Problem details",
    "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
}


def install_openapi(app: FastAPI) -> None:
    """Replace FastAPI's default 422 schema by problem details and add a `default` problem.

    Operations with a request body also document 400 (malformed) and 413 (too large), and
    every rate-limited operation (under /v1, health aside) 429.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components["Problem"].pop("$defs", None)
        components["FieldError"] = FieldError.model_json_schema()
        for url, path in schema.get("paths", {}).items():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                if url.startswith("/v1/") and not url.startswith("/v1/health"):
                    responses.setdefault("429", {"description": "Rate limited; see Retry-After"})
                if "requestBody" in operation:
                    # Every body can be malformed or over the size limit.
                    responses.setdefault("400", {"description": "Malformed request body"})
                    responses.setdefault("413", {"description": "Request body too large"})
                for code, response in list(responses.items()):
                    if code.startswith(("4", "5")):
                        responses[code] = {
                            "description": response.get("description", "Problem details"),
                            "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
                        }
                responses.setdefault("default", _PROBLEM_RESPONSE)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
