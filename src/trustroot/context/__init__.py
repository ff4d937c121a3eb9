"""The Security Context: schema, loading, the EN 303 645 lint and security.txt.

Names are imported lazily so that ``import trustroot.context.schema`` stays light. The lint and
security.txt functions share their submodules' names: import them from
``trustroot.context.lint`` and ``trustroot.context.security_txt``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustroot.context.lint import Finding
    from trustroot.context.load import (
        CONTEXT_FILE,
        STATE_DIR,
        LoadedContext,
        find_context,
        load_context,
        parse_context,
    )
    from trustroot.context.schema import SecurityContext, json_schema

__all__ = [
    "CONTEXT_FILE",
    "STATE_DIR",
    "Finding",
    "LoadedContext",
    "SecurityContext",
    "find_context",
    "json_schema",
    "load_context",
    "parse_context",
]

_HOME = {
    "Finding": "lint",
    "CONTEXT_FILE": "load",
    "STATE_DIR": "load",
    "LoadedContext": "load",
    "find_context": "load",
    "load_context": "load",
    "parse_context": "load",
    "SecurityContext": "schema",
    "json_schema": "schema",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"trustroot.context.{_HOME[name]}"), name)
    raise AttributeError(f"module 'trustroot.context' has no attribute {name!r}")
