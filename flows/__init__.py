"""Prefect orchestration over ``digest``: thin flows and tasks, no business logic."""
