"""Read a farm file into a ``FarmSpec``, or raise a ``SpecError`` listing every problem.

Problems are reported as ``file:line: key.path: message`` so editors and people can jump to
them. Checks that span several keys (a fixed port used twice, two listeners on one address)
live here rather than in the models, because they need the whole farm.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from farmhand.errors import SpecError, SpecProblem
from farmhand.spec.deploy import release_workdir
from farmhand.spec.lbpair import pair_problems
from farmhand.spec.locate import locate_key
from farmhand.spec.models import FarmSpec, split_host_port


def load_farm(path: str | Path) -> FarmSpec:
    """Read and validate the farm file at ``path``."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as error:
        raise SpecError([SpecProblem(str(path), "", f"cannot read the farm file: {error.strerror}")]) from error
    text = decode_farm_text(raw, str(path))
    spec = parse_farm(text, str(path))
    if spec.farm.name is None:
        spec = spec.model_copy(update={"farm": spec.farm.model_copy(update={"name": file.stem})})
    return _with_workdirs_resolved(spec, file.resolve().parent)


def decode_farm_text(raw: bytes, filename: str) -> str:
    """A farm file is UTF-8 (TOML requires it); say where it is not, instead of a traceback."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        message = f"not UTF-8 text: byte 0x{raw[error.start]:02x} cannot be decoded (save the file as UTF-8)"
        raise SpecError([SpecProblem(filename, "", message, line)]) from error


def _with_workdirs_resolved(spec: FarmSpec, folder: Path) -> FarmSpec:
    """Relative workdirs (and a missing one) mean the farm file's folder, as in compose
    files: the farm then works wherever `farmhand` is started from."""
    roles = {}
    for name, role in spec.roles.items():
        if role.deploy is not None:  # runs in its release; the source is read here
            source = str(folder / role.deploy.source) if not Path(role.deploy.source).is_absolute() else role.deploy.source
            roles[name] = role.model_copy(update={"workdir": release_workdir(role.deploy, role.workdir),
                                                  "deploy": role.deploy.model_copy(update={"source": source})})
            continue
        workdir = Path(role.workdir) if role.workdir else folder
        if not workdir.is_absolute():
            workdir = folder / workdir
        roles[name] = role.model_copy(update={"workdir": str(workdir)})
    return spec.model_copy(update={"roles": roles})


def parse_farm(text: str, filename: str = "farm.toml") -> FarmSpec:
    """Validate farm-file text; ``filename`` only labels the problems."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line = _toml_error_line(str(error))
        raise SpecError([SpecProblem(filename, "", f"not valid TOML: {error}", line)]) from error
    try:
        spec = FarmSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(_problems_from(error, text, filename)) from error
    problems = [
        SpecProblem(filename, ".".join(key), message, locate_key(text, key))
        for key, message in _cross_checks(spec)
    ]
    if problems:
        raise SpecError(problems)
    return spec


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def _problems_from(error: ValidationError, text: str, filename: str) -> list[SpecProblem]:
    problems = []
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        problems.append(
            SpecProblem(filename, ".".join(loc), _explain(item, loc), locate_key(text, loc))
        )
    return problems


