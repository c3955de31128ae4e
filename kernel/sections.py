"""One reader of config sections: a TOML table in, a frozen dataclass out.

Every room's section (``[audio]``, ``[detection]``, ``[agent]``, ``[console]``,
``[models]``, ``[retention]``, ``[devices]`` ...) is a frozen dataclass whose
fields are its settings; :func:`read_section` reads a parsed table into it by
the fields' types:

- ``bool``: ``true`` or ``false``; ``int``: a whole number (not a boolean);
  ``float``: any finite number (stored as float); ``str``: a string;
- ``Path``: a non-empty string, ``~`` expanded; ``X | None``: as ``X`` (TOML
  has no null: a key left out keeps the default);
- ``tuple[X, ...]``: a list of ``X``; ``Literal[...]``: one of its values;
- another dataclass: a sub-table (``[audio.vad]``), read the same way.

A field may say more with :func:`setting`: the key it is read from when that
differs from its name (``channels`` for ``channel_map``), or its own reader
(a function of the TOML value that raises ``ValueError`` with a message
naming the key). A key no field reads is an error, never silently ignored.

What a value means together with the others (ranges, "both or neither") is
the dataclass's own: its ``__post_init__``, or a ``check()`` method the
reader calls after building it (validation that direct construction in code
should not pay for). An error from either that does not name the section
already is prefixed with it.

Errors are one line, raised through ``error`` (a section's own error class,
``code="bad_config"``; :class:`~kernel.errors.ConfigError` by default).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from kernel.errors import CallshieldError, ConfigError

T = TypeVar("T")

WRONG_TYPE = "{section} {key} must be {expected}, not {value!r}"
"""The default wording of a value of the wrong type (``wrong_type=`` names another)."""

_KEY = "callshield.key"
_READ = "callshield.read"


def setting(*, key: str | None = None, read: Callable[[Any], Any] | None = None, **field_options: Any) -> Any:
    """A dataclass field (``dataclasses.field(**field_options)``) read from ``key``
    instead of its name, and/or by ``read`` instead of by its type."""
    metadata = dict(field_options.pop("metadata", None) or {})
    if key is not None:
        metadata[_KEY] = key
    if read is not None:
        metadata[_READ] = read
    return dataclasses.field(metadata=metadata, **field_options)


def read_section(cls: type[T], table: Mapping[str, Any] | None, *, section: str,
                 error: Callable[[str], CallshieldError] = ConfigError, defaults: Mapping[str, Any] | None = None,
                 wrong_type: str = WRONG_TYPE) -> T:
    """``cls`` built from ``table`` (None: an empty table).

    ``section``: how errors name the table (``"[audio]"``, or with the file:
    ``"/etc/callshield/config.toml: [agent]"``). ``error``: makes the section's
    error from a message. ``defaults``: values of fields the table leaves out
    that the caller decides (the console's data directory). ``wrong_type``: the
    wording of a type error, a format of ``section``, ``key``, ``expected``,
    ``value`` and ``kind`` (the value's type name).
    """
    table = {} if table is None else table
    hints = typing.get_type_hints(cls)
    by_key = {f.metadata.get(_KEY, f.name): f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - set(by_key))
    if unknown:
        raise error(f"{section}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(by_key))})")
    values: dict[str, Any] = dict(defaults or {})
    reader = _Reader(section, error, wrong_type)
    for key, value in table.items():
        field = by_key[key]
        read = field.metadata.get(_READ)
        if read is not None:
            try:
                values[field.name] = read(value)
            except ValueError as exc:
                raise error(f"{section} {exc}") from None
            continue
        values[field.name] = reader.value(hints[field.name], key, value)
    try:
        built = cls(**values)
        check = getattr(built, "check", None)
        if callable(check):
            check()
    except CallshieldError as exc:
        if exc.message.startswith(section):
            raise error(exc.message) from None
        raise error(f"{section}: {exc.message}") from None
    return built


class _Reader:
    """Reads one value by its type hint; errors name ``section`` and the key."""

    def __init__(self, section: str, error: Callable[[str], CallshieldError], wrong_type: str) -> None:
        self.section, self.error, self.wrong_type = section, error, wrong_type

    def wrong(self, key: str, value: Any, expected: str) -> CallshieldError:
        return self.error(self.wrong_type.format(section=self.section, key=key, expected=expected, value=value,
                                                 kind=type(value).__name__))

    def value(self, hint: Any, key: str, value: Any) -> Any:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (Union, types.UnionType):
            present = [a for a in args if a is not type(None)]
            if len(present) != 1:
                raise TypeError(f"{self.section} {key}: {hint} needs a reader of its own (setting(read=...))")
            return self.value(present[0], key, value)
        if hint is bool:
            if not isinstance(value, bool):
                raise self.wrong(key, value, "true or false")
            return value
        if hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.wrong(key, value, "a whole number")
            return value
        if hint is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise self.wrong(key, value, "a number")
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise self.wrong(key, value, "a string")
            return value
        if hint is Path:
            if not isinstance(value, str) or not value:
                raise self.wrong(key, value, "a path")
            return Path(value).expanduser()
        if origin is Literal:
            if value not in args:
                raise self.wrong(key, value, f"one of {', '.join(map(str, args))}")
            return value
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            if not isinstance(value, list):
                raise self.wrong(key, value, "a list")
            return tuple(self.value(args[0], f"{key}[{i}]", item) for i, item in enumerate(value))
        if dataclasses.is_dataclass(hint):
            inner = f"{self.section[:-1]}.{key}]" if self.section.endswith("]") else f"{self.section}.{key}"
            if not isinstance(value, Mapping):
                raise self.wrong(key, value, f"a table ({inner})")
            return read_section(hint, value, section=inner, error=self.error, wrong_type=self.wrong_type)
        raise TypeError(f"{self.section} {key}: no reader for {hint} (setting(read=...))")
