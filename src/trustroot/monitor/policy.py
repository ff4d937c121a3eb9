"""What the detectors are told: the context's ``[telemetry]`` rules and lists, and the released firmware.

:class:`MonitorPolicy` is built once per context (and again when a release is published) by the
fleet service and passed into every call of the detectors; it holds no state of its own.

* ``rules``: threshold rules (metric, max and/or min, window). A counter metric (auth_failures,
  connection_attempts, bytes_*, messages_*, update_auth_failures) is **summed** over the window;
  the others (message_size_max, cpu_percent, memory_percent, and the number of destinations or
  listening ports) are judged **point by point** (a window's maximum is above ``max`` exactly when
  one of its points is). A ``min`` over a counter is judged only once the device's history covers the
  whole window. ``firmware_version`` is not a number: rules over it are ignored (the firmware check
  below covers it).
* ``allowed_ports``: when not empty, a listening port outside it alerts.
* ``allowed_destinations``: when not empty, a destination outside it (host names exactly, addresses
  also by CIDR) alerts. When empty it is not enforced: what a device reports are the addresses it
  resolved, which need not match the service URL's host name; the baseline's learned destinations
  judge instead.
* ``released_versions``: when not empty, a firmware version outside it alerts (unexpected firmware);
  ``expected_version`` (the newest release on the device's channel) is reported in the evidence.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from trustroot.context.schema import Telemetry

__all__ = ["SUMMED_METRICS", "AlertKind", "MonitorPolicy", "RuleSpec"]

AlertKind = Literal[
    "port_scan",
    "exfiltration",
    "brute_force",
    "unexpected_firmware",
    "cloned_device",
    "update_auth_failures",
    "rule",
    "baseline",
    "fleet_outlier",
]

#: Metrics that are counts over an interval: a rule sums them over its window.
SUMMED_METRICS: Final = frozenset(
    {
        "auth_failures",
        "connection_attempts",
        "bytes_in",
        "bytes_out",
        "messages_in",
        "messages_out",
        "update_auth_failures",
    }
)
#: The alert kind a context rule over a metric raises (others raise "rule").
_RULE_KINDS: Final[dict[str, AlertKind]] = {
    "auth_failures": "brute_force",
    "update_auth_failures": "update_auth_failures",
}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One threshold rule of the context (``telemetry.rules[index]``)."""

    index: int
    metric: str
    max: float | None
    min: float | None
    window_s: int

    @property
    def summed(self) -> bool:
        return self.metric in SUMMED_METRICS

    @property
    def kind(self) -> AlertKind:
        return _RULE_KINDS.get(self.metric, "rule")

    @property
    def name(self) -> str:
        bounds = []
        if self.max is not None:
            bounds.append(f"max {self.max:g}")
        if self.min is not None:
            bounds.append(f"min {self.min:g}")
        how = f"per {self.window_s} s" if self.summed else "per point"
        return f"telemetry.rules[{self.index}]: {self.metric} {' '.join(bounds)} {how}"


@dataclass(frozen=True)
class MonitorPolicy:
    """See the module docstring."""

    rules: tuple[RuleSpec, ...] = ()
    allowed_ports: frozenset[int] = frozenset()
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[Network, ...] = ()
    released_versions: frozenset[str] = frozenset()
    expected_version: str | None = None
    _cache: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_context(
        cls,
        telemetry: Telemetry,
        *,
        released_versions: Iterable[str] = (),
        expected_version: str | None = None,
    ) -> MonitorPolicy:
        """The policy of a context's ``[telemetry]`` section and the fleet's released versions."""
        rules = tuple(
            RuleSpec(index=i, metric=r.metric, max=r.max, min=r.min, window_s=r.window_s)
            for i, r in enumerate(telemetry.rules)
            if r.metric != "firmware_version"
        )
        hosts: set[str] = set()
        networks: list[Network] = []
        for entry in telemetry.allowed_destinations:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(
            rules=rules,
            allowed_ports=frozenset(telemetry.allowed_ports),
            allowed_hosts=frozenset(hosts),
            allowed_networks=tuple(networks),
            released_versions=frozenset(released_versions),
            expected_version=expected_version,
        )

    @property
    def destinations_enforced(self) -> bool:
        return bool(self.allowed_hosts or self.allowed_networks)

    def destination_allowed(self, destination: str) -> bool:
        """Whether ``destination`` is in the allow-list (always True when none is set)."""
        if not self.destinations_enforced:
            return True
        found = self._cache.get(destination)
        if found is not None:
            return found
        allowed = destination.lower().rstrip(".") in self.allowed_hosts
        if not allowed and self.allowed_networks:
            try:
                address = ipaddress.ip_address(destination.strip("[]").split("/")[0])
            except ValueError:
                address = None
            allowed = address is not None and any(address in net for net in self.allowed_networks)
        if len(self._cache) < 65536:
            self._cache[destination] = allowed
        return allowed
