"""The settings reference (`docs/settings.md`), generated from `agenthub.config.Settings`.

    python -m agenthub.settings_reference > docs/settings.md        # write the page
    python -m agenthub.settings_reference --check docs/settings.md  # exit 1 when it is stale

Each field becomes a row: its environment variable, type (with its bounds) and default, and
its description: the field's `description`, which pydantic also fills from an attribute
docstring under `use_attribute_docstrings` (the column is left out while no field has one).
Defaults are rendered as a deployment sees them, never as this machine computes them: secrets
masked, paths relative, computed defaults described.
"""

from __future__ import annotations

import argparse
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import NoDecode

from agenthub.config import Settings, variable

REGENERATE = "python -m agenthub.settings_reference > docs/settings.md"

UNSET_MEANS: dict[str, str] = {
    "redis_url": "unset: realtime, rate limits and cache in process",
    "secret_key": "unset: generated on first start and kept in `AGENTHUB_SECRET_FILE`",
    "auto_migrate": "unset: migrate at start-up on SQLite only",
    "forwarded_allow_ips": "empty: no proxy is believed",
    "cors_origins": "empty: no cross-origin access",
    "password_hash_threads": "unset: one fewer than the machine's cores (at least 1)",
    "rate_limits": "empty: every group has `AGENTHUB_RATE_LIMIT_USER`",
    "worker_kinds": "empty: every registered kind",
    "worker_metrics_port": "unset: `agenthub worker` serves no metrics",
    "job_modules": "empty: the built-in kinds only",
    "openai_base_url": "unset: the `openai` runner is not configured",
    "cli_command": "unset: the `cli` runner is not configured",
}
"""What an unset (or empty) default amounts to, where the code computes it."""

_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret string",
}
_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))
"""Constraints of `Field(...)` as pydantic keeps them in a field's metadata."""


def render() -> str:
    """The whole Markdown page."""
    config = Settings.model_config
    prefix = config.get("env_prefix", "")
    env_file = config.get("env_file")
    source = f"the environment first, then a `{env_file}` file" if env_file else "the environment"
    lines = [
        "# Settings reference",
        "",
        "<!-- Generated from agenthub.config.Settings; do not edit. Regenerate with:",
        f"     {REGENERATE} -->",
        "",
        f"Every setting is an environment variable `{prefix}*`, read from {source} in the "
        "directory where a command runs. `agenthub config` prints the effective values, "
        "secrets masked; a value of the wrong form stops every command with the variable's "
        f"name, and an unknown `{prefix}*` name is warned about.",
        "",
        "Booleans are `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`); relative "
        "paths are relative to the working directory.",
        "",
    ]
    fields = Settings.model_fields
    described = any(field.description for field in fields.values())
    header = ["Variable", "Type", "Default", *(["Description"] if described else [])]
    lines += [_row(header), _row(["---"] * len(header))]
    for name, field in fields.items():
        row = [f"`{variable(name)}`", _type(field), _default(name, field)]
        lines.append(_row([*row, field.description or ""] if described else row))
    return "\n".join(lines) + "\n"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_cell(text) for text in cells) + " |"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.replace("|", "\\|").split())


def _type(field: FieldInfo) -> str:
    annotation: Any = field.annotation
    optional = False
    if _is_union(annotation):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        optional = len(members) < len(get_args(annotation))
        annotation = members[0] if len(members) == 1 else annotation
    text = _type_name(annotation, decoded=NoDecode not in field.metadata)
    bounds = [
        f"{symbol} {_number(bound)}"
        for item in field.metadata
        for attr, symbol in _BOUNDS
        if (bound := getattr(item, attr, None)) is not None
    ]
    return ", ".join([text, *bounds, *(["optional"] if optional else [])])


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _type_name(annotation: Any, *, decoded: bool) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{choice}`" for choice in get_args(annotation))
    if origin is list:
        return "list, comma-separated" if not decoded else "JSON list"
    if origin is dict:
        return "`key=value` pairs, comma-separated" if not decoded else "JSON object"
    if annotation in _TYPES:
        return _TYPES[annotation]
    return str(annotation)


def _default(name: str, field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None or value == [] or value == {}:
        return UNSET_MEANS.get(name, "unset" if value is None else "empty")
    return f"`{_value(value)}`"


def _value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, Path):
        return _path(value)
    if isinstance(value, list | tuple):
        return ",".join(_value(item) for item in value)
    if isinstance(value, dict):
        return ",".join(f"{key}={_value(item)}" for key, item in value.items())
    return str(value)


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _path(path: Path) -> str:
    """A relative path as `./...`; an absolute one under the home directory as `~/...`."""
    if not path.is_absolute():
        text = path.as_posix()
        return text if text.startswith(("./", "../")) else f"./{text}"
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return path.as_posix()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agenthub.settings_reference",
        description="Print the settings reference (docs/settings.md) as Markdown.",
    )
    parser.add_argument(
        "--check",
        metavar="FILE",
        type=Path,
        help="exit 1 unless FILE holds exactly what would be printed",
    )
    args = parser.parse_args(argv)
    page = render()
    if args.check is None:
        sys.stdout.write(page)
        return 0
    path: Path = args.check
    try:
        current = path.read_text(encoding="utf-8")
    except OSError:
        current = None
    if current != page:
        print(f"{path} is out of date with agenthub.config; run: {REGENERATE}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
