"""Playbooks: declarative YAML lists of steps, each naming an operation of ours.

Rule 1: a playbook is a list of steps (or a mapping with `steps:` and `handlers:`); a step
has `name`, `op`, `args`, and optionally `notify` (handler names) and `when`.
Rule 2: no logic in YAML.  `when` is `NAME`, `not NAME`, `NAME == VALUE` or
`NAME != VALUE` over the host's vars; `{{ NAME }}` in a string is the host var NAME
(keeping its type when it is the whole string).  Anything else in `{{ }}` is an error.
Rule 3: everything that can be checked without a host is checked at load (op names, arg
names and types, `when` syntax, `notify` targets); the rest when rendered for a host,
before any step runs there.  Errors say file, step and what to do:
`playbooks/server.yml: step 3 (op: sysctl): unknown arg 'vaule'`.
Rule 4: bad input, however hostile, is only a PlaybookError, one line, in bounded time and
memory: YAML (the file and a `when` value) goes through runtime.validate's `load_yaml`, and
a found value is shown with `brief`, never a whole repr.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import PlaybookError
from provision.operation import Operation, Registry
from runtime.validate import MAX_FILE_BYTES, NotYaml, brief, cut, load_yaml, one_line

STEP_KEYS = ("name", "op", "args", "notify", "when")
VAR = r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}"
WHEN = re.compile(r"(not\s+)?([A-Za-z_]\w*)(?:\s*(==|!=)\s*(.+))?")


@dataclass(frozen=True)
class Condition:
    """A `when:`: `var` is truthy (`op` "is"), falsy ("not"), equal ("==") or not ("!=")."""

    text: str
    var: str
    op: str
    value: Any = None

    def holds(self, host_vars: Mapping[str, Any]) -> bool:
        if self.var not in host_vars:
            raise KeyError(self.var)
        value = host_vars[self.var]
        return {"is": bool(value), "not": not value, "==": value == self.value,
                "!=": value != self.value}[self.op]


@dataclass(frozen=True)
class Step:
    """One step as written; `label` is how errors and output name it."""

    label: str
    name: str
    op: str
    args: Mapping[str, Any]
    notify: tuple[str, ...] = ()
    when: Condition | None = None


@dataclass(frozen=True)
class Planned:
    """A step rendered for one host: its operation, or None when `when` skips it."""

    step: Step
    operation: Operation[Any] | None


@dataclass(frozen=True)
class Playbook:
    source: str
    steps: tuple[Step, ...]
    handlers: tuple[Step, ...]
    registry: Registry

    def for_host(self, host_vars: Mapping[str, Any]) -> tuple[tuple[Planned, ...], dict[str, Planned]]:
        """Every step and handler rendered with the host's vars (errors before any change)."""
        steps = tuple(self._render(step, host_vars) for step in self.steps)
        handlers = {h.name: self._render(h, host_vars) for h in self.handlers}
        return steps, handlers

    def _render(self, step: Step, host_vars: Mapping[str, Any]) -> Planned:
        try:
            if step.when is not None and not step.when.holds(host_vars):
                return Planned(step, None)
            args = {k: substitute(v, host_vars) for k, v in step.args.items()}
        except KeyError as exc:
            raise self.error(step, f"undefined variable {exc.args[0]!r}", "set it in the inventory") from None
        except ValueError as exc:
            raise self.error(step, str(exc)) from None
        return Planned(step, self.build(step, args))

    def build(self, step: Step, args: Mapping[str, Any]) -> Operation[Any]:
        cls = self.registry.get(step.op)
        assert cls is not None  # checked at load
        try:
            op = cls(**{k: conform(v, arg_types(cls)[k], k) for k, v in args.items()})
            op.validate()
        except ValueError as exc:
            raise self.error(step, str(exc)) from None
        return op

    def error(self, step: Step, problem: str, hint: str | None = None) -> PlaybookError:
        return PlaybookError(one_line(f"{self.source}: {step.label}: {problem}"), hint)


# ---- arguments: names and types come from the operation's dataclass fields -------------


def arg_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def required_args(cls: type) -> tuple[str, ...]:
    missing = dataclasses.MISSING
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.init and f.default is missing and f.default_factory is missing)


