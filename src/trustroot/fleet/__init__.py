"""The fleet service: devices, signed updates over TUF, rollouts, ownership and personal data,
vulnerability disclosure intake, and the hash-chained audit of all of it.

::

    fleet/
      config.py        FleetConfig and FleetLimits: every limit of the service in one place
      service.py       FleetService: store + product keys + clock; what routers depend on
      store/           SQLAlchemy 2 store (SQLite WAL default, PostgreSQL at scale), Alembic migrations,
                       the audit chain (evidence records in a table, appends serialised by a DB lock)
      api/             FastAPI routers: /api/v1/device/* (mutual TLS), /api/v1/* (operator tokens),
                       /.well-known/security.txt, disclosure intake, /tuf/
      auth.py          device identity from the verified TLS client certificate (verdict kept per
                       connection); operator tokens
      checkin*.py      check-in: the report and answer, the fast lane behind the authentication,
                       the group-commit writer thread
      accesslog.py     refusals and errors always logged, successes sampled
      tls.py           the server's SSLContext (TLS 1.2+, ECDHE + AEAD), reloaded without a restart
      ...              releases (TUF), rollouts, check-in, ownership, personal data, disclosures

``fleet/`` never imports ``web/``; ``web/app.py`` assembles the one ASGI application.
"""
