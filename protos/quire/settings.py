"""Files a person writes (configs, profiles) as strict declared models, with every problem in one message."""

import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError

M = TypeVar("M", bound=BaseModel)

# What each type error says the value must be, in the words of a TOML file.
_NOUNS = {"bool_type": "true or false", "int_type": "a whole number", "float_type": "a number",
          "string_type": "text in quotes", "list_type": "a list", "tuple_type": "a list",
          "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table"}
_LIMITS = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most"),
           "greater_than": ("gt", "above"), "less_than": ("lt", "below"),
           "string_too_short": ("min_length", "at least this many characters:"),
           "too_short": ("min_length", "at least this many items:")}


class Settings(BaseModel):
    """A declared settings model: exact types (a string "false" is not a boolean), no unknown
    keys, ranges in the fields, read-only once built."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"is not a regular expression ({exc})") from None
    return value


HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})")


def host_port_problem(value: str, lowest_port: int = 1) -> str | None:
    """What is wrong with ``value`` as HOST:PORT (a name or IPv4 address, or an IPv6 one in brackets, and a
    port from ``lowest_port`` to 65535), or None."""
    match = HOST_PORT.fullmatch(value)
    if not match or not lowest_port <= int(match.group(2)) < 65536:
        return (f"must be HOST:PORT with a port from {lowest_port} to 65535, e.g. archive.example:7443 (an IPv6 "
                "address in brackets, [2001:db8::1]:7443)")
    return None


def _host_port(value: str) -> str:
    """An address to listen on: port 0 takes any free port."""
    problem = host_port_problem(value, lowest_port=0)
    if problem:
        raise ValueError(problem)
    return value


Regex = Annotated[str, AfterValidator(_regex)]
HostPort = Annotated[str, AfterValidator(_host_port)]


def listed(kind: Any) -> Any:
    """A TOML list whose every item is ``kind``, kept as a tuple (strict mode takes only a tuple,
    which TOML has not)."""
    return Annotated[tuple[kind, ...], Field(strict=False)]


Texts = listed(StrictStr)


def read_toml(path: Path, error: type[Exception]) -> dict:
    """A TOML file's tables; ``error`` names the file when it cannot be read or parsed."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc}); fix the file and retry") from None
    return parse_toml(data, str(path), error)


def parse_toml(data: bytes, where: str, error: type[Exception]) -> dict:
    """The tables of a TOML file's bytes; ``error`` names ``where`` when they are not TOML."""
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{where}: not a valid TOML file ({exc}); fix the file and retry") from None


def load(settings: type[BaseModel], config: type[M], path: Path | None, home: Path, overrides: dict,
         error: type[Exception]) -> M:
    """The file at ``path`` (nothing: every default) as ``settings``; then, with ``home`` and the
    overrides that are not None, as ``config``. Each stage reports every problem at once."""
    where = str(path) if path else "the default settings"
    data = dict(validated(settings, read_toml(path, error) if path else {}, where, error))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        where += f" with {', '.join(sorted(overrides))} from the command line"
    return validated(config, {**data, **overrides, "home": home}, where, error)


def validated(model: type[M], data: dict, where: str, error: type[Exception], context: dict | None = None) -> M:
    """``data`` as ``model`` (its validators see ``context``); otherwise ``error`` naming ``where``
    and every problem found."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise error(message(where, model, exc)) from None


def message(where: str, model: type[BaseModel], exc: ValidationError) -> str:
    """'FILE: key: what is wrong (got …); other.key: …' for every problem the validation found."""
    return f"{where}: " + "; ".join(problems(model, exc))


def problems(model: type[BaseModel], exc: ValidationError) -> list[str]:
    """One line per key, in the order found; a union's alternatives are joined with 'or'."""
    grouped: dict[str, list[dict]] = {}
    for error in exc.errors(include_url=False):
        grouped.setdefault(_key(model, error["loc"]), []).append(error)
    return [(f"{key}: " if key else "") + _say(errors, model, key) for key, errors in grouped.items()]


def _say(errors: list[dict], model: type[BaseModel], key: str) -> str:
    first = errors[0]
    if first["type"] == "extra_forbidden":
        return f"unknown setting; known here: {', '.join(_known(model, key)) or 'none'}"
    if first["type"] == "missing":
        return "missing; it is required"
    if first["type"] == "value_error":
        return str(first["ctx"]["error"])
    nouns = []
    for error in errors:
        kind, ctx = error["type"], error.get("ctx") or {}
        if kind in _NOUNS:
            nouns.append(_NOUNS[kind])
        elif kind in _LIMITS:
            name, words = _LIMITS[kind]
            limit = ctx[name]
            nouns.append(f"{words} {int(limit) if isinstance(limit, float) and limit.is_integer() else limit}")
        elif kind == "string_pattern_mismatch":
            nouns.append(f"text matching {ctx['pattern']}")
        elif kind == "literal_error":
            nouns.append(f"one of {ctx['expected']}")
        else:
            nouns.append(error["msg"][0].lower() + error["msg"][1:])
    return f"must be {' or '.join(dict.fromkeys(nouns))} (got {_shown(first['input'])})"


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def _key(model: type[BaseModel], loc: tuple) -> str:
    """The dotted key of an error's location; a union's member tags are left out."""
    out, kind = "", _unwrap(model)
    for part in loc:
        if _is_model(kind):
            field = _field(kind, part)
            out += f".{part}" if out else str(part)
            kind = _unwrap(field.annotation) if field else None
        elif typing.get_origin(kind) in (list, tuple) and isinstance(part, int):
            out, kind = f"{out}[{part}]", _unwrap(typing.get_args(kind)[0])
        elif typing.get_origin(kind) is dict and isinstance(part, str):
            out, kind = f"{out}.{part}", _unwrap(typing.get_args(kind)[1])
        else:  # a union's member tag, or beyond what the model declares
            break
    return out


def _known(model: type[BaseModel], key: str) -> list[str]:
    """The keys declared beside ``key``'s last part (the table an unknown key was found in)."""
    kind: Any = model
    for part in key.split(".")[:-1]:
        field = _field(kind, part) if _is_model(kind) else None
        kind = _unwrap(field.annotation) if field else None
    if not _is_model(kind):
        return []
    return sorted(f.alias or name for name, f in kind.model_fields.items())


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _field(model: type[BaseModel], key: object):
    return next((f for name, f in model.model_fields.items() if (f.alias or name) == key), None)


def _unwrap(annotation: Any) -> Any:
    """``X`` from ``X | None`` and ``Annotated[X, …]`` (pydantic gives those no location of their own)."""
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType) and len(args) == 1:
            annotation = args[0]
        else:
            return annotation