def _explain(item: Any, loc: tuple[str, ...]) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        return _unknown_key_message(loc)
    if kind == "missing":
        return "is required but missing"
    message = str(item["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in {"literal_error", "int_parsing", "int_type", "string_type", "greater_than_equal",
                "less_than_equal", "greater_than", "string_pattern_mismatch", "bool_type",
                "dict_type", "model_type"}:
        return f"{_show(item.get('input'))}: {message[0].lower()}{message[1:]}"
    return message


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _unknown_key_message(loc: tuple[str, ...]) -> str:
    key = loc[-1]
    known = _known_keys(loc[:-1])
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else (f" (known keys: {', '.join(sorted(known))})" if known else "")
    return f"unknown key{hint}"


def _known_keys(parent: tuple[str, ...]) -> list[str]:
    """Field names of the model found at ``parent`` (skipping the names of dict entries)."""
    model: type[BaseModel] | None = FarmSpec
    index = 0
    while model is not None and index < len(parent):
        field = model.model_fields.get(parent[index])
        if field is None:
            return []
        annotation = field.annotation
        index += 1
        if getattr(annotation, "__origin__", None) is dict:
            model = _model_in(annotation.__args__[1])  # type: ignore[union-attr]
            index += 1
        else:
            model = _model_in(annotation)
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _cross_checks(spec: FarmSpec) -> list[tuple[tuple[str, ...], str]]:
    """Problems that need the whole farm: ports and listeners that would collide."""
    problems: list[tuple[tuple[str, ...], str]] = []
    hosts_for_nodes = [name for name, host in spec.hosts.items()]
    fixed_ports: Counter[int] = Counter()
    for name, role in spec.roles.items():
        if isinstance(role.port, int):
            fixed_ports[role.port] += 1
            most = role.max if role.max is not None else role.initial_count
            if most > len(hosts_for_nodes) and len(hosts_for_nodes) == 1:
                problems.append(((("roles", name, "port")),
                                 f"fixed port {role.port} cannot serve {most} nodes on one host; use port = \"auto\""))
        if role.health and role.health.type in {"http", "tcp"} and role.port == "none":
            problems.append((("roles", name, "health", "type"),
                             f'a {role.health.type} check needs a port; set port = "auto" or use an exec check'))
        if role.lb and role.lb.gate and role.lb.mode != "tcp":
            problems.append((("roles", name, "lb", "gate"), 'the SMTP gate sits on a tcp listener; set mode = "tcp"'))
        if role.lb and role.port == "none":
            problems.append((("roles", name, "lb"), 'a load balancer needs the nodes\' ports; set port = "auto"'))
        for label in role.require:
            if not any(label in host.labels for host in spec.hosts.values()):
                problems.append((("roles", name, "require", label), f"no host has the label {label!r}"))
    for port, uses in fixed_ports.items():
        if uses > 1:
            for name, role in spec.roles.items():
                if role.port == port:
                    problems.append((("roles", name, "port"), f"port {port} is also fixed by another role"))
    problems.extend(_capacity_checks(spec))
    problems.extend(_api_address_checks(spec))
    problems.extend(pair_problems(spec.roles, spec.hosts))
    listeners: Counter[tuple[str, int]] = Counter(
        role.lb.host_port for role in spec.roles.values() if role.lb is not None
    )
    for name, role in spec.roles.items():
        if role.lb is not None and listeners[role.lb.host_port] > 1:
            problems.append((("roles", name, "lb", "listen"), f"{role.lb.listen} is also the listener of another role"))
        if role.lb is not None and isinstance(role.port, int) and role.lb.host_port[1] == role.port:
            problems.append((("roles", name, "lb", "listen"), f"the listener's port {role.port} is the nodes' own port"))
    return problems


def _capacity_checks(spec: FarmSpec) -> list[tuple[tuple[str, ...], str]]:
    """When every host states its capacity, a role cannot ask for more nodes than they hold."""
    capacity = total_capacity(spec)
    if capacity is None:
        return []
    problems: list[tuple[tuple[str, ...], str]] = []
    for name, role in spec.roles.items():
        key = "count" if role.count is not None else "min"
        if role.initial_count > capacity:
            problems.append((("roles", name, key), f"{role.initial_count} nodes do not fit: the hosts hold "
                             f"at most {capacity} (capacity.nodes)"))
    return problems


def total_capacity(spec: FarmSpec) -> int | None:
    """How many nodes the hosts hold together, or None when a host sets no limit."""
    limits = [host.capacity.nodes for host in spec.hosts.values()]
    if any(limit is None for limit in limits):
        return None
    return sum(limit for limit in limits if limit is not None)


def _api_address_checks(spec: FarmSpec) -> list[tuple[tuple[str, ...], str]]:
    """A balancer on the API's own address would fail at start, or take the API's place."""
    try:
        api = split_host_port(spec.farm.api)
    except ValueError as error:
        return [(("farm", "api"), str(error))]
    if api[1] == 0:
        return []
    return [(("roles", name, "lb", "listen"), f"{role.lb.listen} is the farm's API address (farm.api)")
            for name, role in spec.roles.items()
            if role.lb is not None and role.lb.host_port[1] == api[1]
            and _same_interface(role.lb.host_port[0], api[0])]


def _same_interface(a: str, b: str) -> bool:
    wildcard = {"0.0.0.0", "::", ""}
    return a == b or a in wildcard or b in wildcard
