"""The REST side of the gateway: RI-compatible job endpoints, ``/health`` and ``/metrics``.

:func:`make_site` builds the ``twisted.web`` site; listen on it with any
endpoint (``serverFromString(reactor, "tcp:8080:interface=127.0.0.1").listen(site)``).
Jobs are resumed and expired jobs purged while the site is listening.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from twisted.internet.interfaces import IReactorTime

from gateway.logging import get_logger
from gateway.metrics import Metrics

from .api import JOBS_PATH, GatewaySite, JobsResource, RootResource
from .auth import ENV_VAR, HEADER, HOW_TO_SET, ApiKeys
from .connection_limit import ConnectionLimit
from .errors import ApiError
from .health import HealthCheck, HealthResource
from .job_runner import API_VERSIONS, PURGE_INTERVAL, Analyzer, JobRunner, RequestParser
from .job_store import JobStore
from .prometheus import MetricsResource

__all__ = sorted([
    "API_VERSIONS", "ApiError", "ApiKeys", "ConnectionLimit", "ENV_VAR", "GatewaySite", "HEADER",
    "JOBS_PATH",
    "JobRunner", "JobStore", "make_site",
])

log = get_logger("gateway.http")


def make_site(
    *,
    analysis: Analyzer,
    job_store: JobStore | str | Path,
    api_keys: ApiKeys | Iterable[str],
    metrics: Metrics,
    health_checks: Mapping[str, HealthCheck],
    max_body_bytes: int,
    clock: IReactorTime | None = None,
    parse: RequestParser | None = None,
    base_url: str | None = None,
    retry_after: int | None = 1,
    purge_interval: float = PURGE_INTERVAL,
    max_unfinished_jobs: int | None = None,
    max_running_jobs: int | None = None,
) -> GatewaySite:
    """The REST site.

    ``analysis``: runs the engine off the reactor thread (``AnalysisPool``).
    ``job_store``: a :class:`JobStore` or the SQLite file to keep jobs in (the
    audit database file is fine; give a JobStore with ``write`` there, so that job writes
    go through the audit writer rather than waiting for its lock on the reactor).
    ``api_keys``: the accepted keys (an empty set refuses every job request).
    ``health_checks``: name -> callable returning True when healthy (or a Deferred
    firing with it); a ``database`` check on the job store is added.
    ``clock``: timestamps and purging (default: the reactor).  ``parse``: the
    request validation shared with the CLI (default ``gateway.jobs.validate_and_parse``).
    ``base_url``: the public base of ``Operation-Location`` when behind a proxy
    (default: from the request's Host).  ``retry_after``: seconds clients are
    told to wait between polls.  ``max_unfinished_jobs``: a new job beyond that many
    unfinished ones is refused with 429 (None: no bound).  ``max_running_jobs``: jobs
    in the analysis pool at once, the others wait ``notStarted`` (None: no bound).
    """
    if clock is None:
        from twisted.internet import reactor as default_reactor

        clock = default_reactor  # type: ignore[assignment]
    assert clock is not None
    if parse is None:
        from gateway.jobs import validate_and_parse as parse
    store = job_store if isinstance(job_store, JobStore) else JobStore(job_store)
    keys = api_keys if isinstance(api_keys, ApiKeys) else ApiKeys(api_keys)
    if not keys.configured:
        log.warning("REST job endpoints refuse every request: no API key is configured; "
                    + HOW_TO_SET)

    runner = JobRunner(store, analysis, parse=parse, clock=clock,
                       max_unfinished=max_unfinished_jobs, retry_after=retry_after,
                       max_running=max_running_jobs)
    checks: dict[str, HealthCheck] = {"database": lambda: store.writable(clock.seconds())}
    checks.update(health_checks)

    root = RootResource()
    root.putChild(b"health", HealthResource(checks, clock=clock))
    root.putChild(b"metrics", MetricsResource(metrics))
    insights = RootResource()
    radiology = RootResource()
    root.putChild(b"health-insights", insights)
    insights.putChild(b"radiology-insights", radiology)
    radiology.putChild(b"jobs", JobsResource(runner, keys, retry_after=retry_after,
                                             base_url=base_url))
    return GatewaySite(root, runner=runner, metrics=metrics, max_body_bytes=max_body_bytes,
                       purge_interval=purge_interval, reactor=clock)
