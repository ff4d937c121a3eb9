"""security.txt (RFC 9116) from the Security Context: a pure function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trustroot.context.schema import SecurityContext
from trustroot.errors import PolicyRefusal

__all__ = ["security_txt"]


def security_txt(context: SecurityContext, *, now: datetime) -> str:
    """The security.txt text for ``context`` as of ``now`` (timezone-aware).

    Fields: Contact (one per contact, in order), Expires (``now`` plus the context's validity,
    RFC 9116 asks for under a year), Policy, Preferred-Languages and, when set, Canonical.
    """
    disclosure = context.product.disclosure
    if disclosure is None:
        raise PolicyRefusal(
            "the Security Context has no [product.disclosure]; security.txt needs a contact",
            provision="5.2-1",
        )
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    expires = (now.astimezone(UTC) + timedelta(days=disclosure.security_txt_validity_days)).replace(microsecond=0)
    lines = [f"# Vulnerability disclosure for {context.product.name} by {context.product.manufacturer}"]
    lines += [f"Contact: {contact}" for contact in disclosure.contact]
    lines.append(f"Expires: {expires.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    lines.append(f"Policy: {disclosure.policy_url}")
    lines.append(f"Preferred-Languages: {', '.join(disclosure.preferred_languages)}")
    if disclosure.canonical_url:
        lines.append(f"Canonical: {disclosure.canonical_url}")
    return "\n".join(lines) + "\n"
