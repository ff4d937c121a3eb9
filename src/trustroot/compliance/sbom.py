"""sbom.cdx.json: a CycloneDX 1.5 SBOM of the product.

Components come from the context's ``[[components]]`` and, when the latest scan of a target wrote
one, from the scan's own CycloneDX SBOM (what it identified in the firmware). Duplicates (same purl,
or same name and version) are listed once. The product itself is ``metadata.component`` (type
``firmware``, version of the latest published release), which depends on every component.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final

from trustroot import __version__
from trustroot.evidence import format_time

if TYPE_CHECKING:
    from trustroot.compliance.assess import Assessment

__all__ = ["MAX_COMPONENTS", "sbom"]

#: Most components written (context plus scans).
MAX_COMPONENTS: Final = 20_000
_NAMESPACE: Final = uuid.UUID("6f1b6c1e-3f39-4a52-9d0c-7d5e2a1b9c40")


def _key(component: dict[str, Any]) -> str:
    return str(component.get("purl") or f"{component.get('name')}@{component.get('version')}")


def sbom(a: Assessment) -> dict[str, Any]:
    """The CycloneDX 1.5 document (JSON object)."""
    ev = a.evidence
    model = ev.context.model
    product = model.product
    releases = ev.of_type("release.published")
    version = str(releases[-1].data.get("version")) if releases else "unreleased"
    components: dict[str, dict[str, Any]] = {}
    for item in model.components:
        component: dict[str, Any] = {"type": "library", "name": item.name, "version": item.version}
        if item.purl:
            component["purl"] = item.purl
        if item.license:
            component["licenses"] = [{"expression": item.license}]
        if item.supplier:
            component["supplier"] = {"name": item.supplier}
        components.setdefault(_key(component), component)
    for scan in ev.scans.values():
        if scan.usable and isinstance(scan.sbom, dict):
            for found in scan.sbom.get("components", []) or []:
                if isinstance(found, dict) and isinstance(found.get("name"), str):
                    component = {
                        k: found[k] for k in ("type", "name", "version", "purl", "licenses", "cpe") if k in found
                    }
                    component.setdefault("type", "library")
                    component["properties"] = [{"name": "trustroot:found-by-scan", "value": scan.target}]
                    components.setdefault(_key(component), component)
        if len(components) >= MAX_COMPONENTS:
            break
    listed = list(components.values())[:MAX_COMPONENTS]
    for component in listed:
        component["bom-ref"] = "component:" + _key(component)
    serial = uuid.uuid5(_NAMESPACE, f"{product.name}|{ev.context_sha256}|{format_time(a.generated_at)}")
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": a.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "trustroot", "version": __version__}]},
            "component": {
                "type": "firmware",
                "bom-ref": "product",
                "name": product.name,
                "version": version,
                "supplier": {"name": product.manufacturer},
                "description": f"{product.product_type}, model {product.model}",
            },
            "manufacture": {"name": product.manufacturer},
        },
        "components": listed,
        "dependencies": [{"ref": "product", "dependsOn": [c["bom-ref"] for c in listed]}]
        + [{"ref": c["bom-ref"]} for c in listed],
    }
