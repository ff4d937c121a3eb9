"""Drivers of the field's engines, each run as a subprocess from the tools environment.

:data:`ENGINE_NAMES` lists them in the order reports show them. :func:`run_engines` runs the chosen
ones on a tree side by side (threads, each waiting on its own child process with a time limit);
an engine that is missing, has nothing to scan, fails or times out is reported as such in its
:class:`EngineOutcome`, never silently left out.
"""

from __future__ import annotations

import concurrent.futures
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from trustroot.scan.engines._base import (
    Driver,
    EngineFailure,
    EngineOutcome,
    EngineSkipped,
    EngineTimeout,
    RunContext,
    Tree,
)
from trustroot.scan.engines.clang_tidy import Clangtidy
from trustroot.scan.engines.cppcheck import Cppcheck
from trustroot.scan.engines.detect_secrets import DetectSecrets
from trustroot.scan.engines.flawfinder import Flawfinder
from trustroot.scan.engines.semgrep import Semgrep

__all__ = ["ENGINE_NAMES", "EngineOutcome", "RunContext", "Tree", "make_driver", "run_engines"]

_DRIVERS: Final[dict[str, Callable[[], Driver]]] = {
    "cppcheck": Cppcheck,
    "clang-tidy": Clangtidy,
    "flawfinder": Flawfinder,
    "semgrep": Semgrep,
    "detect-secrets": DetectSecrets,
}
ENGINE_NAMES: Final = tuple(_DRIVERS)


def make_driver(name: str) -> Driver:
    return _DRIVERS[name]()


def _run_one(name: str, tree: Tree, ctx: RunContext) -> EngineOutcome:
    driver = make_driver(name)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"trustroot-{name}-", dir=ctx.scratch) as scratch:
        own = RunContext(ctx.tools_dir, Path(scratch), ctx.limits, ctx.misra, ctx.jobs)
        try:
            findings = driver.run(tree, own)
        except EngineSkipped as why:
            return EngineOutcome(name, "skipped", str(why), time.monotonic() - started)
        except EngineTimeout as why:
            return EngineOutcome(name, "timeout", str(why), time.monotonic() - started)
        except EngineFailure as why:
            return EngineOutcome(name, "failed", str(why), time.monotonic() - started)
    detail = getattr(driver, "detail", None)
    note = detail() if callable(detail) else ""
    return EngineOutcome(name, "ok", str(note), time.monotonic() - started, findings)


def run_engines(
    names: Sequence[str],
    tree: Tree,
    ctx: RunContext,
    on_done: Callable[[EngineOutcome], None] | None = None,
) -> list[EngineOutcome]:
    """Run the engines ``names`` on ``tree`` in parallel; one outcome each, in the order of ``names``."""
    outcomes: dict[str, EngineOutcome] = {}
    if not names:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="engine") as pool:
        futures = {pool.submit(_run_one, name, tree, ctx): name for name in names}
        for future in concurrent.futures.as_completed(futures):
            outcome = future.result()
            outcomes[futures[future]] = outcome
            if on_done is not None:
                on_done(outcome)
    return [outcomes[name] for name in names]
