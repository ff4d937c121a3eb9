"""Any corruption of a context file is refused as a ContextError (never another exception)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from trustroot.context.lint import lint
from trustroot.context.load import locate_keys, parse_context
from trustroot.context.template import default_context_text
from trustroot.errors import ContextError

BASE = default_context_text("Acme Plug", today=date(2026, 11, 22))


@settings(max_examples=300, deadline=None)
@given(
    position=st.integers(min_value=0, max_value=len(BASE)),
    cut=st.integers(min_value=0, max_value=40),
    insert=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
)
def test_edits_are_accepted_or_refused_cleanly(position: int, cut: int, insert: str) -> None:
    text = BASE[:position] + insert + BASE[position + cut :]
    try:
        loaded = parse_context(text, Path("security-context.toml"))
    except ContextError as error:
        assert str(error)
        for key, line, message in error.issues:
            assert 0 <= line <= text.count("\n") + 1
            assert key and message
    else:
        for finding in lint(loaded, today=date(2026, 11, 22)):
            assert finding.provision and finding.fix


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_locator_never_fails(text: str) -> None:
    for path, line in locate_keys(text).items():
        assert path and line >= 1
