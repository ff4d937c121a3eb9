"""What trustroot knows about a product, as EN 303 645 features, conditions and ICS rows.

Pure functions over the validated Security Context (and, for the update keys, nothing else): the
V3.1.3 feature letters and conditions, the V2.1.1 conditions, and the ICS rows trustroot can
justify itself. A fact trustroot cannot know (a debug port, a consent flow, a sensor) is ``None``,
and a row that rests on one stays pending for a person to decide or declare.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from trustroot.compliance.catalogue import Catalogue, Edition, Provision
from trustroot.context.schema import SecurityContext

__all__ = ["Fact", "Row", "derive_conditions", "derive_features", "derive_rows", "implied_features"]


@dataclass(frozen=True)
class Fact:
    """Whether a feature is present or a condition holds (None: unknown to trustroot), and why."""

    value: bool | None
    basis: str


@dataclass(frozen=True)
class Row:
    """An ICS row trustroot derived: support (None = pending), justification, N/A reasons."""

    support: str | None
    justification: str
    because: tuple[str, ...] = ()
    evidence: tuple[str, ...] = field(default=())


def derive_features(ctx: SecurityContext) -> dict[str, Fact]:
    """The V3.1.3 feature letters, as far as the context tells them."""
    pw = ctx.identity.password
    personal = ctx.data.personal
    in_service = [c for c in personal if c.in_service]
    unknown = "not described by the Security Context: set it here"
    signature = ctx.boot.signature
    return {
        "a": Fact(pw.mode != "none", f"identity.password.mode = {pw.mode!r}"),
        "b": Fact(pw.mode in ("derived", "random"), f"identity.password.mode = {pw.mode!r} (pre-installed per unit)"),
        "c": Fact(True, "devices authenticate with their identity certificate (mutual TLS) or password"),
        "d": Fact(pw.mode != "none", f"the device password (mode {pw.mode!r}) authenticates users"),
        "e": Fact(None if pw.mode != "none" else False, unknown if pw.mode != "none" else "no password login"),
        "f": Fact(True, "firmware is delivered as signed MCUboot images: no component is immutable by design"),
        "g": Fact(True, "signed MCUboot images distributed over TUF by the fleet service"),
        "h": Fact(ctx.update.automatic, f"update.automatic = {str(ctx.update.automatic).lower()}"),
        "i": Fact(None, unknown),
        "j": Fact(True, f"updates are fetched over the network from {ctx.communication.service_url}"),
        "k": Fact(True, "the device keeps its identity key and certificate in persistent storage"),
        "l": Fact(True, "each device carries a unique identity certificate (IEEE 802.1AR IDevID style)"),
        "m": Fact(True, "the device identity key protects communication with the fleet service"),
        "n": Fact(None, unknown),
        "o": Fact(None, unknown),
        "p": Fact(None, unknown),
        "q": Fact(None, unknown),
        "r": Fact(None, unknown),
        "s": Fact(signature != "none", f"boot.signature = {signature!r} (MCUboot verifies images at boot)"),
        "t": Fact(bool(in_service), f"{len(in_service)} personal data categories are stored by the service"),
        "u": Fact(
            any(c.sensitive for c in in_service),
            f"{sum(1 for c in in_service if c.sensitive)} sensitive categories are stored by the service",
        ),
        "v": Fact(None, unknown),
        "w": Fact(ctx.telemetry.enabled, f"telemetry.enabled = {str(ctx.telemetry.enabled).lower()}"),
        "x": Fact(bool(in_service), f"{len(in_service)} personal data categories have in_service = true"),
        "y": Fact(None, unknown),
        "z": Fact(bool(personal), f"{len(personal)} personal data categories in [data]"),
        "aa": Fact(None, unknown),
    }


#: A feature that is absent makes these absent too (no debug interface: no physical debug port).
_ABSENT_IMPLIES: Final[Mapping[str, tuple[str, ...]]] = {
    "a": ("b",),
    "q": ("r",),
    "t": ("u",),
    "z": ("t", "u", "x", "y", "aa"),
}


def implied_features(derived: Mapping[str, Fact], decided: Mapping[str, bool | None]) -> dict[str, Fact]:
    """``derived`` with unknown features settled by what a person ``decided`` elsewhere.

    Only unknown features change: if (q) is absent, an unknown (r) is absent too.
    """
    out = dict(derived)
    for parent, children in _ABSENT_IMPLIES.items():
        value = decided.get(parent)
        if value is None:
            value = out[parent].value
        if value is not False:
            continue
        for child in children:
            if decided.get(child) is None and out[child].value is None:
                out[child] = Fact(False, f"implied: feature ({parent}) is absent")
    return out


_NOT_CONSTRAINED = "the device runs TLS, certificate authentication and verified updates: not a constrained device"


def derive_conditions(ctx: SecurityContext, edition: Edition) -> dict[int, Fact]:
    """The conditions of ``edition``'s Table B.1, as far as the context tells them."""
    f = derive_features(ctx)
    if edition == "3.1.3":
        return {
            3: Fact(False, "every software component is updateable (signed MCUboot images)"),
            12: Fact(True, "an update mechanism is implemented (MCUboot + TUF)"),
            14: Fact(True, _NOT_CONSTRAINED),
            15: Fact(True, _NOT_CONSTRAINED),
            16: Fact(True, "devices hold identity keys and the product has a root of trust"),
        }
    notify = f["h"].value or f["i"].value
    return {
        1: Fact(f["a"].value, f["a"].basis),
        2: Fact(f["b"].value, f["b"].basis),
        3: Fact(False, "every software component is updateable (signed MCUboot images)"),
        4: Fact(False, _NOT_CONSTRAINED),
        5: Fact(True, _NOT_CONSTRAINED),
        6: Fact(f["w"].value, f["w"].basis),
        7: Fact(None, "not described by the Security Context: set it here"),
        8: Fact(f["d"].value, f["d"].basis),
        9: Fact(True if notify else None, f["h"].basis),
        10: Fact(f["l"].value, f["l"].basis),
        11: Fact(f["j"].value, f["j"].basis),
        12: Fact(True, "an update mechanism is implemented (MCUboot + TUF)"),
        13: Fact(None, "not described by the Security Context: set it here"),
    }


