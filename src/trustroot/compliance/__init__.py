"""EN 303 645 compliance: the provision catalogue, evidence readers, verdicts and the artefacts.

Decides from evidence alone (the product's evidence log, the fleet's audit chain, signed
declarations), never from another layer's internals or the service's tables.
"""
