"""The mutants `make mutants` applies stay meaningful as the code moves: each edit's text is in its file exactly
once, and each test a mutant names exists and is named in the Guarantees table (docs/guarantees.md)."""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import ROOT
from tests.mutation_catalogue import MUTANTS, Mutant

GUARANTEES = ROOT / "docs" / "guarantees.md"
HEADER = "| promise | proved by | mutants |"


def _guarantees_table() -> str:
    """The table's rows: the lines from its header to the first line that is not a row."""
    lines = GUARANTEES.read_text().splitlines()
    start = lines.index(HEADER)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def test_the_guarantees_table_names_tests_and_mutants() -> None:
    rows = _guarantees_table().splitlines()[2:]
    assert len(rows) >= 20
    assert all(row.count(" | ") >= 2 and "test_" in row for row in rows)


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