# --- rows trustroot can justify (V3.1.3 ids) -------------------------------------------------------

Rule = Callable[[SecurityContext], Row | None]
_RULES: dict[str, Rule] = {}


def _rule(*ids: str) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        for pid in ids:
            _RULES[pid] = function
        return function

    return register


def _yn(ok: bool, yes: str, no: str) -> Row:
    return Row("Y", yes) if ok else Row("N", no)


@_rule("5.1-1")
def _unique_passwords(ctx: SecurityContext) -> Row:
    pw = ctx.identity.password
    return _yn(
        pw.mode != "shared",
        f"each unit gets its own password (identity.password.mode = {pw.mode!r}); "
        "trustroot provision refuses a shared one",
        "identity.password.mode = 'shared': every unit has the same password",
    )


@_rule("5.1-2")
def _password_generation(ctx: SecurityContext) -> Row:
    pw = ctx.identity.password
    how = "HMAC-SHA256 of a factory secret kept in the key store and the serial" if pw.mode == "derived" else "drawn"
    return _yn(
        pw.entropy_bits >= max(pw.min_entropy_bits, 40),
        f"{how}; {pw.length} {pw.alphabet} characters = {pw.entropy_bits:.0f} bits; no counter, no public data",
        f"generated passwords carry only {pw.entropy_bits:.0f} bits",
    )


@_rule("5.1-3")
def _auth_crypto(ctx: SecurityContext) -> Row:
    c = ctx.communication
    return _yn(
        c.mutual_tls and c.min_tls_version in ("1.2", "1.3"),
        f"devices authenticate with {ctx.identity.certificate.algorithm} identity certificates over TLS "
        f">= {c.min_tls_version}; passwords are checked against salted verifiers",
        "communication.mutual_tls is off or TLS below 1.2",
    )


@_rule("5.2-1")
def _disclosure_policy(ctx: SecurityContext) -> Row:
    d = ctx.product.disclosure
    if d is None:
        return Row("N", "no [product.disclosure] in the Security Context: no published policy")
    return Row(
        "Y",
        f"policy at {d.policy_url}; contact {', '.join(d.contact)}; acknowledgement within "
        f"{d.acknowledge_within_days} days; served as security.txt (RFC 9116)",
    )


@_rule("5.2-2")
def _disclosure_handling(ctx: SecurityContext) -> Row | None:
    if ctx.product.disclosure is None:
        return None
    return Row("Y", "reports are taken in and tracked through triage, fix and advisory by the fleet service")


