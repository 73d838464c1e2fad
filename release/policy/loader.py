"""Load a policy from YAML; every error names the file, the line and the path of the fault."""

from __future__ import annotations

import difflib
import hashlib
import json
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from release.errors import PolicyError
from release.policy.models import Policy


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent override is a policy bug)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key]})", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _fmt_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a line number."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(part):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


MAX_POLICY_BYTES = 1 << 20
"A policy is a contract people read: a megabyte is far beyond any real one."
MAX_DEPTH = 40
"Deepest nesting of mappings and lists (the bundled policies use 6)."
MAX_NODES = 200_000
"Most scalars, mappings and lists in one policy (large inline hierarchies fit)."
MAX_ALIASES = 100
"Most YAML aliases (*ref): each can stand for a whole subtree, so they multiply the work."


def check_bounds(text: str, name: str) -> None:
    """Refuse oversized, over-deep or over-long YAML before anything is composed or constructed.

    Walks the parser's event stream (no tree is built, and it stops at the first limit passed), so
    a hostile policy costs a bounded amount of time and memory whatever it holds.
    """
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError(f"{name}: policy larger than {MAX_POLICY_BYTES:,} bytes [rule: policy-size]")
    depth = nodes = aliases = 0
    try:
        for ev in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", _Loader)):
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                nodes += 1
                if depth > MAX_DEPTH:
                    raise PolicyError(f"{name}:{ev.start_mark.line + 1} nesting deeper than {MAX_DEPTH} levels"
                                      " [rule: policy-depth]")
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            elif isinstance(ev, yaml.ScalarEvent):
                nodes += 1
            elif isinstance(ev, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise PolicyError(f"{name}:{ev.start_mark.line + 1} more than {MAX_ALIASES} aliases"
                                      " [rule: policy-aliases]")
            if nodes > MAX_NODES:
                raise PolicyError(f"{name}:{ev.start_mark.line + 1} more than {MAX_NODES:,} items"
                                  " [rule: policy-size]")
    except yaml.YAMLError as e:
        raise _yaml_error(e, name) from None


def _yaml_error(e: yaml.YAMLError, name: str) -> PolicyError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or type(e).__name__
    return PolicyError(f"{name}{line}: not valid YAML: {problem}")


def _annotation_model(ann: Any, key: Any, value: Any) -> Any:
    """The model class (or container annotation) one step down a pydantic annotation."""
    from release import registry

    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _annotation_model(typing.get_args(ann)[0], key, value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        members = [a for a in typing.get_args(ann) if a is not type(None)]
        if isinstance(key, str) and (key in registry.STEPS or key in registry.OUTPUTS):
            return registry.STEPS.get(key) or registry.OUTPUTS.get(key)
        if isinstance(value, dict):
            for m in members:
                if isinstance(m, type) and issubclass(m, BaseModel):
                    for tag in ("type", "kind"):
                        f = m.model_fields.get(tag)
                        if f is not None and value.get(tag) == f.default:
                            return m
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        return models[0] if len(models) == 1 else (members[0] if len(members) == 1 else None)
    return ann


def _known_keys(data: Any, loc: tuple[Any, ...]) -> list[str]:
    """Keys the model at `loc` (the parent of an unknown key) accepts, for a did-you-mean."""
    from release import registry
    from release.policy.models import Policy

    ann: Any = Policy
    node = data
    for part in loc:
        if isinstance(part, str) and (part in registry.STEPS or part in registry.OUTPUTS) and \
                typing.get_origin(ann) in (typing.Annotated, typing.Union):
            ann = _annotation_model(ann, part, node)
            continue
        ann = _annotation_model(ann, None, node)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(str(part))
            if field is None:
                return []
            ann = field.annotation
        else:
            args = typing.get_args(ann)
            origin = typing.get_origin(ann)
            if origin in (list, tuple) and args:
                ann = args[0]
            elif origin is dict and len(args) == 2:
                ann = args[1]
            else:
                return []
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    ann = _annotation_model(ann, None, node)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        keys = []
        for n, f in ann.model_fields.items():
            keys.append(f.alias or n)
            choices = getattr(f.validation_alias, "choices", None) or []
            keys.extend(c for c in choices if isinstance(c, str))
        return list(dict.fromkeys(keys))
    return []


def _did_you_mean(word: str, known: list[str]) -> str:
    near = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


def _message(err: dict[str, Any], data: Any = None) -> str:
    t = err["type"]
    ctx = err.get("ctx") or {}
    if t == "extra_forbidden":
        loc = tuple(err["loc"])
        return "unknown key" + (_did_you_mean(str(loc[-1]), _known_keys(data, loc[:-1])) if loc else "")
    if t == "missing":
        return "is required"
    if t in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        word = {"greater_than_equal": "at least", "greater_than": "greater than",
                "less_than_equal": "at most", "less_than": "less than"}[t]
        bound = next(iter(ctx.values()), "?")
        return f"must be {word} {bound}"
    if t == "union_tag_invalid":
        return f"unknown {ctx.get('discriminator', 'type').strip(chr(39))} {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    if t == "union_tag_not_found":
        return f"needs a {ctx.get('discriminator', 'type').strip(chr(39))} key"
    if t == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if t == "value_error":
        return str(ctx.get("error", err["msg"])).removeprefix("Value error, ")
    if t == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    return err["msg"][0].lower() + err["msg"][1:]


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Discriminated unions put the tag ('drop', 'records') after the list index: leave it out."""
    from release import registry

    return tuple(part for i, part in enumerate(loc)
                 if not (i > 0 and isinstance(loc[i - 1], int) and isinstance(part, str)
                         and (part in registry.STEPS or part in registry.OUTPUTS)))


def policy_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_policy(path: str | Path) -> Policy:
    """Read, parse and validate a policy file; raise PolicyError listing every fault with its line."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            # Read one byte past the limit, never the whole of a huge (or endless) file.
            raw = f.read(MAX_POLICY_BYTES + 1)
    except FileNotFoundError:
        raise PolicyError(f"{p}: no such policy file") from None
    except IsADirectoryError:
        raise PolicyError(f"{p}: is a folder, not a policy file") from None
    except OSError as e:
        raise PolicyError(f"{p}: cannot read policy: {e.strerror or type(e).__name__}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{p}: policy larger than {MAX_POLICY_BYTES:,} bytes [rule: policy-size]")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PolicyError(f"{p}: byte {e.start + 1}: not valid UTF-8 [rule: encoding]") from None
    return parse_policy(text, str(p))


def parse_policy(text: str, name: str = "<policy>") -> Policy:
    check_bounds(text, name)
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        raise _yaml_error(e, name) from None
    except RecursionError:
        raise PolicyError(f"{name}: nesting too deep to read [rule: policy-depth]") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{name}:1 (top level): a policy must be a mapping of keys")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as e:
        details = []
        for err in e.errors():
            loc = _clean_loc(tuple(err["loc"]))
            line = _line_of(root, loc)
            details.append(f"{name}:{line or '?'} {_fmt_path(loc)}: {_message(err, data)}")
        details = list(dict.fromkeys(details))
        raise PolicyError(f"{name}: {len(details)} problem(s) in the policy", details=details) from None
    from release.plan import check_policy_columns

    problems = check_policy_columns(policy)
    if problems:
        details = [f"{name}:{_line_of(root, loc) or '?'} {_fmt_path(loc)}: {msg}" for loc, msg in problems]
        raise PolicyError(f"{name}: {len(details)} problem(s) in the policy", details=details)
    return policy


def policy_json_schema() -> str:
    return json.dumps(Policy.model_json_schema(), indent=2)
