"""python-tuf and securesystemslib names, re-exported so ``mypy --strict`` sees them.

python-tuf documents ``tuf.api.metadata`` and ``securesystemslib.signer`` as the public homes of
``Root``, ``Targets``, ``Signer``, ``SSlibKey``..., but they re-export them without ``__all__``, so
mypy's strict ``no_implicit_reexport`` refuses ``from tuf.api.metadata import Root``. At run time
this module imports from the public paths; the type checker reads the defining modules. (A
``[[tool.mypy.overrides]] module = ["tuf.*", "securesystemslib.*"] implicit_reexport = true`` in
pyproject.toml would make this module unnecessary.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "Key",
    "MetaFile",
    "Root",
    "SSlibKey",
    "SecretsHandler",
    "Signature",
    "Signed",
    "Signer",
    "Snapshot",
    "TargetFile",
    "Targets",
    "Timestamp",
]

if TYPE_CHECKING:
    from securesystemslib.signer._key import Key, SSlibKey
    from securesystemslib.signer._signature import Signature
    from securesystemslib.signer._signer import SecretsHandler, Signer
    from tuf.api._payload import MetaFile, Root, Signed, Snapshot, TargetFile, Targets, Timestamp
else:
    from securesystemslib.signer import Key, SecretsHandler, Signature, Signer, SSlibKey
    from tuf.api.metadata import MetaFile, Root, Signed, Snapshot, TargetFile, Targets, Timestamp
