"""The simulator's fleet-side operations done in this process, on the product's own fleet store.

:class:`InProcessFleetAdmin` is the :class:`trustroot.agent.sim_fleet.FleetAdmin` that ``trustroot
simulate`` and ``trustroot demo`` wire in (the agent layer never imports the fleet's code; this class
matches its protocol by shape): publish a release, import a closed batch's manifest, add an operator
token, export the TUF root.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trustroot.product import Product

__all__ = ["InProcessFleetAdmin"]


@dataclass(frozen=True)
class InProcessFleetAdmin:
    """The simulator's fleet-side operations in this process, on the product's fleet store."""

    product: Product

    def publish(self, image: Path, name: str) -> int:
        from trustroot.fleet.releases.publish import publish_release
        from trustroot.fleet.service import product_service

        channel = self.product.context.model.update.channels[0]
        with product_service(self.product, None) as service:
            return publish_release(self.product, image, channel=channel, store=service.store, name=name).release.id

    def import_batch(self, manifest: Path) -> None:
        from trustroot._fsutil import read_bounded
        from trustroot.fleet.devices import import_batch
        from trustroot.fleet.service import product_service
        from trustroot.provision.manifest import MAX_MANIFEST_BYTES

        data = read_bounded(manifest, MAX_MANIFEST_BYTES, what="batch manifest")
        with product_service(self.product, None) as service:
            import_batch(service, data, actor=self.product.actor, source=str(manifest))

    def operator_token(self, scopes: str) -> str:
        from trustroot.fleet.operators import add_operator
        from trustroot.fleet.service import product_service

        with product_service(self.product, None) as service:
            name = f"simulator-{secrets.token_hex(4)}"
            return add_operator(service, name, scopes, actor=self.product.actor).token

    def tuf_root(self) -> bytes:
        from trustroot.fleet.releases.publish import open_repository

        repo, _ = open_repository(self.product)
        return repo.root_bytes()
