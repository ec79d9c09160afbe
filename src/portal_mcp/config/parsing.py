"""Config text to data: YAML with the line of every key, `${VAR}` interpolation, and pydantic's errors as one
sentence naming the key and its line."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from portal_mcp.errors import ConfigError

_VAR = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def parse_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its data. A syntax error names the problem and the line,
    never the text around it (a secrets file's line holds a secret)."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"YAML syntax error: {problem}", source=source, line=line) from None
    except yaml.YAMLError:
        raise ConfigError("YAML error: the file is not valid YAML", source=source) from None


def interpolate(
    value: Any,
    environ: Mapping[str, str],
    path: tuple[Any, ...],
    lines: Mapping[tuple[Any, ...], int],
    source: str,
    captured: set[str],
) -> Any:
    """Expand `${VAR}` and `${VAR:-default}` in every string; `$${VAR}` is a literal `${VAR}`.

    Values substituted into credential places (server `headers` and `env`, the `http` section, `auth.introspection`), and anywhere else
    from a variable whose name says it is a secret (`API_TOKEN` in a url's query, `--api-key=${API_KEY}` in args),
    are added to `captured`, so they can be redacted. `${user.KEY}` does not match (the dot): it is resolved per call.
    """
    if isinstance(value, str):

        def expand(match: re.Match[str]) -> str:
            escaped, var, default = match.group(1), match.group(2), match.group(3)
            if escaped:
                return match.group(0)[1:]
            if var in environ:
                found = environ[var]
            elif default is not None:
                found = default
            else:
                where = ".".join(str(p) for p in path) or "config"
                raise ConfigError(
                    f"environment variable {var!r} (used in {where}) is not set (neither in the environment nor in "
                    f"`secrets_file`); set it, or write `${{{var}:-default}}`",
                    source=source,
                    line=nearest_line(path, lines),
                )
            if _credential_place(path) or _SECRET_LIKE_NAME.search(var):
                captured.add(found)
            return found

        return _VAR.sub(expand, value)
    if isinstance(value, dict):
        return {key: interpolate(item, environ, (*path, key), lines, source, captured) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environ, (*path, i), lines, source, captured) for i, item in enumerate(value)]
    return value


_SECRET_LIKE_NAME = re.compile(r"TOKEN|SECRET|KEY|PASS|PWD|AUTH|CREDENTIAL|COOKIE|SESSION", re.IGNORECASE)


def _credential_place(path: tuple[Any, ...]) -> bool:
    return path[:2] in (("http", "bearer_tokens"), ("http", "users"), ("auth", "introspection")) or (
        len(path) >= 3 and path[0] in ("servers", "mcpServers") and path[2] in ("headers", "env")
    )


def key_lines(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map every key path in the YAML document to its 1-based line, so errors can point at it."""
    found: dict[tuple[Any, ...], int] = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, key_node.value)
            found.update(key_lines(value_node, key))
            found[key] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found.update(key_lines(item, (*path, i)))
    return found


def nearest_line(path: tuple[Any, ...], lines: Mapping[tuple[Any, ...], int]) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def config_error(
    exc: ValidationError,
    source: str,
    lines: Mapping[tuple[Any, ...], int],
    vocabulary: Callable[[tuple[Any, ...]], Iterable[str]] = lambda loc: (),
) -> ConfigError:
    """Every problem pydantic found, each as one sentence naming the key (and server) at fault and its line; an
    unknown key gets the nearest known one (`vocabulary(loc)`: the keys allowed where it stands)."""
    problems: list[ConfigError] = []
    seen: set[tuple[int | None, str]] = set()
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if part not in ("stdio", "remote", "snapshot"))
        line = nearest_line(loc, lines)
        subject = _describe(loc)
        if error["type"] == "extra_forbidden":
            key = loc[-1]
            owner = _describe(loc[:-1])
            near = difflib.get_close_matches(str(key), list(vocabulary(loc[:-1])), n=1, cutoff=0.6)
            hint = (
                f"did you mean {near[0]!r}?"
                if near
                else "check the spelling (see the portal.yaml reference in the README)"
            )
            message = f"unknown key {key!r} in {owner}; {hint}"
        elif error["type"] == "missing":
            message = f"{subject} is required"
        elif error["type"] == "literal_error" and isinstance(error.get("input"), str | int | float | bool):
            # A choice from a fixed list (`approve`, `backend`, ...): naming what was written helps, and it is no secret.
            message = f"{subject}: {error['msg']}, not {error['input']!r}"
        else:
            message = f"{subject}: {error['msg']}"
        if (line, message) not in seen:
            seen.add((line, message))
            problems.append(ConfigError(message, source=source, line=line))
    return ConfigError.combined(problems)


def _describe(loc: tuple[Any, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "servers":
        rest = ".".join(str(p) for p in loc[2:])
        return f"server {loc[1]!r}" + (f" key {rest!r}" if rest else "")
    if not loc:
        return "the top level"
    return "key " + repr(".".join(str(p) for p in loc))
