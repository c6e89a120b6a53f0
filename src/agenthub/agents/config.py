"""Agent config files: a JSON or YAML document holding one `RunnerConfig`.

The format comes from the part's content type, else from the file name; YAML, a superset of
JSON, reads anything generic. Every way a file can be wrong is a 422 whose detail says where
(line and column of a syntax error, the path of a bad value, the unknown key).
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import ValidationError

from agenthub.agents.schemas import RunnerConfig
from agenthub.core.errors import (
    FieldError,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    validation_errors,
)
from agenthub.core.jsondata import NotPlainJson, plain_json
from agenthub.core.text import dotted, not_unicode, surrogate_path

MAX_CONFIG_BYTES = 1_048_576
FIELD = "file"

JSON_TYPES = frozenset({"application/json", "text/json"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
GENERIC_TYPES = frozenset({"", "application/octet-stream", "text/plain"})

Format = Literal["json", "yaml"]
_KINDS = {list: "an array", str: "a string", type(None): "an empty document"}


def config_format(filename: str | None, content_type: str | None) -> Format:
    """JSON or YAML by media type, else by extension; 415 for any other specific media type."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in JSON_TYPES or media.endswith("+json"):
        return "json"
    if media in YAML_TYPES or media.endswith("+yaml"):
        return "yaml"
    if media not in GENERIC_TYPES:
        raise UnsupportedMediaType(
            f"A config file is JSON or YAML, not {media}.",
            errors=[FieldError(field=FIELD, message="expected application/json or a YAML type")],
        )
    return "json" if PurePosixPath(filename or "").suffix.lower() == ".json" else "yaml"


def _invalid(detail: str, message: str | None = None) -> ValidationFailed:
    return ValidationFailed(detail, errors=[FieldError(field=FIELD, message=message or detail)])


def _load(text: str, fmt: Format) -> Any:
    import yaml  # only when a config is uploaded: not at start-up

    try:
        if fmt == "json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise _invalid(f"The file is not valid JSON: {exc.msg} at {where}.") from None
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "syntax error"
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _invalid(f"The file is not valid YAML: {problem}{where}.") from None
    except yaml.YAMLError as exc:
        raise _invalid(f"The file is not valid YAML: {exc}.") from None
    except RecursionError:
        raise _invalid("The file is nested too deeply.") from None


def parse_config(data: bytes, filename: str | None, content_type: str | None) -> RunnerConfig:
    """The runner config in an uploaded file, validated; 413, 415 or 422 otherwise."""
    if len(data) > MAX_CONFIG_BYTES:
        raise PayloadTooLarge(f"A config file is at most {MAX_CONFIG_BYTES} bytes.")
    fmt = config_format(filename, content_type)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _invalid("The file is not UTF-8 text.") from None
    document = _load(text, fmt)
    if not isinstance(document, dict):
        raise _invalid(
            "The config must be an object with keys runner, model, system_prompt, options.",
            f"expected an object, got {_KINDS.get(type(document), type(document).__name__)}",
        )
    try:
        plain = plain_json(document)  # bounded first: an alias-expanding YAML file stops here
    except NotPlainJson as exc:
        raise _invalid(f"The config holds a value JSON cannot represent: {exc}.") from None
    # YAML escapes (`\U0000D800`) are not JSON's: every string is looked at.
    if (path := surrogate_path(plain)) is not None:
        raise not_unicode(dotted((FIELD, *path)), "The config")
    try:
        return RunnerConfig.model_validate(plain)
    except ValidationError as exc:
        errors = validation_errors([{**e, "loc": (FIELD, *e["loc"])} for e in exc.errors()])
        summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
        raise ValidationFailed(
            f"The config is not a valid runner config ({summary}).", errors=errors
        ) from None
