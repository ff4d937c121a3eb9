"""The code and firmware scanning gate (guidelines 1, 4, 5, 6 and 13).

Drives the field's engines as subprocesses from the tools environment and adds the IoT checks
they lack. Every engine and check reports :class:`~trustroot.scan.findings.Finding` objects.
"""
