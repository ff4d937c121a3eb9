"""The device side: the reference agent and the fleet simulator.

The agent talks to the fleet service over the network only (it never imports ``trustroot.fleet``;
what the simulator needs done on the service side goes through ``sim_fleet.FleetAdmin``)::

    core.py           Agent: check-ins, updates (TUF, image verification, A/B slots, test boot), telemetry,
                      factory reset; asyncio, one per device (the CLI) or hundreds (the simulator)
    device.py         AgentDevice: the device directory, identity in memory, trust anchors; enroll()
    slots.py          A/B directory slots switched by one atomic pointer (MCUboot's test-boot protocol)
    queue.py          the bounded on-disk telemetry queue (fsync'd frames, drop-oldest when full, counted)
    state.py          state.json (results and reports still to send) and status.json (what the user sees)
    telemetry.py      what a Linux device measures (the fields of trustroot.monitor.points)
    timing.py         the injectable (accelerated) clock; capped exponential backoff with full jitter
    tuf_client.py     UpdateClient: python-tuf's ngclient over httpx with mutual TLS and a total
                      download deadline; what the agent uses to fetch and verify a release
    simulator.py      Simulation: the scenarios and their figures
    sim_fleet.py      the simulator's scratch product, devices, releases and service process
    sim_behaviour.py  simulated telemetry and the labelled attacks

Errors: :class:`~trustroot.errors.AgentError` (the agent cannot do what was asked) and
:class:`~trustroot.errors.AgentStateError` (its state on disk is damaged), with the update client's
``UpdateError`` tree (tuf_client.py).
"""
