"""Load a policy from YAML; every error names the file, the line and the path of the fault."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

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


def _message(err: dict[str, Any]) -> str:
    t = err["type"]
    ctx = err.get("ctx") or {}
    if t == "extra_forbidden":
        return "unknown key"
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
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{p}: no such policy file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError(f"{p}: cannot read policy: {e}") from None
    return parse_policy(text, str(p))


def parse_policy(text: str, name: str = "<policy>") -> Policy:
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise PolicyError(f"{name}{line}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{name}:1 (top level): a policy must be a mapping of keys")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as e:
        details = []
        for err in e.errors():
            loc = _clean_loc(tuple(err["loc"]))
            line = _line_of(root, loc)
            details.append(f"{name}:{line or '?'} {_fmt_path(loc)}: {_message(err)}")
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