def conform(value: Any, hint: Any, name: str) -> Any:
    """`value` as type `hint` (YAML lists become tuples), or ValueError naming the arg."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        ok, converted = _as_type(value, option)
        if ok:
            return converted
    wanted = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"arg {name!r}: expected {wanted}, got {brief(value)} ({type(value).__name__})")


def _as_type(value: Any, hint: Any) -> tuple[bool, Any]:
    if hint is Any:
        return True, value
    if hint is type(None):
        return value is None, value
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list | tuple):
        item = typing.get_args(hint)[0]
        converted = [_as_type(v, item) for v in value]
        return all(ok for ok, _ in converted), tuple(v for _, v in converted)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, dict), value
    if hint is int or hint is float:
        return isinstance(value, hint) and not isinstance(value, bool), value
    return isinstance(hint, type) and isinstance(value, hint), value


# ---- variables and conditions ---------------------------------------------------------


def substitute(value: Any, host_vars: Mapping[str, Any]) -> Any:
    """`{{ NAME }}` replaced by the host var (KeyError when undefined)."""
    if isinstance(value, list):
        return [substitute(v, host_vars) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, host_vars) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    whole = re.fullmatch(VAR, value.strip())
    if whole:
        return _thaw(host_vars[whole.group(1)])
    return re.sub(VAR, lambda m: _scalar(host_vars[m.group(1)], m.group(1)), value)


def _thaw(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _scalar(value: Any, name: str) -> str:
    if isinstance(value, list | tuple | dict | Mapping):
        raise ValueError(f"variable {name!r} is not a single value; use it as the whole string")
    return str(value)


def bad_template(value: Any) -> str | None:
    """The first `{{ ... }}` that is not a plain variable, if any."""
    if isinstance(value, list):
        return next((b for b in map(bad_template, value) if b), None)
    if isinstance(value, dict):
        return next((b for b in map(bad_template, value.values()) if b), None)
    if isinstance(value, str) and ("{{" in value or "}}" in value):
        rest = re.sub(VAR, "", value)
        return value if "{{" in rest or "}}" in rest else None
    return None


def has_template(value: Any) -> bool:
    """Whether `substitute` would replace anything in `value` (the values it walks)."""
    if isinstance(value, list | tuple):
        return any(map(has_template, value))
    if isinstance(value, Mapping):
        return any(map(has_template, value.values()))
    return isinstance(value, str) and re.search(VAR, value) is not None


def parse_when(text: object) -> Condition:
    match = WHEN.fullmatch(str(text).strip()) if isinstance(text, str | bool) else None
    if match is None or (match.group(1) and match.group(3)):
        raise ValueError(f"when: {brief(text)}: write NAME, not NAME, NAME == VALUE or NAME != VALUE")
    negated, var, op, literal = match.groups()
    if op:
        try:
            value = load_yaml(literal)
        except NotYaml as exc:
            problem = re.sub(r" at line [0-9]+", "", str(exc), count=1)  # the literal's line, not the file's
            raise ValueError(f"when: {brief(text)}: {problem}") from None
        return Condition(str(text), var, op, value)
    return Condition(str(text), var, "not" if negated else "is")


# ---- loading --------------------------------------------------------------------------


def load_playbook(path: str | Path, registry: Registry | None = None) -> Playbook:
    """Read, parse and check the playbook at `path` against `registry` (default: ours)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PlaybookError(f"{path}: cannot read: {exc.strerror}", "check the playbook path") from None
    if len(data) > MAX_FILE_BYTES:
        raise PlaybookError(f"{path}: {len(data)} bytes is too large for a playbook", "check the playbook path")
    return parse_playbook(data, str(path), registry)


def default_registry() -> Registry:
    from provision.ops import DEFAULT_REGISTRY

    return DEFAULT_REGISTRY


