"""The one ASGI application: the fleet API and (later) the web console."""
