"""TOML suites: load, validate and expand sweeps into cases (shared/DESIGN.md, "Suites").

Any field given as a list is a sweep axis (cartesian product), in `[defaults]` or in a case. A field
that takes an (h, w) pair treats a list of exactly two integers as that pair; to sweep it, list
the values as pairs or as more than two integers (`stride = [[1, 1], [2, 2]]`, `kernel_size =
[1, 3, 5]`). Every error names the file, the case and the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import itertools
import math
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from qbench.errors import InvalidProblem, QbenchError, SuiteError
from qbench.problem import PAIR_FIELDS, QDTYPES, QSCHEMES, ConvProblem, as_pair

MAX_CASES = 10_000
_INT_FIELDS = {"batch", "in_channels", "height", "width", "out_channels", "groups",
               "in_zero_point", "weight_zero_point"}
_CHOICE_FIELDS = {"in_dtype": tuple(QDTYPES), "out_dtype": tuple(QDTYPES),
                  "weight_qscheme": QSCHEMES}
_BOOL_FIELDS = {"bias", "relu", "reduce_range"}
_AUTO_FIELDS = {"out_scale": float, "out_zero_point": int}
PROBLEM_FIELDS = tuple(f.name for f in fields(ConvProblem))
CASE_FIELDS = PROBLEM_FIELDS + ("count", "backends")
REQUIRED_FIELDS = ("in_channels", "out_channels", "height", "width", "kernel_size")
_DEFAULTS = {"batch": 1}
OVERRIDE_SOURCE = "--set"  # how errors name the command line's overrides


def parse_override(text: str) -> tuple[str, Any]:
    """FIELD=VALUE from the command line: VALUE as a TOML value (`3`, `[1, 32]`, `true`), or as
    a string when it is not one (`qint8`). Raises SuiteError without an `=`."""
    field, sep, value = text.partition("=")
    if not sep or not field.strip():
        raise SuiteError(OVERRIDE_SOURCE, f"expected FIELD=VALUE, got {text!r}")
    try:
        return field.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return field.strip(), value.strip()


@dataclass(frozen=True)
class Case:
    """One (expanded) case: a problem, its weight in the network and the backends to run.

    backends: names from the suite (backend or plugin names), or None for the default set.
    """

    name: str
    problem: ConvProblem
    count: int = 1
    backends: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: str
    cases: tuple[Case, ...]


def load_suite(path: str | Path, known_backends: Collection[str] | None = None,
               overrides: Mapping[str, Any] | None = None) -> Suite:
    """Read and validate a suite; `known_backends` (backend and plugin names) checks `backends`.

    `overrides` (the command line's --set) replace a field in every case, after [defaults] and
    the case's own value; a list is a sweep as anywhere else.
    """
    file = str(path)
    overrides = dict(overrides or {})
    _check_keys(OVERRIDE_SOURCE, None, overrides, set(CASE_FIELDS), "field")
    try:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
    except FileNotFoundError:
        raise SuiteError(file, "no such file") from None
    except IsADirectoryError:
        raise SuiteError(file, "is a directory, not a suite file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(file, f"TOML syntax error: {exc}") from None
    _check_keys(file, None, document, {"suite", "defaults", "case"}, "top-level table")
    header = document.get("suite", {})
    _require_type(file, None, "suite", header, dict, "a table")
    _check_keys(file, None, header, {"name", "description"}, "[suite] field")
    name = header.get("name", Path(file).stem)
    description = header.get("description", "")
    for key, value in (("name", name), ("description", description)):
        _require_type(file, None, key, value, str, "a string")
    defaults = document.get("defaults", {})
    _require_type(file, None, "defaults", defaults, dict, "a table")
    _check_keys(file, None, defaults, set(CASE_FIELDS), "field")
    raw_cases = document.get("case", [])
    if not isinstance(raw_cases, list) or not all(isinstance(c, dict) for c in raw_cases):
        raise SuiteError(file, "expected [[case]] tables", field="case")
    if not raw_cases:
        raise SuiteError(file, "the suite has no cases: add at least one [[case]] table")
    planned = 0
    for index, raw in enumerate(raw_cases):
        planned += math.prod(len(v) for _, v in _axes(file, _case_label(raw, index),
                                                       {**defaults, **raw, **overrides}))
        if planned > MAX_CASES:
            raise SuiteError(file, f"the sweeps expand to more than {MAX_CASES} cases (at case "
                             f"{_case_label(raw, index)!r}); split the suite or shorten the lists")
    cases: list[Case] = []
    for index, raw in enumerate(raw_cases):
        cases.extend(_expand(file, raw, index, defaults, overrides, known_backends))
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            raise SuiteError(file, "two cases have this name", case=case.name, field="name")
        seen.add(case.name)
    return Suite(name, description, file, tuple(cases))


def slug(text: str) -> str:
    """`text` as part of a file name: each run of characters other than letters, digits, `_`,
    `.` and `-` as one `-`, without dots or dashes at either end (so never a path of its own,
    `..` included); `suite` where nothing is left."""
    return re.sub(r"[^\w.-]+", "-", text).strip(".-") or "suite"


_TABLES_LISTED = 20  # in the error of a --case that names no case, at most


def select_cases(suite: Suite, patterns: Sequence[str]) -> Suite:
    """The suite with the cases that one of `patterns` (the command line's --case) names, in the
    suite's order; all of them without patterns. A pattern names a case by its name, by the name
    of the [[case]] table it was expanded from (`in-channels` for `in-channels[in_channels=4]`)
    or as a shell-style pattern of its name (`layer3*`: fnmatch, case-sensitive). A pattern that
    names no case is a QbenchError naming the file."""
    for pattern in patterns:
        if not any(_names(pattern, case) for case in suite.cases):
            tables = list(dict.fromkeys(table_name(case.name) for case in suite.cases))
            more = len(tables) - _TABLES_LISTED
            listed = ", ".join(tables[:_TABLES_LISTED]) + (f" and {more} more" if more > 0 else "")
            raise QbenchError(f"{suite.path}: --case {pattern!r} names none of its "
                              f"{len(suite.cases)} cases{suggestion(pattern, tables)}; its "
                              f"[[case]] tables: {listed}")
    if not patterns:
        return suite
    chosen = tuple(case for case in suite.cases if any(_names(p, case) for p in patterns))
    return dataclasses.replace(suite, cases=chosen)


def _names(pattern: str, case: Case) -> bool:
    return (pattern in (case.name, table_name(case.name))
            or fnmatch.fnmatchcase(case.name, pattern))


def table_name(case_name: str) -> str:
    """A case's name without its sweep's `[field=value,...]` suffix: the name of the [[case]]
    table it was expanded from."""
    return _SWEEP_SUFFIX.sub("", case_name)


_SWEEP_SUFFIX = re.compile(r"\[[^\]]*\]$")


def _case_label(raw: dict[str, Any], index: int) -> str:
    name = raw.get("name")
    return name if isinstance(name, str) and name.strip() else f"#{index + 1}"


def suggestion(name: str, known: Collection[str]) -> str:
    """ (did you mean 'x'?) for the closest known name, or nothing."""
    hint = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _check_keys(file: str, case: str | None, table: dict[str, Any], allowed: Collection[str],
                what: str) -> None:
    for key in table:
        if key not in allowed:
            raise SuiteError(file, f"unknown {what}{suggestion(key, allowed)}; known: "
                             f"{', '.join(sorted(allowed))}", case=case, field=key)


def _require_type(file: str, case: str | None, field: str, value: Any, kind: type,
                  words: str) -> None:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise SuiteError(file, f"expected {words}, got {value!r}", case=case, field=field)


def _is_pair(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value))


def _axes(file: str, case: str, merged: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """The sweep axes of a merged case: (field, values) for each list-valued field."""
    axes = []
    for field, value in merged.items():
        if field in ("backends", "name") or not isinstance(value, list):
            continue
        if field in PAIR_FIELDS and _is_pair(value):
            continue
        if not value:
            raise SuiteError(file, "empty sweep: a list needs at least one value", case=case,
                             field=field)
        axes.append((field, value))
    return axes


def _expand(file: str, raw: dict[str, Any], index: int, defaults: dict[str, Any],
            overrides: dict[str, Any], known_backends: Collection[str] | None) -> list[Case]:
    label = _case_label(raw, index)
    _check_keys(file, label, raw, set(CASE_FIELDS) | {"name"}, "field")
    if "name" not in raw:
        raise SuiteError(file, "missing field: every case needs a name", case=label, field="name")
    _require_type(file, label, "name", raw["name"], str, "a string")
    if not raw["name"].strip():
        raise SuiteError(file, "a case's name must not be blank", case=label, field="name")
    merged = {**_DEFAULTS, **defaults, **raw, **overrides}
    for field in REQUIRED_FIELDS:
        if field not in merged:
            raise SuiteError(file, "missing field (give it in the case or in [defaults])",
                             case=label, field=field)
    backends = _backends(file, label, merged.pop("backends", None), known_backends)
    count = merged.pop("count", 1)
    _require_type(file, label, "count", count, int, "an integer")
    if count < 1:
        raise SuiteError(file, f"must be >= 1, got {count}", case=label, field="count")
    name = merged.pop("name")
    axes = _axes(file, label, merged)
    cases = []
    for values in itertools.product(*(v for _, v in axes)):
        point = dict(merged)
        point.update(zip((f for f, _ in axes), values))
        case_name = name + (("[" + ",".join(f"{f}={_show(v)}" for (f, _), v in zip(axes, values))
                             + "]") if axes else "")
        problem = _problem(file, case_name, point)
        cases.append(Case(case_name, problem, count, backends))
    return cases


def _show(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, list) else str(value).lower()


def _backends(file: str, case: str, value: Any,
              known: Collection[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SuiteError(file, f"expected a list of backend names, got {value!r}", case=case,
                         field="backends")
    if not value:
        raise SuiteError(file, "empty list: name at least one backend, or leave the field out",
                         case=case, field="backends")
    if known is not None:
        for name in value:
            if name not in known:
                raise SuiteError(file, f"unknown backend {name!r}{suggestion(name, known)}; known: "
                                 f"{', '.join(sorted(known))}", case=case, field="backends")
    return tuple(value)


def _problem(file: str, case: str, point: dict[str, Any]) -> ConvProblem:
    values: dict[str, Any] = {}
    for field, value in point.items():
        values[field] = coerce_field(file, case, field, value)
    try:
        return ConvProblem(**values).validate()
    except InvalidProblem as exc:
        raise SuiteError(file, exc.message, case=case, field=exc.field) from None


def coerce_field(file: str, case: str | None, field: str, value: Any) -> Any:
    """A suite value as the problem model's type, or a SuiteError saying what was expected."""
    if field in _INT_FIELDS:
        _require_type(file, case, field, value, int, "an integer")
        return value
    if field in PAIR_FIELDS:
        try:
            return as_pair(value)
        except TypeError:
            raise SuiteError(file, f"expected an integer or an [h, w] pair, got {value!r}",
                             case=case, field=field) from None
    if field in _CHOICE_FIELDS:
        if value not in _CHOICE_FIELDS[field]:
            raise SuiteError(file, f"expected one of {', '.join(_CHOICE_FIELDS[field])}, got "
                             f"{value!r}", case=case, field=field)
        return value
    if field in _BOOL_FIELDS:
        _require_type(file, case, field, value, bool, "true or false")
        return value
    if field in _AUTO_FIELDS:
        if value == "auto":
            return None
        kind = _AUTO_FIELDS[field]
        ok = (isinstance(value, (int, float) if kind is float else int)
              and not isinstance(value, bool))
        if not ok:
            expected = "a number" if kind is float else "an integer"
            raise SuiteError(file, f"expected \"auto\" or {expected}, got {value!r}", case=case,
                             field=field)
        return float(value) if kind is float else value
    if field == "in_scale":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SuiteError(file, f"expected a number, got {value!r}", case=case, field=field)
        return float(value)
    raise SuiteError(file, "unknown field", case=case, field=field)  # unreachable after checks
