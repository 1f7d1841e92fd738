"""The FastAPI app: ``create_app(settings)``; ``adf-service serve`` runs it under uvicorn."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from anyio import CapacityLimiter
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from sqlalchemy import text

from api.admission import schedule
from api.cluster import ClusterUnavailable, NodeResources, cluster_view
from api.db import make_engine, make_sessionmaker, upgrade
from api.deps import Services, ServicesDep
from api.hosts import HostCheck
from api.notify import deliver_due
from api.problems import install_problem_handlers
from api.routes import compare, jobs, logs, me, results, usage, users
from api.runner import RayJobs
from api.service import reconcile_active
from api.settings import Settings, SettingsError

__all__ = ["create_app", "run_queue"]

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 2.0
STORE_THREADS = 4  # result pages read from the store at once; more threads only contend for the GIL
PARSE_THREADS = 2  # submitted grids read at once, in threads apart from the store's


def create_app(settings: Settings | None = None, *, reconcile_every: float = RECONCILE_SECONDS) -> FastAPI:
    """The service. ``settings.ray_address`` is the Ray dashboard URL whose Jobs API runs the jobs."""
    settings = settings or Settings()
    if not settings.ray_address:
        raise SettingsError("ray_address: the service needs a Ray cluster's dashboard URL (http://host:8265)")
    address = settings.ray_address if "://" in settings.ray_address else f"http://{settings.ray_address}"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = make_engine(settings.db_url)
        await run_in_threadpool(upgrade, engine)
        services = Services(settings, make_sessionmaker(engine), RayJobs(address, settings.driver_command),
                            settings.dashboard_url or address, store_limiter=CapacityLimiter(STORE_THREADS),
                            parse_limiter=CapacityLimiter(PARSE_THREADS))
        services.nodes = _cluster_nodes(address)
        app.state.services = services
        # What is loaded by now lives as long as the server: out of the collector's sight, so
        # a full collection walks only what requests allocate (shorter pauses in the tail).
        gc.collect()
        gc.freeze()
        tasks = [asyncio.create_task(_every(reconcile_every, run_queue, services, "reconciling jobs")),
                 asyncio.create_task(_every(reconcile_every, notify_ended, services, "notifying the ends of jobs"))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            engine.dispose()

    app = FastAPI(
        title="adf-service",
        version="1",
        summary="AutoDeepFuse as a service: submit grids, follow jobs, query results.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    if (hosts := settings.answered_hosts()) is not None:
        app.add_middleware(HostCheck, allowed=hosts)

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(jobs.grid_schemas())
            components["QuotaIn"] = users.QuotaIn.model_json_schema()
            document_problems(schema, components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    app.include_router(jobs.router)
    app.include_router(results.router)
    app.include_router(compare.router)
    app.include_router(users.router)
    app.include_router(usage.router)
    app.include_router(logs.router)
    app.include_router(me.router)

    @app.get("/healthz", tags=["service"])
    def healthz(services: ServicesDep) -> dict[str, str]:
        """The service is up; whether its store and its Ray Jobs API answer."""
        with services.sessions() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok", "database": "ok", "ray": "ok" if services.ray.reachable() else "unreachable"}

    return app


_PROBLEMS = {
    "400": "Malformed body (YAML or JSON)", "401": "No bearer token, or an unknown or revoked one",
    "404": "No such job or trial (or not yours)", "409": "Conflict with the job's state or an idempotency key",
    "413": "Body over the size limit", "415": "Unsupported content type",
    "422": "Invalid grid or query parameters", "429": "Too many queued or running jobs",
    "403": "Only an admin may do this",
}
_POST_JOBS = ("400", "413", "415", "422", "429")


def document_problems(schema: dict, components: dict) -> None:
    """Every error answer, as it really is: problem+json (api/problems.py) in the schema."""
    from api.schemas import ProblemOut

    problem = ProblemOut.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem.pop("$defs", {}))
    components["ProblemOut"] = problem
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemOut"}}}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            codes = {code for code in responses if code.startswith("4")}
            if path != "/healthz":
                codes |= {"401", "422"}
            if "{job_id}" in path:
                codes.add("404")
            if path == "/v1/jobs" and method == "post":
                codes |= set(_POST_JOBS)
            for code in codes:
                description = responses.get(code, {}).get("description") or _PROBLEMS[code]
                responses[code] = {"description": description, "content": content}


def _cluster_nodes(address: str) -> Callable[[], list[NodeResources] | None]:
    """The queue's view of the cluster: its nodes, or None when the dashboard does not answer
    (shared with the launch checks at submit: one cache per address)."""
    view = cluster_view(address)

    def nodes() -> list[NodeResources] | None:
        try:
            return view.nodes()
        except ClusterUnavailable as exc:
            log.warning("%s", exc)
            return None

    return nodes


def run_queue(services: Services) -> None:
    """One round: running jobs brought up to date with Ray, then queued jobs admitted where they may go."""
    with services.sessions() as session:
        reconcile_active(session, services.ray, services.settings)
        schedule(session, services.ray, services.settings, services.nodes())


def notify_ended(services: Services) -> None:
    """POST the notifications of the jobs that ended (api/notify.py)."""
    with services.sessions() as session:
        deliver_due(session, services.settings)


async def _every(seconds: float, work: Callable[[Services], None], services: Services, what: str) -> None:
    """Run ``work`` in a thread every ``seconds``, also when nobody asks; a failure is logged, the loop goes on.
    The queue's rounds (:func:`run_queue`) and the notifications (:func:`notify_ended`) loop apart: a
    receiver that answers late (each POST waits up to api.notify.TIMEOUT_SECONDS) or a host slow to
    resolve holds up only the notifications after it, never the queue."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await run_in_threadpool(work, services)
        except Exception:
            log.exception(what)
