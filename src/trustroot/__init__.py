"""trustroot: make a connected product secure by design, and prove it (ETSI EN 303 645)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
