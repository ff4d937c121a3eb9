"""Rendering report.json into report.html, report.md and psti-statement.html (Jinja2, standalone).

The HTML pages need no network: CSS is inline, the trend chart is inline SVG, and a
Content-Security-Policy of ``default-src 'none'`` forbids any fetch a browser might try.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Final

from jinja2 import Environment, PackageLoader, select_autoescape

from trustroot.compliance.verdicts import Verdict

__all__ = ["LABELS", "PSTI_PROVISIONS", "psti_blockers", "render_html", "render_markdown", "render_psti"]

LABELS: Final = {
    "pass": "pass",
    "fail": "fail",
    "not_applicable": "N/A",
    "declared": "declared",
    "inconclusive": "inconclusive",
}
_SUPPORT: Final = {"pass": "Y", "declared": "Y", "fail": "N", "not_applicable": "N/A", "inconclusive": "?"}
_COLORS: Final = {"pass": "#1b7f3b", "fail": "#c62828", "inconclusive": "#d08a00", "declared": "#3559b7"}
#: Provisions behind the three PSTI Schedule 1 requirements (passwords, reporting, support period).
PSTI_PROVISIONS: Final = ("5.1-1", "5.1-2", "5.2-1", "5.3-13")


def _md(text: object) -> str:
    """Text safe in a Markdown table cell: no raw HTML, no cell break, one line."""
    return (
        str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("\n", " ")
    )


def _env(autoescape: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("trustroot.compliance", "templates"),
        # Markdown and CSS are not HTML: escaping them would corrupt them. Every HTML page escapes.
        autoescape=select_autoescape(["html", "j2"]) if autoescape else False,  # noqa: S701
        trim_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters["md"] = _md
    return env


def _css() -> str:
    return _env(False).get_template("_style.css.j2").render()


def _common(report: dict[str, Any], changes: list[dict[str, str]], compare_name: str) -> dict[str, Any]:
    return {
        "r": report,
        "verdicts": [v.value for v in Verdict],
        "labels": LABELS,
        "support": _SUPPORT,
        "changes": changes,
        "compare_name": compare_name,
    }


def _trend(report: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    runs = [*report["trends"], {"generated_at": report["generated_at"], "verdicts": report["summary"]["verdicts"]}]
    if len(runs) < 2:
        return [], []
    total = max(1, *(sum(run["verdicts"].values()) for run in runs))
    step = 680 / (len(runs) - 1)
    last = len(runs) - 1
    points = [
        {
            "x": round(20 + i * step, 1),
            "label": run["generated_at"][5:16].replace("T", " "),
            "anchor": "start" if i == 0 else ("end" if i == last else "middle"),
        }
        for i, run in enumerate(runs)
    ]
    series = []
    for verdict, color in _COLORS.items():
        coords = " ".join(
            f"{p['x']},{round(150 - 140 * run['verdicts'].get(verdict, 0) / total, 1)}"
            for p, run in zip(points, runs, strict=True)
        )
        series.append({"color": color, "points": coords})
    shown = points[:: max(1, len(points) // 8)]
    if shown[-1] is not points[-1]:
        shown.append(points[-1])
    return shown, series


def render_html(report: dict[str, Any], *, changes: Sequence[dict[str, str]] = (), compare_name: str = "") -> str:
    """The standalone HTML report."""
    points, series = _trend(report)
    context = _common(report, list(changes), compare_name)
    context.update(css=_css(), trend_points=points, trend_series=series)
    return _env(True).get_template("report.html.j2").render(**context)


def render_markdown(report: dict[str, Any], *, changes: Sequence[dict[str, str]] = (), compare_name: str = "") -> str:
    """The Markdown report."""
    return _env(False).get_template("report.md.j2").render(**_common(report, list(changes), compare_name))


def psti_blockers(report: dict[str, Any]) -> list[str]:
    """Why the statement cannot be signed yet: the gate's blockers and any PSTI provision not met."""
    out = []
    by_id = {p["id"]: p for p in report["provisions"]}
    for pid in PSTI_PROVISIONS:
        p = by_id.get(pid)
        if p is not None and p["verdict"] not in ("pass", "declared", "not_applicable"):
            out.append(f"{pid} is {LABELS[p['verdict']]}")
    blocking = [b for b in report["summary"]["gate"]["blocking"] if b not in PSTI_PROVISIONS]
    if blocking:
        out.append(f"mandatory provisions not met: {', '.join(blocking)}")
    return out


def render_psti(
    report: dict[str, Any],
    *,
    batches: list[str],
    contacts: list[str],
    policy: str | None,
    signatory: str,
    place: str,
    today: date,
) -> str:
    """The UK PSTI statement of compliance, as HTML ready to print or turn into PDF."""
    blockers = psti_blockers(report)
    end = report["product"]["support_period_end"]
    support_days = (date.fromisoformat(end) - today).days if end else None
    context = {
        "r": report,
        "css": _css(),
        "ready": not blockers,
        "blockers": blockers,
        "batches": batches,
        "signatory": signatory,
        "place": place,
        "date": today.isoformat(),
        "support_days": support_days,
        "contacts": contacts,
        "policy": policy,
        "psti_provisions": PSTI_PROVISIONS,
    }
    return _env(True).get_template("psti-statement.html.j2").render(**context)