def parse_playbook(text: str | bytes, source: str, registry: Registry | None = None) -> Playbook:
    """Parse and check a playbook from YAML `text` (bytes: UTF-8); `source` names the file in errors."""
    registry = registry or default_registry()
    try:
        data = load_yaml(text)
    except NotYaml as exc:
        raise PlaybookError(one_line(f"{source}: {exc}"), exc.hint) from None
    raw_steps, raw_handlers = _sections(data, source)
    loader = _Loader(source, registry)
    handlers = tuple(loader.step(raw, f"handler {i}") for i, raw in enumerate(raw_handlers, 1))
    steps = tuple(loader.step(raw, f"step {i}") for i, raw in enumerate(raw_steps, 1))
    playbook = Playbook(source, steps, handlers, registry)
    _check_handlers(playbook)
    for step in (*steps, *handlers):
        if not has_template(step.args):
            playbook.build(step, step.args)  # every error that needs no host, now
    return playbook


def _sections(data: Any, source: str) -> tuple[list[Any], list[Any]]:
    if isinstance(data, list):
        return data, []
    if isinstance(data, dict) and set(data) <= {"steps", "handlers"} and isinstance(data.get("steps"), list):
        handlers = data.get("handlers") or []
        if isinstance(handlers, list):
            return data["steps"], handlers
    raise PlaybookError(f"{source}: expected a list of steps, or a mapping with steps: and handlers: lists")


def _check_handlers(playbook: Playbook) -> None:
    names = [h.name for h in playbook.handlers]
    for index, handler in enumerate(playbook.handlers):
        if handler.name in names[:index]:
            raise playbook.error(handler, f"two handlers are named {brief(handler.name)}")
        if handler.notify:
            raise playbook.error(handler, "a handler cannot notify", "notify from the steps instead")
    for step in playbook.steps:
        for target in step.notify:
            if target not in names:
                raise playbook.error(step, f"notify: no handler named {brief(target)}",
                                     cut(f"handlers: {', '.join(names) or '(none)'}", 200))


@dataclass(frozen=True)
class _Loader:
    source: str
    registry: Registry

    def fail(self, label: str, problem: str, hint: str | None = None) -> PlaybookError:
        return PlaybookError(one_line(f"{self.source}: {label}: {problem}"), hint)

    def step(self, raw: Any, label: str) -> Step:
        if not isinstance(raw, dict):
            raise self.fail(label, "expected a mapping with name, op and args")
        unknown = [k for k in raw if k not in STEP_KEYS]
        if unknown:
            raise self.fail(label, f"unknown key {brief(unknown[0])}", f"a step has {', '.join(STEP_KEYS)}")
        op = raw.get("op")
        cls = self.registry.get(op) if isinstance(op, str) else None
        if cls is None:
            raise self.fail(label, f"unknown op {brief(op)}", f"known ops: {', '.join(self.registry.names())}")
        label = f"{label} (op: {op})"
        return Step(label, self.name(raw.get("name"), op, label), str(op), self.args(raw.get("args"), cls, label),
                    self.notify(raw.get("notify"), label), self.when(raw.get("when"), label))

    def name(self, raw: Any, op: str, label: str) -> str:
        if isinstance(raw, list | dict):
            raise self.fail(label, f"name: expected text, got {brief(raw)}")
        return str(raw or op)

    def args(self, raw: Any, cls: type[Operation[Any]], label: str) -> Mapping[str, Any]:
        args = {} if raw is None else raw
        if not isinstance(args, dict):
            raise self.fail(label, f"args: expected a mapping, got {brief(args)}")
        known = arg_types(cls)
        for name in args:
            if name not in known:
                raise self.fail(label, f"unknown arg {brief(name)}", f"{cls.op} takes: {', '.join(known)}")
        for name in required_args(cls):
            if name not in args:
                raise self.fail(label, f"missing arg {name!r}", f"{cls.op} takes: {', '.join(known)}")
        bad = bad_template(args)
        if bad is not None:
            raise self.fail(label, f"{brief(bad)}: only {{{{ name }}}} of a host var is allowed", "no logic in YAML")
        return types.MappingProxyType(args)

    def notify(self, raw: Any, label: str) -> tuple[str, ...]:
        names = [raw] if isinstance(raw, str) else raw or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise self.fail(label, f"notify: expected a handler name or a list of them, got {brief(raw)}")
        return tuple(names)

    def when(self, raw: Any, label: str) -> Condition | None:
        try:
            return None if raw is None else parse_when(raw)
        except ValueError as exc:
            raise self.fail(label, str(exc)) from None
