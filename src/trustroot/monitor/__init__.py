"""Security telemetry monitoring (guideline 10): pure functions, features in, scores and alerts out.

Nothing here does I/O: the fleet service feeds points in and stores what comes out.
"""