@_rule("5.3-1", "5.3-2", "5.5-3")
def _updateable(ctx: SecurityContext) -> Row:
    b = ctx.boot
    return Row(
        "Y",
        f"the whole firmware (crypto included) is replaced by signed MCUboot images ({b.signature}, {b.upgrade_mode}, "
        f"test boot {'on' if b.test_boot else 'off'}) delivered over TUF",
    )


@_rule("5.3-3", "5.3-4A", "5.3-4B")
def _automatic(ctx: SecurityContext) -> Row:
    return _yn(
        ctx.update.automatic,
        "devices install security updates automatically (update.automatic = true), enabled from set-up",
        "update.automatic = false: the user has to install updates",
    )


@_rule("5.3-5")
def _checks(ctx: SecurityContext) -> Row:
    u = ctx.update
    return Row(
        "Y", f"devices check in every {u.checkin_interval_s} s (+{u.checkin_jitter_s[0]}-{u.checkin_jitter_s[1]} s)"
    )


@_rule("5.3-7", "5.3-9", "5.3-10")
def _update_crypto(ctx: SecurityContext) -> Row:
    b = ctx.boot
    keys = ctx.root_of_trust.algorithms.update
    return _yn(
        b.signature != "none",
        f"images signed with {b.signature} ({b.hash}), verified by the device before install; TUF metadata "
        f"({keys}) authenticates each update through the product's root of trust",
        "boot.signature = 'none': images are not signed",
    )


@_rule("5.3-13")
def _support_period(ctx: SecurityContext) -> Row:
    end = ctx.product.support_period_end
    return (
        Row("Y", f"security updates until {end.isoformat()} (product.support_period_end), published in the statement")
        if end
        else Row("N", "product.support_period_end is not set")
    )


@_rule("5.3-14", "5.3-15A", "5.3-15B")
def _updateable_na(_: SecurityContext) -> Row:
    return Row("N/A", "every software component can be updated", ("C(3)",))


@_rule("5.4-3")
def _no_hardcoded(ctx: SecurityContext) -> Row | None:
    cq = ctx.code_quality
    if "detect-secrets" in cq.engines and any(t.kind == "source" for t in cq.targets):
        return Row("Y", "the scanning gate (detect-secrets, trustroot) refuses credentials and keys in the sources")
    return None


@_rule("5.4-4")
def _unique_csps(ctx: SecurityContext) -> Row:
    return Row(
        "Y",
        "each device has its own identity key and certificate; updates are checked with public keys only",
    )


@_rule("5.5-1", "5.8-1", "5.8-2")
def _tls(ctx: SecurityContext) -> Row:
    c = ctx.communication
    return _yn(
        c.min_tls_version in ("1.2", "1.3"),
        f"TLS >= {c.min_tls_version}{' with mutual authentication' if c.mutual_tls else ''} to {c.service_url}",
        f"communication.min_tls_version = {c.min_tls_version!r} accepts outdated TLS",
    )


@_rule("5.5-8")
def _csp_management(ctx: SecurityContext) -> Row:
    backend = ctx.root_of_trust.backend
    store = "scrypt-encrypted PKCS#8 files" if backend == "file" else "a PKCS#11 token"
    return Row(
        "Y",
        f"keys live in {store}; creation, rotation, revocation and backup (Shamir shares) are ceremonies "
        "recorded in the evidence log",
    )


@_rule("5.7-1")
def _secure_boot(ctx: SecurityContext) -> Row:
    b = ctx.boot
    return _yn(
        b.signature != "none",
        f"MCUboot verifies the {b.signature} image signature at every boot"
        f"{' and refuses older security counters' if b.anti_rollback else ''}",
        "boot.signature = 'none'",
    )


@_rule("5.7-2")
def _tamper_alert(ctx: SecurityContext) -> Row | None:
    t = ctx.telemetry
    if t.enabled and "update_auth_failures" in t.metrics and any(r.metric == "update_auth_failures" for r in t.rules):
        return Row("Y", "a refused image is reported as update_auth_failures and alerts through a telemetry rule")
    return None


@_rule("5.9-3")
def _orderly(ctx: SecurityContext) -> Row | None:
    low, high = ctx.update.checkin_jitter_s
    if high <= low:
        return None
    return Row("Y", f"check-ins are spread by a random {low}-{high} s delay, so devices do not reconnect at once")


