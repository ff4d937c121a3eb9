"""The device side: the reference agent and the fleet simulator.

The agent talks to the fleet service over the network only (it never imports ``trustroot.fleet``)::

    tuf_client.py   UpdateClient: python-tuf's ngclient over httpx with mutual TLS and a total
                    download deadline; what the agent uses to fetch and verify a release
"""
