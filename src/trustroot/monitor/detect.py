"""Scoring one device's batch of points: rules, baselines and attack signatures in, findings out.

:class:`DeviceMonitor` is the state of one device (its :class:`~trustroot.monitor.baseline.Baseline`,
the recent values its window rules need, the highest ``seq`` and the addresses it reported from,
and when each kind of finding last fired). :meth:`DeviceMonitor.observe` judges a batch::

    points (new ones; the store dropped exact duplicates)       features (vectorised per batch)
      ├─ cloned_device        the same seq with other content (``conflicts``), seq far below the
      │                       highest seen, or the stream flapping between source addresses
      ├─ unexpected_firmware  a version the fleet never released
      ├─ context rules        thresholds over windows -> brute_force (auth_failures),
      │                       update_auth_failures, or rule; allowed ports / destinations
      ├─ baseline             excessive values (see baseline.py): connection_attempts or
      │                       destinations -> port_scan; bytes_out -> exfiltration; auth_failures
      │                       -> brute_force; update_auth_failures; anything else -> baseline
      ├─ warm-up signatures   before the baseline judges: obvious scans (PORTSCAN_RATE, PORTSCAN_DESTS)
      └─ learn                rows that raised nothing teach the baseline

At most one finding per kind and batch (named by the context's rule if one matched, else by the
strongest signal; the others listed in its evidence; kinds ``rule`` and ``baseline``: one per rule),
and none for one that fired less than :data:`COOLDOWN_S` seconds (of the device's own clock) before.
Nothing here reads a clock, a file or the store: time is the points' time.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np

from trustroot.monitor.baseline import Baseline
from trustroot.monitor.features import FEATURES, Matrix, column, feature_matrix, raw_matrix, times
from trustroot.monitor.points import TelemetryError, TelemetryPoint
from trustroot.monitor.policy import AlertKind, MonitorPolicy, RuleSpec

__all__ = [
    "CLONE_MIN_SWITCHES",
    "CLONE_WINDOW_S",
    "COOLDOWN_S",
    "PORTSCAN_DESTS",
    "PORTSCAN_RATE",
    "SEQ_TOLERANCE",
    "SEVERITY",
    "Conflict",
    "DeviceMonitor",
    "Finding",
    "point_canonical",
    "point_digest",
]

Severity = Literal["info", "warning", "critical"]

#: Seconds (device time) during which the same kind (rule, for kinds rule and baseline) does not fire again.
COOLDOWN_S: Final = 300.0
#: A new point whose seq is this far below the highest seen comes from another stream (a clone).
SEQ_TOLERANCE: Final = 64
#: Source address changes within CLONE_WINDOW_S seconds that mark two hosts sharing one identity.
CLONE_MIN_SWITCHES: Final = 3
CLONE_WINDOW_S: Final = 600.0
#: Before the baseline is warm: connection attempts per minute, or destinations in one point, of a scan.
PORTSCAN_RATE: Final = 600.0
PORTSCAN_DESTS: Final = 32
#: Least auth failures in one point for a baseline excess to count as brute force.
BRUTE_MIN_FAILURES: Final = 5
#: A row whose bytes_out score reaches this, towards a new or disallowed destination, is exfiltration.
EXFIL_UNKNOWN_SCORE: Final = 0.25
#: Bounds of the state kept per device.
MAX_WINDOW_ENTRIES: Final = 1024
MAX_SOURCES: Final = 16
MAX_EVIDENCE_DESTINATIONS: Final = 16

#: Severity of each kind of finding.
SEVERITY: Final[Mapping[AlertKind, Severity]] = {
    "port_scan": "critical",
    "exfiltration": "critical",
    "brute_force": "warning",
    "unexpected_firmware": "critical",
    "cloned_device": "critical",
    "update_auth_failures": "warning",
    "rule": "warning",
    "baseline": "info",
    "fleet_outlier": "critical",
}
_COLUMN_KINDS: Final[dict[int, AlertKind]] = {
    column("connection_attempts"): "port_scan",
    column("destinations"): "port_scan",
    column("bytes_out"): "exfiltration",
    column("auth_failures"): "brute_force",
    column("update_auth_failures"): "update_auth_failures",
}
#: Columns whose excess alerts (CPU and memory after them are learned and shown, but judged by rules only:
#: a busy device legitimately runs at 100 %).
_ALERTING_COLUMNS: Final = column("cpu_percent")
_STATE_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Conflict:
    """A point whose seq the store already holds with other content (``stored_digest``)."""

    point: TelemetryPoint
    stored_digest: str
    received_digest: str


@dataclass(frozen=True, slots=True)
class Finding:
    """One alert-worthy observation of one device (or of the fleet, ``device`` None)."""

    device: str | None
    kind: AlertKind
    severity: Severity
    time: float
    score: float
    rule: str
    evidence: dict[str, object]


@dataclass(slots=True)
class _Candidate:
    kind: AlertKind
    rule: str
    row: int
    score: float
    detail: dict[str, object] = field(default_factory=dict)


class DeviceMonitor:
    """The monitoring state of one device (see the module docstring)."""

    __slots__ = ("baseline", "device", "first_time", "last_fired", "max_seq", "sources", "windows")

    def __init__(self, device: str) -> None:
        self.device = device
        self.baseline = Baseline()
        self.windows: dict[int, list[tuple[float, float]]] = {}
        self.first_time: float | None = None
        self.max_seq = -1
        self.sources: list[tuple[float, str]] = []
        self.last_fired: dict[str, float] = {}

    # ------------------------------------------------------------------------------------ observe

    def observe(
        self,
        points: Sequence[TelemetryPoint],
        policy: MonitorPolicy,
        *,
        source: str | None = None,
        conflicts: Sequence[Conflict] = (),
    ) -> list[Finding]:
        """Judge a batch of this device's new points, learn from it, and return the findings."""
        pts = sorted(points, key=lambda p: (p.time, p.seq))
        if not pts and not conflicts:
            return []
        raw = raw_matrix(pts)
        stamps, intervals = times(pts)
        features = feature_matrix(raw, intervals)
        scores = self.baseline.scores(features)
        found: list[_Candidate] = []
        self._clone(pts, stamps, source, conflicts, found)
        self._firmware(pts, policy, found)
        self._rules(pts, raw, stamps, policy, found)
        self._lists(pts, policy, scores, found)
        self._baseline(raw, features, scores, found)
        flagged = np.zeros(len(pts), dtype=bool)
        for candidate in found:
            if candidate.row >= 0:
                flagged[candidate.row] = True
        self._learn(pts, raw, stamps, features, flagged)
        last = float(stamps[-1]) if pts else conflicts[-1].point.time.timestamp()
        return self._fire(found, pts, (features, scores), last)

    def _clone(
        self,
        pts: Sequence[TelemetryPoint],
        stamps: Matrix,
        source: str | None,
        conflicts: Sequence[Conflict],
        found: list[_Candidate],
    ) -> None:
        if conflicts:
            found.append(
                _Candidate(
                    "cloned_device",
                    "seq reused with other content",
                    -1,
                    float(len(conflicts)),
                    {
                        "conflicts": [
                            {"seq": c.point.seq, "stored_digest": c.stored_digest, "received_digest": c.received_digest}
                            for c in conflicts[:8]
                        ],
                        "conflicting_point": conflicts[0].point.to_json(),
                    },
                )
            )
        if self.max_seq >= 0:
            behind = [i for i, p in enumerate(pts) if p.seq + SEQ_TOLERANCE < self.max_seq]
            if behind:
                row = behind[0]
                found.append(
                    _Candidate(
                        "cloned_device",
                        "seq went backwards",
                        row,
                        float(self.max_seq - pts[row].seq) / SEQ_TOLERANCE,
                        {"highest_seq_seen": self.max_seq, "received_seq": pts[row].seq},
                    )
                )
        if source is not None and len(pts):
            now = float(stamps[-1])
            if not self.sources or self.sources[-1][1] != source:
                self.sources.append((now, source))
                del self.sources[:-MAX_SOURCES]
            recent = [(t, s) for t, s in self.sources if now - t <= CLONE_WINDOW_S]
            if len({s for _, s in recent}) >= 2 and len(recent) - 1 >= CLONE_MIN_SWITCHES:
                found.append(
                    _Candidate(
                        "cloned_device",
                        "one identity streaming from several addresses",
                        len(pts) - 1,
                        (len(recent) - 1) / CLONE_MIN_SWITCHES,
                        {"sources": [s for _, s in recent], "window_s": CLONE_WINDOW_S},
                    )
                )

    @staticmethod
    def _firmware(pts: Sequence[TelemetryPoint], policy: MonitorPolicy, found: list[_Candidate]) -> None:
        if not policy.released_versions:
            return
        for row, point in enumerate(pts):
            if point.firmware_version not in policy.released_versions:
                found.append(
                    _Candidate(
                        "unexpected_firmware",
                        "firmware version not released",
                        row,
                        1.0,
                        {
                            "firmware_version": point.firmware_version,
                            "expected_version": policy.expected_version,
                            "released_versions": sorted(policy.released_versions)[:20],
                        },
                    )
                )
                return

    def _rules(
        self,
        pts: Sequence[TelemetryPoint],
        raw: Matrix,
        stamps: Matrix,
        policy: MonitorPolicy,
        found: list[_Candidate],
    ) -> None:
        for rule in policy.rules:
            values = raw[:, column(rule.metric)] if rule.metric in FEATURES else np.zeros(len(pts))
            if rule.summed:
                totals = self._window_sums(rule, values, stamps)
                self._remember(rule, values, stamps)
            else:
                totals = values
            hit = np.zeros(len(pts), dtype=bool)
            if rule.max is not None:
                hit |= totals > rule.max
            if rule.min is not None:
                covered = (stamps - (self.first_time if self.first_time is not None else stamps[0])) >= (
                    rule.window_s if rule.summed else 0
                )
                hit |= covered & (totals < rule.min)
            rows = np.flatnonzero(hit)
            if len(rows):
                row = int(rows[np.argmax(np.abs(totals[rows]))])
                bound = rule.max if rule.max is not None and totals[row] > rule.max else rule.min
                score = float(totals[row]) / bound if bound else float(totals[row])
                found.append(
                    _Candidate(
                        rule.kind,
                        rule.name,
                        row,
                        score,
                        {"metric": rule.metric, "value": float(totals[row]), "window_s": rule.window_s},
                    )
                )

    def _window_sums(self, rule: RuleSpec, values: Matrix, stamps: Matrix) -> Matrix:
        prior = self.windows.get(rule.index, [])
        if not prior and not values.any():
            return values
        prior_t = np.array([t for t, _ in prior], dtype=np.float64)
        prior_v = np.array([v for _, v in prior], dtype=np.float64)
        all_t = np.concatenate([prior_t, stamps])
        all_v = np.concatenate([prior_v, values])
        order = np.argsort(all_t, kind="stable")
        sorted_t, sums = all_t[order], np.cumsum(all_v[order])
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        mine = position[len(prior) :]
        start = np.searchsorted(sorted_t, sorted_t[mine] - rule.window_s, side="right")
        before = np.where(start > 0, sums[np.maximum(start - 1, 0)], 0.0)
        return np.asarray(sums[mine] - before, dtype=np.float64)

    def _remember(self, rule: RuleSpec, values: Matrix, stamps: Matrix) -> None:
        kept = self.windows.get(rule.index, [])
        nonzero = np.flatnonzero(values)
        if not len(nonzero) and not kept:
            return
        kept = kept + [(float(stamps[i]), float(values[i])) for i in nonzero]
        newest = max(t for t, _ in kept)
        kept = [(t, v) for t, v in kept if t > newest - rule.window_s][-MAX_WINDOW_ENTRIES:]
        if kept:
            self.windows[rule.index] = kept
        else:
            self.windows.pop(rule.index, None)

    def _lists(
        self, pts: Sequence[TelemetryPoint], policy: MonitorPolicy, scores: Matrix, found: list[_Candidate]
    ) -> None:
        if policy.allowed_ports:
            for row, point in enumerate(pts):
                extra = [port for port in point.listening_ports if port not in policy.allowed_ports]
                if extra:
                    found.append(
                        _Candidate("rule", "telemetry.allowed_ports", row, float(len(extra)), {"ports": extra})
                    )
                    break
        bytes_out = column("bytes_out")
        if not policy.destinations_enforced and (
            not self.baseline.warm or not {d for p in pts for d in p.destinations} - self.baseline.destinations.keys()
        ):
            return
        for row, point in enumerate(pts):
            if policy.destinations_enforced:
                outside = [d for d in point.destinations if not policy.destination_allowed(d)]
                rule = "telemetry.allowed_destinations"
            else:
                outside = self.baseline.unknown(point.destinations)
                rule = "destination not seen before, with more data out"
            if not outside:
                continue
            heavy = scores[row, bytes_out] >= EXFIL_UNKNOWN_SCORE
            if heavy or policy.destinations_enforced:
                found.append(
                    _Candidate(
                        "exfiltration" if heavy else "rule",
                        rule,
                        row,
                        max(float(scores[row, bytes_out]), 1.0),
                        {"destinations": outside[:MAX_EVIDENCE_DESTINATIONS], "bytes_out": point.bytes_out},
                    )
                )
                return

    def _baseline(self, raw: Matrix, features: Matrix, scores: Matrix, found: list[_Candidate]) -> None:
        if self.baseline.warm:
            rows, cols = np.nonzero(scores[:, :_ALERTING_COLUMNS] >= 1.0)
            best: dict[int, int] = {}
            for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
                if col == column("auth_failures") and raw[row, col] < BRUTE_MIN_FAILURES:
                    continue
                if col not in best or scores[row, col] > scores[best[col], col]:
                    best[col] = row
            for col, row in best.items():
                kind = _COLUMN_KINDS.get(col, "baseline")
                found.append(_Candidate(kind, f"baseline:{FEATURES[col]}", row, float(scores[row, col])))
            return
        rate = np.expm1(features[:, column("connection_attempts")])
        dests = raw[:, column("destinations")]
        scan = np.flatnonzero((rate >= PORTSCAN_RATE) | (dests >= PORTSCAN_DESTS))
        if len(scan):
            row = int(scan[np.argmax(rate[scan])])
            score = max(rate[row] / PORTSCAN_RATE, dests[row] / PORTSCAN_DESTS)
            found.append(_Candidate("port_scan", "scan signature (warm-up)", row, float(score)))

    def _learn(
        self,
        pts: Sequence[TelemetryPoint],
        raw: Matrix,
        stamps: Matrix,
        features: Matrix,
        flagged: np.ndarray,
    ) -> None:
        if not len(pts):
            return
        calm = ~flagged
        self.baseline.learn(features[calm])
        seen = {d for row in np.flatnonzero(calm).tolist() for d in pts[row].destinations}
        if seen - self.baseline.destinations.keys():
            self.baseline.learn_destinations(sorted(seen))
        self.max_seq = max(self.max_seq, *(p.seq for p in pts))
        first = float(stamps[0])
        self.first_time = first if self.first_time is None else min(self.first_time, first)

    def _fire(
        self,
        found: list[_Candidate],
        pts: Sequence[TelemetryPoint],
        judged: tuple[Matrix, Matrix],
        last: float,
    ) -> list[Finding]:
        features, scores = judged
        by_kind: dict[str, list[_Candidate]] = {}
        for candidate in found:
            generic = candidate.kind in {"rule", "baseline"}  # each rule its own alert
            by_kind.setdefault(f"{candidate.kind}|{candidate.rule}" if generic else candidate.kind, []).append(
                candidate
            )
        means, stds = self.baseline.mean_std()
        findings = []
        for key, group in by_kind.items():
            # The context's own rule names the finding when one matched; else the strongest signal.
            candidate = max(group, key=lambda c: (c.rule.startswith("telemetry."), c.score))
            rule = candidate.rule
            moment = float(pts[candidate.row].time.timestamp()) if candidate.row >= 0 else last
            fired = self.last_fired.get(key)
            if fired is not None and 0 <= moment - fired < COOLDOWN_S:
                continue
            self.last_fired[key] = moment
            evidence: dict[str, object] = dict(candidate.detail)
            others = sorted({c.rule for c in group} - {rule})
            if others:
                evidence["also_matched"] = others
            if candidate.row >= 0:
                row = candidate.row
                evidence["point"] = pts[row].to_json()
                evidence["features"] = {name: _round(features[row, i]) for i, name in enumerate(FEATURES)}
                evidence["scores"] = {name: _round(scores[row, i]) for i, name in enumerate(FEATURES)}
                evidence["baseline"] = {
                    "points": self.baseline.count,
                    "mean": {name: _round(means[i]) for i, name in enumerate(FEATURES)},
                    "std": {name: _round(stds[i]) for i, name in enumerate(FEATURES)},
                }
            findings.append(
                Finding(
                    device=self.device,
                    kind=candidate.kind,
                    severity=SEVERITY[candidate.kind],
                    time=moment,
                    score=_round(candidate.score),
                    rule=rule,
                    evidence=evidence,
                )
            )
        if len(self.last_fired) > 64:
            newest = sorted(self.last_fired.items(), key=lambda item: item[1])[-64:]
            self.last_fired = dict(newest)
        return findings

    # -------------------------------------------------------------------------------------- state

    def to_state(self) -> dict[str, object]:
        """JSON-ready state (see :meth:`from_state`)."""
        return {
            "v": _STATE_VERSION,
            "device": self.device,
            "baseline": self.baseline.to_state(),
            "windows": {str(k): [[t, v] for t, v in entries] for k, entries in self.windows.items()},
            "first_time": self.first_time,
            "max_seq": self.max_seq,
            "sources": [[t, s] for t, s in self.sources],
            "last_fired": dict(self.last_fired),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> DeviceMonitor:
        """Rebuild a monitor from :meth:`to_state`; :class:`TelemetryError` if the state is malformed."""
        try:
            if state.get("v") != _STATE_VERSION:
                raise TelemetryError("monitor state: unknown version")
            device = state["device"]
            baseline = state["baseline"]
            windows = state["windows"]
            sources = state["sources"]
            fired = state["last_fired"]
            first = state["first_time"]
            max_seq = state["max_seq"]
            if not (
                isinstance(device, str)
                and isinstance(baseline, Mapping)
                and isinstance(windows, Mapping)
                and isinstance(sources, list)
                and isinstance(fired, Mapping)
                and type(max_seq) is int
                and (first is None or isinstance(first, int | float))
            ):
                raise TelemetryError("monitor state: a field has the wrong type")
            monitor = cls(device)
            monitor.baseline = Baseline.from_state(baseline)
            monitor.windows = {
                int(k): [(_finite(t), _finite(v)) for t, v in entries][-MAX_WINDOW_ENTRIES:]
                for k, entries in windows.items()
            }
            monitor.first_time = None if first is None else _finite(first)
            monitor.max_seq = max_seq
            monitor.sources = [(_finite(t), str(s)[:64]) for t, s in sources][-MAX_SOURCES:]
            monitor.last_fired = {str(k)[:200]: _finite(v) for k, v in list(fired.items())[-64:]}
        except (KeyError, TypeError, ValueError) as exc:
            raise TelemetryError(f"monitor state: malformed ({type(exc).__name__})") from exc
        return monitor


def _finite(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("not a finite number")
    return float(value)


def _round(value: float) -> float:
    number = float(value)
    return round(number, 4) if math.isfinite(number) else 0.0


def point_canonical(point: TelemetryPoint) -> str:
    """The point's content as compact JSON, fields in wire order (what the store keeps and digests)."""
    return json.dumps(
        {
            "time": point.time.isoformat(),
            "interval_s": point.interval_s,
            "auth_failures": point.auth_failures,
            "connection_attempts": point.connection_attempts,
            "bytes_in": point.bytes_in,
            "bytes_out": point.bytes_out,
            "messages_in": point.messages_in,
            "messages_out": point.messages_out,
            "message_size_max": point.message_size_max,
            "update_auth_failures": point.update_auth_failures,
            "listening_ports": point.listening_ports,
            "destinations": point.destinations,
            "firmware_version": point.firmware_version,
            "cpu_percent": point.cpu_percent,
            "memory_percent": point.memory_percent,
            "seq": point.seq,
        },
        separators=(",", ":"),
    )


def point_digest(point: TelemetryPoint, canonical: str | None = None) -> str:
    """A short digest of a point's content (128 bits of SHA-256 over :func:`point_canonical`)."""
    text = point_canonical(point) if canonical is None else canonical
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