@_rule("5.10-1")
def _telemetry(ctx: SecurityContext) -> Row:
    t = ctx.telemetry
    return _yn(bool(t.rules), f"{len(t.rules)} telemetry rules examine {len(t.metrics)} metrics", "no telemetry rules")


@_rule("5.11-1")
def _erase(ctx: SecurityContext) -> Row:
    return _yn(
        ctx.data.delete_on_reset,
        "a factory reset erases user data (data.delete_on_reset)",
        "data.delete_on_reset = false",
    )


@_rule("5.11-2")
def _service_delete(ctx: SecurityContext) -> Row:
    return Row("Y", "the fleet service deletes a device's personal data on request and on ownership transfer")


@_rule("5.11-4")
def _receipt(ctx: SecurityContext) -> Row | None:
    return Row("Y", "every deletion returns a signed receipt") if ctx.data.deletion_receipt else None


@_rule("6-4")
def _telemetry_minimal(ctx: SecurityContext) -> Row | None:
    if ctx.telemetry.contains_personal_data:
        return None
    return Row("Y", "telemetry carries counters and versions only (telemetry.contains_personal_data = false)")


@_rule("6-6")
def _retention(ctx: SecurityContext) -> Row:
    days = sorted({c.retention_days for c in ctx.data.personal if c.in_service})
    kept = f"kept by the service at most {days[-1]} days" if days else "not stored by the service"
    return Row("Y", f"{len(ctx.data.personal)} declared categories only; {kept}; erased on reset")


#: Reporting clause (5.0-1 / 4-1): decided from the rest of the ICS by the filler.
REPORTING_IDS: Final = frozenset({"5.0-1", "4-1"})


def _not_applicable(p: Provision, features: Mapping[str, Fact], conditions: Mapping[int, Fact]) -> Row | None:
    off = [f"C({c})" for c in p.conditions if conditions.get(c, Fact(None, "")).value is False]
    off += [f"F({x})" for x in p.features if features.get(x, Fact(None, "")).value is False]
    if not off:
        return None
    reasons = [conditions[int(o[2:-1])].basis if o[0] == "C" else features[o[2:-1]].basis for o in off]
    return Row("N/A", "; ".join(reasons), tuple(off))


def derive_rows(
    ctx: SecurityContext,
    catalogue: Catalogue,
    v3: Catalogue,
    *,
    features: Mapping[str, Fact] | None = None,
    conditions: Mapping[int, Fact] | None = None,
) -> dict[str, Row]:
    """Every row trustroot can decide for ``catalogue``'s edition (others are left out: pending).

    ``features`` and ``conditions`` are the effective facts of the ICS (trustroot's, overridden
    where a person stated otherwise); by default trustroot's own.
    """
    rows: dict[str, Row] = {}
    if catalogue.edition == "3.1.3":
        features = features if features is not None else derive_features(ctx)
        conditions = conditions if conditions is not None else derive_conditions(ctx, "3.1.3")
        for p in catalogue:
            row = _not_applicable(p, features, conditions) or (_RULES[p.id](ctx) if p.id in _RULES else None)
            if row is not None:
                rows[p.id] = row
        return rows
    # V2.1.1: applicability from its own conditions, support from the V3 entries that continue it
    conditions = conditions if conditions is not None else derive_conditions(ctx, "2.1.1")
    v3_rows = derive_rows(ctx, v3, v3)
    for p in catalogue:
        row = _not_applicable(p, {}, conditions)
        if row is None:
            parts = [v3_rows.get(e.id) for e in v3 if p.id in e.v2_equivalent]
            row = _combine(parts)
        if row is not None:
            rows[p.id] = row
    return rows


def _combine(parts: list[Row | None]) -> Row | None:
    if not parts or any(r is None for r in parts):
        return None
    decided = [r for r in parts if r is not None]
    if any(r.support == "N" for r in decided):
        return Row("N", "; ".join(r.justification for r in decided if r.support == "N"))
    if all(r.support == "N/A" for r in decided):
        return Row("Y", "does not arise: " + "; ".join(dict.fromkeys(r.justification for r in decided)))
    return Row("Y", "; ".join(dict.fromkeys(r.justification for r in decided if r.support == "Y")))
