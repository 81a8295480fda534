"""The mutants `make mutants` applies stay meaningful as the code moves: each edit's text is in its file exactly
once, and each test a mutant names exists and is named in the Guarantees table."""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import ROOT
from tests.mutation_catalogue import MUTANTS, Mutant

GUARANTEES = ROOT / "README.md"


def _guarantees_table() -> str:
    text = GUARANTEES.read_text()
    start = text.index("## Guarantees")
    return text[start:text.index("\n## ", start + 1)]


def _test_functions(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_names_are_unique() -> None:
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_every_edit_applies_exactly_once(mutant: Mutant) -> None:
    for edit in mutant.edits:
        assert (ROOT / edit.path).read_text().count(edit.before) == 1, edit.path
        assert edit.before != edit.after


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_every_named_test_exists_and_is_named_by_the_guarantees(mutant: Mutant) -> None:
    table = _guarantees_table()
    for node in mutant.tests:
        path, _, name = node.partition("::")
        function = re.sub(r"\[.*\]$", "", name)
        assert function in _test_functions(path), node
        assert f"{path.rsplit('/', 1)[-1]}::{function}" in table or (not function and path.rsplit("/", 1)[-1] in table), node
