"""The one YAML loader for user input (profiles, configs, `--set` values): bounded before it allocates.

PyYAML's `safe_load` refuses code but not size: a few hundred bytes of nested aliases (a "billion laughs")
expand to gigabytes when the document is built, or when a message reprs it. Here the file size is capped
before reading, aliases are refused (no scoliotune file needs one; merge keys `<<: *x` are aliases too),
and the nesting depth and node count are capped while the document is composed, before anything is built.

    from scolio_core.safe_yaml import brief, load_yaml_file, load_yaml_text
    raw = load_yaml_file(path)                       # ConfigError naming the file and line on any breach
    value = load_yaml_text("[1, 2]", "--set train.milestones")
    raise ConfigError(f"{where}: bad value {brief(value)}")   # a message never reprs an unbounded value

Standard library and PyYAML only (layer 0: any scoliotune module may import it).
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml

from scolio_core.errors import ConfigError

MAX_YAML_BYTES = 1 << 20  # the largest profile is ~3 KB; a cap keeps a hostile file from filling memory
MAX_DEPTH = 16  # a profile nests 4 levels (search -> key -> distribution -> list)
MAX_NODES = 20_000  # scalars + lists + mappings in one document; profiles hold a few hundred
BRIEF_CHARS = 80

_brief = reprlib.Repr()  # bounded work as well as bounded output, whatever the value holds
_brief.maxlevel, _brief.maxlist, _brief.maxtuple, _brief.maxdict = 2, 6, 6, 4
_brief.maxstring, _brief.maxlong, _brief.maxother = BRIEF_CHARS, 40, BRIEF_CHARS


def brief(value: Any, limit: int = BRIEF_CHARS) -> str:
    """`repr(value)` cut to about `limit` characters: what error messages show of a user's value."""
    return cut(_brief.repr(value), limit)


def cut(text: str, limit: int = BRIEF_CHARS) -> str:
    """`text` on one line, cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and caps nesting depth and node count while composing, before any
    value is built; a refusal names the line and the key path (`budget.num_samples[2]`)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str] = []  # one entry per open node: ".key", "[index]" or "" (root, mapping keys)
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if isinstance(index, yaml.ScalarNode):  # a mapping value, under its key
            self._path.append(("." if any(self._path) else "") + cut(str(index.value), 40))
        else:
            self._path.append(f"[{index}]" if isinstance(index, int) else "")
        try:
            event = self.peek_event()
            at = f"line {event.start_mark.line + 1}" + (f", {''.join(self._path)}" if any(self._path) else "")
            if isinstance(event, yaml.AliasEvent):
                raise _Refused(f"{at}: YAML aliases (*{cut(str(event.anchor), 40)}) are not accepted; "
                               "write the value out")
            self._nodes += 1
            if self._nodes > MAX_NODES:
                raise _Refused(f"{at}: more than {MAX_NODES} YAML values")
            if len(self._path) > MAX_DEPTH:
                raise _Refused(f"{at}: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._path.pop()


    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        # YAML keeps the last of two equal keys: a second `fixed:` or `seed:` would silently replace the first.
        seen: set = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key in seen:
                raise _Refused(f"line {key_node.start_mark.line + 1}: key {cut(str(key), 40)!r} given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Refused(Exception):
    """A limit of BoundedLoader was hit (turned into a ConfigError naming the source)."""


def load_yaml_text(text: str, where: str) -> Any:
    """One YAML document from `text` under the limits above; a ConfigError starting with `where` otherwise."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{where}: {len(text)} characters of YAML, more than the {MAX_YAML_BYTES} accepted")
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({cut(str(exc), 200)})") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise ConfigError(f"{where}: unreadable YAML value ({cut(str(exc), 120)})") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> Any:
    """A YAML file's one document: its size checked before it is read, then `load_yaml_text`."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)  # never more than the cap, whatever stat says
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: larger than the {MAX_YAML_BYTES} bytes a YAML file may hold")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return load_yaml_text(text, str(path))
