"""Reading experiment YAML: ``yaml.safe_load`` semantics, with limits and plain-language errors.

What ``safe_load`` accepts is accepted (plain data only: no Python tags), except for what makes
an experiment file wrong or dangerous to process, each refused with a one-line
:class:`~rlkit.validation.ConfigError` that names the file and the line:

* a key that appears twice in one mapping (``train:`` twice; ``safe_load`` keeps the last
  silently) -- both lines are named. Merge keys (``<<: *base``) still override as usual;
* nesting deeper than :data:`MAX_DEPTH` levels, aliases that refer to the collection containing
  them, and aliases that expand to more than :data:`MAX_NODES` values (an "alias bomb": a few
  hundred bytes that expand to billions of values once anything walks the data);
* files larger than :data:`MAX_BYTES`, and bytes that are not text: UTF-8 is expected (a UTF-8
  byte-order mark is skipped); UTF-16 and UTF-32 files are decoded when they start with a
  byte-order mark, and refused without one. An undecodable byte is named by offset and line;
* a scalar that cannot become a value (an integer of thousands of digits, ``2001-13-45``).

Parser errors get a plain sentence, e.g. "the indentation of line 7 does not match the lines
above it", then the text of the offending line and the parser's own words.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rlkit.validation import ConfigError, cut, quote

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "YAMLSyntaxError", "parse", "read_file"]

MAX_BYTES = 1 << 20
"""Largest experiment file read (1 MiB; real ones are a few hundred bytes)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists, aliases expanded."""
MAX_NODES = 100_000
"""Most values (keys, scalars, collections) a document may expand to through its aliases."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class YAMLSyntaxError(ConfigError):
    """The text is not YAML at all (a scanner or parser error), as opposed to YAML that breaks
    a rule above; ``--set`` falls back to reading such a value as a plain string."""


class _Limit(ComposerError):
    """A document refused by one of this module's limits (marks say where)."""


class _BadValue(ConstructorError):
    """A scalar that YAML recognises but Python cannot hold (``2001-13-45``, 5,000 digits)."""


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate keys, deep nesting and alias bombs."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Limit(None, None, f"the data is nested more than {MAX_DEPTH} levels "
                             f"deep; experiment files need a handful", self.peek_event().start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node: MappingNode = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], Any] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            first = seen.setdefault((key_node.tag, key_node.value), key_node.start_mark)
            if first is not key_node.start_mark:
                raise _Limit(
                    f"key {quote(key_node.value)} first appears on line {first.line + 1}", first,
                    f"key {quote(key_node.value)} appears twice in one mapping, on lines "
                    f"{first.line + 1} and {key_node.start_mark.line + 1}; YAML would silently "
                    f"keep only the last: remove or merge one of them", key_node.start_mark)
        return node

    def compose_document(self) -> Node:
        node: Node = super().compose_document()
        _check_expansion(node)
        return node

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        if (node.tag == "tag:yaml.org,2002:int" and isinstance(node.value, str)
                and len(node.value) > 100):
            raise _BadValue(None, None, f"an integer of {len(node.value):,} digits cannot be a "
                            f"setting (integers must fit in 64 bits)", node.start_mark)
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # 2001-13-45
            raise _BadValue(None, None, f"cannot read {quote(node.value)} as a "
                            f"{node.tag.rpartition(':')[2]}: {cut(str(exc))}",
                            node.start_mark) from None


