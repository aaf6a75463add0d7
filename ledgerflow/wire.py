"""The JSON shape of the ledger's records, one for every channel that speaks
JSON (the CLI's `--json`, the HTTP API): a dataclass is its fields, an
instant its ISO 8601 text, an enum its value. Amounts stay integers (minor
units), never floats."""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def revive(cls: type[T], value: Any) -> T:
    """The record of `cls` that `plain` made `value` from (members `cls`
    does not declare are dropped: an answer may carry more, such as an
    account's `available`)."""
    hints = typing.get_type_hints(cls)
    given = {f.name: value[f.name] for f in dataclasses.fields(cls) if f.name in value}  # type: ignore[arg-type]
    return cls(**{name: _revived(hints[name], item) for name, item in given.items()})


def _revived(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in args if a is not type(None)]
        return _revived(options[0], value) if len(options) == 1 else value
    if origin is list and args:
        return [_revived(args[0], item) for item in value]
    if hint is datetime:
        return datetime.fromisoformat(value)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return revive(hint, value)
    return value
