"""The agent's persistent state: what it still has to report, and what it is in the middle of.

``state.json`` (in the agent's state directory, written atomically with fsync: a kill leaves the
old or the new file, never a mix)::

    {"format": "trustroot.agent-state/1",
     "boot_count": n,
     "install": null | {"version", "security_counter", "release_id"},   an install under way
     "results": [{"version", "security_counter", "status", "error"}],   to report at the next check-in
     "reports": [{"command_id", "kind", "status", "categories_wiped", "error", "time"}],
                                                                        command completions to report
     "done_commands": [ids]}                                            handled (a repeat is ignored)

and ``status.json``: what the device tells its user (online or not, since when, what it runs, the
queue), written atomically whenever it changes; the local status endpoint serves the same JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from trustroot._fsutil import atomic_write, read_bounded
from trustroot.errors import AgentStateError

__all__ = ["MAX_DONE_COMMANDS", "MAX_PENDING", "STATE_FILE", "STATUS_FILE", "AgentState", "write_status"]

STATE_FILE: Final = "state.json"
STATUS_FILE: Final = "status.json"
_FORMAT: Final = "trustroot.agent-state/1"
#: Results and reports kept for the next check-in at most (the check-in takes 16).
MAX_PENDING: Final = 16
#: Command ids remembered as handled.
MAX_DONE_COMMANDS: Final = 64
_MAX_STATE_BYTES: Final = 256 << 10


@dataclass
class AgentState:
    """The state file's content; :meth:`save` writes it atomically."""

    path: Path
    boot_count: int = 0
    install: dict[str, Any] | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    done_commands: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, directory: Path) -> AgentState:
        path = Path(directory) / STATE_FILE
        if not path.exists():
            return cls(path=path)
        raw = read_bounded(path, _MAX_STATE_BYTES, what="agent state")
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AgentStateError(f"{path} is not JSON ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise AgentStateError(f"{path}: not a {_FORMAT} state file")
        try:
            state = cls(
                path=path,
                boot_count=int(doc["boot_count"]),
                install=doc["install"] if isinstance(doc["install"], dict) else None,
                results=[dict(r) for r in doc["results"]][-MAX_PENDING:],
                reports=[dict(r) for r in doc["reports"]][-MAX_PENDING:],
                done_commands=[int(c) for c in doc["done_commands"]][-MAX_DONE_COMMANDS:],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AgentStateError(f"{path}: malformed agent state ({exc})") from exc
        return state

    def save(self) -> None:
        doc = {
            "format": _FORMAT,
            "boot_count": self.boot_count,
            "install": self.install,
            "results": self.results[-MAX_PENDING:],
            "reports": self.reports[-MAX_PENDING:],
            "done_commands": self.done_commands[-MAX_DONE_COMMANDS:],
        }
        atomic_write(self.path, json.dumps(doc, sort_keys=True).encode("utf-8"), mode=0o600)


def write_status(directory: Path, status: dict[str, Any]) -> None:
    """Write ``status.json`` atomically (a temporary file renamed over it: readers never see half a file).

    Not fsync'd: the status is informational and rewritten at every start, and a fleet of simulated
    agents going offline at once would otherwise queue thousands of fsyncs on the event loop.
    """
    path = Path(directory) / STATUS_FILE
    data = (json.dumps(status, indent=2, sort_keys=True) + "\n").encode()
    fd, temporary = tempfile.mkstemp(prefix=f".{STATUS_FILE}.", dir=directory)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
