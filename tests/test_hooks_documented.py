"""docs/plugins.md documents every hook in rlkit.hookspecs, with its exact signature.

Each hook has a ``### <hook name>`` heading in the "Hook reference" section, followed by a
python block whose first line is the hook's ``def`` line (without a body); that section has no
other ``###`` headings.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from rlkit import hookspecs

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
SECTION = "## Hook reference"


def _hookspecs() -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def _reference_section() -> str:
    text = DOC.read_text()
    assert SECTION in text, f"{DOC} has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1]
    return re.split(r"^## ", section, maxsplit=1, flags=re.MULTILINE)[0]


def _documented() -> dict[str, str]:
    """``{hook name: the first line of the python block under its heading}``."""
    found = {}
    for match in re.finditer(r"^### `?(\w+)`?\s*\n+```python\n(.+)\n", _reference_section(),
                             flags=re.MULTILINE):
        found[match.group(1)] = match.group(2)
    return found


def _doc_signature(line: str) -> tuple[list[tuple[str, str | None]], str | None]:
    tree = ast.parse(line.rstrip(":") + ": ...")
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef), f"not a def line: {line!r}"
    params = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    names = [(p.arg, ast.unparse(p.annotation) if p.annotation else None) for p in params]
    return names, ast.unparse(fn.returns) if fn.returns else None


def _spec_signature(fn: object) -> tuple[list[tuple[str, str | None]], str | None]:
    sig = inspect.signature(fn)  # annotations are strings (from __future__ import annotations)
    params = [(p.name, None if p.annotation is p.empty else str(p.annotation))
              for p in sig.parameters.values()]
    returns = None if sig.return_annotation is sig.empty else str(sig.return_annotation)
    return params, returns


def test_hookspecs_are_found():
    assert len(_hookspecs()) >= 11, "the hookspec module changed shape; update this test"


@pytest.mark.parametrize("name", sorted(_hookspecs()))
def test_hook_is_documented_with_its_signature(name):
    documented = _documented()
    assert name in documented, (
        f"hook {name!r} from rlkit/hookspecs.py is not documented in {DOC}: add a "
        f"'### {name}' heading to the {SECTION!r} section, followed by a python block "
        f"with its def line.")
    doc_params, doc_returns = _doc_signature(documented[name])
    spec_params, spec_returns = _spec_signature(_hookspecs()[name])
    assert [p for p, _ in doc_params] == [p for p, _ in spec_params], (
        f"{DOC}: hook {name!r} is documented with parameters {[p for p, _ in doc_params]}, "
        f"but rlkit/hookspecs.py declares {[p for p, _ in spec_params]}.")
    assert (doc_params, doc_returns) == (spec_params, spec_returns), (
        f"{DOC}: hook {name!r} is documented as {documented[name]!r}; the annotations differ "
        f"from rlkit/hookspecs.py: {spec_params} -> {spec_returns}.")


def test_no_documented_hook_is_stale():
    headings = re.findall(r"^### `?(\w+)`?\s*$", _reference_section(), flags=re.MULTILINE)
    stale = sorted(set(headings) - set(_hookspecs()))
    assert not stale, (f"{DOC} documents hooks that rlkit/hookspecs.py does not declare: "
                       f"{stale}. Remove or rename them.")
