"""Prefect orchestration over ``digest``: thin flows and tasks, no business logic.

Defaults for running Prefect locally (set before Prefect is imported; an explicit environment wins): no
analytics calls on this offline-friendly product, and a patient start of a local server (our own, see
prefect_api.py, or Prefect's temporary one in tests), whose first start on a fresh PREFECT_HOME migrates
its database (~20-40 s here)."""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
