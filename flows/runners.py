"""Where the flows' batch tasks run, chosen by the settings when a flow run starts (``DIGEST_TASK_RUNNER``):

- ``thread`` (default): Prefect's ``ThreadPoolTaskRunner``, threads of the flow's own process;
- ``dask``: ``prefect_dask.DaskTaskRunner`` on the scheduler at ``DIGEST_DASK_ADDRESS``, or, when that is
  unset, on a temporary local cluster of ``DIGEST_DASK_WORKERS`` worker processes (one thread each), started
  when the flow submits its first task and stopped with the flow run.

The flows are declared with ``task_runner=ConfiguredTaskRunner()``, so a deployment, ``digest run`` and a
test all pick the runner from the same settings, read at run time (not when the module is imported)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prefect.client.schemas.objects import RunInput
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, PrefectFutureList
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.tasks import Task

from digest.config import Settings, get_settings


def _dask_runner(settings: Settings) -> TaskRunner[Any]:
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(cluster_kwargs={
        "n_workers": settings.dask_workers, "threads_per_worker": 1, "processes": True,
        "host": "127.0.0.1", "dashboard_address": ":0", "silence_logs": logging.ERROR,
    })


class ConfiguredTaskRunner(TaskRunner[PrefectFuture[Any]]):
    """A task runner that becomes, on entering a flow run, the one the settings ask for, and hands every
    submission to it. ``slots()`` is how many tasks run at once, ``describe()`` says which runner it is."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self._settings = settings
        self._inner: TaskRunner[Any] | None = None
        self._kind = "thread"

    @property
    def name(self) -> str:
        return "configured"

    def duplicate(self) -> ConfiguredTaskRunner:
        return type(self)(self._settings)

    def __enter__(self) -> ConfiguredTaskRunner:
        s = self._settings or get_settings()
        self._settings = s
        self._kind = s.task_runner
        self._inner = _dask_runner(s) if s.task_runner == "dask" else ThreadPoolTaskRunner()
        self._inner.__enter__()
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._inner is not None:
                self._inner.__exit__(*exc)
        finally:
            super().__exit__(*exc)

    @property
    def inner(self) -> TaskRunner[Any]:
        if self._inner is None:
            raise RuntimeError("the task runner must be started before submitting work")
        return self._inner

    def submit(self, task: Task[Any, Any], parameters: dict[str, Any],  # type: ignore[override]
               wait_for: Iterable[PrefectFuture[Any]] | None = None,
               dependencies: dict[str, set[RunInput]] | None = None) -> PrefectFuture[Any]:
        return self.inner.submit(task, parameters, wait_for, dependencies)

    def map(self, task: Task[Any, Any], parameters: dict[str, Any],  # type: ignore[override]
            wait_for: Iterable[PrefectFuture[Any]] | None = None) -> PrefectFutureList[PrefectFuture[Any]]:
        return self.inner.map(task, parameters, wait_for)

    @property
    def is_dask(self) -> bool:
        return self._kind == "dask"

    def _dask_threads(self) -> dict[str, int]:
        """Threads per Dask worker, asked of the scheduler (this connects, or starts the local cluster)."""
        client = self.inner.client  # type: ignore[attr-defined]
        return dict(client.nthreads())

    def slots(self) -> int:
        """How many tasks run at once: the Dask cluster's worker threads; for threads, no fixed number (1)."""
        if not self.is_dask:
            return 1
        return max(1, sum(self._dask_threads().values()))

    def describe(self) -> str:
        """``thread``, ``dask (2 workers)`` (the temporary local cluster) or ``dask (3 workers at ADDRESS)``."""
        if not self.is_dask:
            return "thread"
        assert self._settings is not None
        if not self._settings.dask_address:
            n = self._settings.dask_workers
            return f"dask ({n} worker{'s' if n != 1 else ''})"
        n = len(self._dask_threads())
        return f"dask ({n} worker{'s' if n != 1 else ''} at {self._settings.dask_address})"


def current_runner() -> ConfiguredTaskRunner | None:
    """The running flow's ``ConfiguredTaskRunner``, or None (another runner, or no flow run)."""
    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx else None
    return runner if isinstance(runner, ConfiguredTaskRunner) else None
