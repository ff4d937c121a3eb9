"""``python -m trustroot.cli``: the same as the ``trustroot`` command."""

from trustroot.cli.main import entry

entry()
