"""YAML for files people write by hand and attackers can write too: bounded in time and memory.

A safe loader (libyaml's parser when installed) that refuses duplicate keys, files over
``MAX_FILE_BYTES``, brackets nested deeper than ``MAX_DEPTH`` (libyaml recurses in C on them
and would crash the process) and aliases that expand past ``MAX_VALUES`` values.
"""

from __future__ import annotations

import yaml

from .errors import TopologyError

__all__ = ["load_yaml", "MAX_FILE_BYTES", "MAX_VALUES", "MAX_DEPTH"]

MAX_FILE_BYTES = 1 << 20  # a topology is a few KB; this bounds the time and memory of loading one
MAX_VALUES = 200_000  # values after YAML aliases are expanded
MAX_DEPTH = 64  # nesting of [ and {


class _DuplicateKey(Exception):
    def __init__(self, key, line: int) -> None:
        super().__init__(key)
        self.key, self.line = key, line


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when it is installed


class _UniqueKeyLoader(_BaseLoader):
    """A safe YAML loader (libyaml's parser when available) that refuses a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the constructor reports it
                break
            if duplicate:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _bracket_depth(text: str) -> int:
    """The deepest nesting of [ and { in ``text`` (quotes ignored: an over-estimate, which is safe).

    libyaml's parser recurses in C on nested flow collections: a file of 100,000 '[' would crash
    the process instead of raising, so such files are refused before they are parsed."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}" and depth:
            depth -= 1
    return deepest


def _tree_size(data, limit: int = MAX_VALUES) -> int:
    """How many values ``data`` has with aliases expanded (counted without expanding them)."""
    sizes: dict[int, int] = {}

    def size(x) -> int:
        if not isinstance(x, (dict, list)):
            return 1
        if id(x) in sizes:
            return sizes[id(x)]
        sizes[id(x)] = limit + 1  # a cycle counts as too big
        total = 1
        for v in x.values() if isinstance(x, dict) else x:
            total += size(v)
            if total > limit:
                break
        sizes[id(x)] = total
        return total

    try:
        return size(data)
    except RecursionError:
        return limit + 1


def load_yaml(text: str, source: str):
    """Parse ``text`` (from ``source``, named in every error) within the limits above.

    Raises:
        TopologyError: too big, too deep, a duplicate key, a syntax error, or aliases that expand too far.
    """
    if len(text) > MAX_FILE_BYTES:
        raise TopologyError(f"{source}: {len(text):,} characters is over the {MAX_FILE_BYTES:,} limit for a topology")
    if _bracket_depth(text) > MAX_DEPTH:
        raise TopologyError(
            f"{source}: brackets nested over {MAX_DEPTH} deep; a topology is a few levels of "
            "mappings and lists: check that this is the right file"
        )
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader (SafeConstructor)
    except _DuplicateKey as exc:
        raise TopologyError(
            f"{source}: line {exc.line}: key {exc.key!r} appears twice in the same mapping; keep one (YAML would silently use the last)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)[:300]
        raise TopologyError(f"{source}:{where}: YAML syntax error: {problem}. Fix the YAML at that position.") from None
    except RecursionError:
        raise TopologyError(f"{source}: nested too deeply to be a topology; a topology is a few levels of mappings and lists") from None
    if _tree_size(data) > MAX_VALUES:
        raise TopologyError(
            f"{source}: expands to over {MAX_VALUES:,} values (YAML aliases repeat what they name); "
            "write the topology out without nested aliases"
        )
    return data