def _check_expansion(root: Node) -> None:
    """Refuse cycles, and documents whose aliases expand past MAX_NODES values or MAX_DEPTH.

    One pass over the node graph, each node once (shared nodes are counted per use by
    memoising their expanded size), without recursion.
    """
    done: dict[int, tuple[int, int]] = {}  # id -> (expanded values, depth)
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        children = _children(node)
        if leaving:
            on_path.discard(key)
            count = 1 + sum(done[id(c)][0] for c in children)
            depth = 1 + max((done[id(c)][1] for c in children), default=0)
            if count > MAX_NODES:
                raise _Limit(None, None, f"the aliases (*name) here expand to more than "
                             f"{MAX_NODES:,} values, far more than any experiment needs (an "
                             f"alias bomb?); write the values out or use fewer aliases",
                             node.start_mark)
            if depth > MAX_DEPTH:
                raise _Limit(None, None, f"with its aliases expanded the data here is nested "
                             f"more than {MAX_DEPTH} levels deep", node.start_mark)
            done[key] = (count, depth)
            continue
        if key in done:
            continue
        if key in on_path:
            raise _Limit(None, None, "an alias (*name) here refers to the mapping or list that "
                         "contains it; experiment files cannot be recursive", node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in done)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def read_file(path: Path) -> Any:
    """The data in the YAML file at ``path`` (``None`` for an empty document)."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is too large for an experiment file "
                              f"(at most {MAX_BYTES:,}); is it the right file?")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc.strerror or exc}.") from None
    return parse(decode(raw, str(path)), str(path))


def decode(raw: bytes, source: str) -> str:
    """Bytes to text: UTF-8, or UTF-16/32 with a byte-order mark; errors name the byte."""
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), None)
    if encoding is None and b"\x00" in raw:
        offset = raw.index(b"\x00")
        line = raw.count(b"\n", 0, offset) + 1
        raise ConfigError(f"{source}: not a text file: a NUL byte at offset {offset} (line "
                          f"{line}); save the file as UTF-8 (a UTF-16 or UTF-32 file needs a "
                          f"byte-order mark).")
    try:
        return raw.decode(encoding or "utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{source}: not {(encoding or 'utf-8').upper().replace('-SIG', '')} text: byte "
            f"0x{raw[exc.start]:02x} at offset {exc.start} (line {line}, column {column}) "
            f"cannot be decoded ({exc.reason}); save the file as UTF-8.") from None


def parse(text: str, source: str) -> Any:
    """Load one YAML document from ``text``; errors are prefixed with ``source``."""
    loader = None
    try:
        loader = _Loader(text)
        return loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text, exc.position)
        raise YAMLSyntaxError(
            f"{source} (line {line}, column {column}): not valid YAML: the character "
            f"U+{exc.character:04X} is not allowed in YAML text (write control characters as "
            f"escapes inside double quotes, e.g. \"\\t\"). Line {line}: "
            f"{quote(_line(text, line))}.") from None
    except yaml.MarkedYAMLError as exc:
        raise _marked_error(exc, text, source) from None
    except yaml.YAMLError as exc:
        raise YAMLSyntaxError(f"{source}: not valid YAML: {cut(str(exc), 200)}.") from None
    except RecursionError:  # the limits above should make this unreachable; never a traceback
        raise ConfigError(f"{source}: the data is nested too deeply to read.") from None
    finally:
        if loader is not None:
            loader.dispose()


def _marked_error(exc: yaml.MarkedYAMLError, text: str, source: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 0
    column = mark.column + 1 if mark is not None else 0
    problem = exc.problem or exc.context or "unknown problem"
    where = f"{source} (line {line}, column {column})" if mark is not None else source
    if isinstance(exc, (_Limit, _BadValue)):
        return ConfigError(f"{where}: {problem}.")
    plain = _plain_sentence(exc, line)
    parser_words = " ".join(w for w in (exc.context, exc.problem) if w)
    shown = f" Line {line}: {quote(_line(text, line))}." if mark is not None else ""
    cls = ConfigError if isinstance(exc, (ConstructorError, ComposerError)) else YAMLSyntaxError
    return cls(f"{where}: not valid YAML: {plain}.{shown} (parser: {cut(parser_words, 160)})")


def _plain_sentence(exc: yaml.MarkedYAMLError, line: int) -> str:
    """What a parser problem usually means, in words a user can act on (best effort)."""
    problem = exc.problem or ""
    opened = exc.context_mark.line + 1 if exc.context_mark is not None else line
    if problem.startswith("expected <block end>") or "did not find expected key" in problem:
        found = "a list item ('- ') among mapping keys" if "'-'" in problem else "a line"
        return (f"the indentation of line {line} does not match the lines above it ({found} "
                f"that is indented less or more than its siblings); keys of one mapping and items "
                f"of one list must start in the same column")
    if "mapping values are not allowed" in problem:
        return (f"line {line} has a ':' where YAML cannot start a key: the line is indented more "
                f"than the key above it, or a value contains ': ' (quote such a value)")
    if "could not find expected ':'" in problem:
        return (f"line {line} is not a 'key: value' line (a missing ':' or a quote that is not "
                f"closed)")
    if "'\\t'" in problem:
        return f"line {line} is indented with a tab; YAML indents with spaces only"
    if "that cannot start any token" in problem:
        return (f"line {line} holds a character that cannot start a YAML value (quote the "
                f"value)")
    if problem.startswith("expected ',' or '}'"):
        return (f"the {{ ... }} mapping opened on line {opened} is not closed, or its items are "
                f"not separated by commas")
    if problem.startswith("expected ',' or ']'"):
        return (f"the [ ... ] list opened on line {opened} is not closed, or its items are not "
                f"separated by commas")
    if "found unexpected end of stream" in problem:
        return f"the file ends inside the quoted string or collection opened on line {opened}"
    if "undefined alias" in problem:
        return "an alias (*name) refers to no anchor (&name) defined before it"
    if "duplicate anchor" in (exc.context or ""):
        return f"the anchor on line {line} was already defined (each &name once)"
    if "constructor for the tag" in problem:
        return ("a tag (!!python/..., !custom) is not allowed: experiment files hold plain "
                "data only")
    if "unhashable key" in problem:
        return "a key is a list or a mapping; keys must be plain names"
    if "single document" in (exc.context or ""):
        return "the file holds more than one YAML document (a second '---'); keep one"
    if "escape character" in problem:
        return (f"line {line} has a backslash escape that YAML does not know; in a path use "
                f"single quotes or forward slashes")
    return cut(problem, 160)


def _line_column(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def _line(text: str, number: int) -> str:
    """Line ``number`` (1-based) of ``text``, without its newline."""
    start = 0
    for _ in range(number - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]
