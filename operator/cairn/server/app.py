"""The HTTP API: stateless in front of PostgreSQL, so several replicas can serve it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from importlib import resources

import psycopg
import psycopg_pool
from aiohttp import web
from lightkube import AsyncClient

from cairn import metrics
from cairn.config import Settings
from cairn.k8s.client import load_config
from cairn.server.access import Access
from cairn.server.auth import TokenVerifier
from cairn.server.checkpoints import STEP_MAX_BYTES, Checkpoints
from cairn.server.errors import ApiError, json_response, too_large
from cairn.server.guard import Pace, handler_args, make_guard
from cairn.server.history import History
from cairn.server.triggers import Triggers
from cairn.server.ui.app import Ui
from cairn.server.waits import Waits
from cairn.store.faulty import with_commit_faults
from cairn.store.postgres import PostgresStore, make_store, migrate

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    try:
        response = await handler(request)
    except ApiError as e:
        response = e.response()
    except web.HTTPException as e:
        if e.status == 413:  # one code for every body over a cap, whoever noticed it
            response = too_large(f"the request body is over the limit of {2 * STEP_MAX_BYTES} bytes").response()
        else:
            response = json_response({"error": e.reason.replace(" ", ""), "message": e.reason}, status=e.status)
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as e:
        log.warning("database unavailable: %s", e)
        response = json_response({"error": "Unavailable", "message": "the database is unavailable; retry"}, status=503)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = json_response(
            {"error": "Internal", "message": "internal error (a bug: please report it)"}, status=500
        )
    metrics.API_REQUESTS.labels(route, str(response.status)).inc()
    return response


async def healthz(_: web.Request) -> web.Response:
    return json_response({"ok": True})


def make_app(
    store: PostgresStore,
    verifier: TokenVerifier,
    kube: AsyncClient,
    public_url: str = "http://cairn-api:8080",
    *,
    pace: Pace | None = None,
    body_seconds: float = 30,
    ui: str = "on",
) -> web.Application:
    max_body = 2 * STEP_MAX_BYTES
    guard = make_guard(max_body=max_body, body_seconds=body_seconds, pace=pace or Pace(0, 1))
    app = web.Application(middlewares=[errors, guard], client_max_size=max_body)
    checkpoints = Checkpoints(store, verifier)
    app.add_routes(checkpoints.routes())
    app.add_routes(Waits(store, checkpoints, kube, public_url).routes())
    access = Access(kube)
    app.add_routes(Triggers(kube, access, store).routes())
    app.add_routes(History(store, access).routes())
    openapi = resources.files("cairn.server").joinpath("openapi.yaml").read_text()

    async def readyz(_: web.Request) -> web.Response:
        async with store.pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
        return json_response({"ok": True})

    async def spec(_: web.Request) -> web.Response:
        return web.Response(text=openapi, content_type="application/yaml")

    async def to_ui(_: web.Request) -> web.Response:
        # returned, not raised: the errors middleware turns a raised HTTPException into JSON
        return web.Response(status=303, headers={"Location": "/ui/"})

    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/openapi.yaml", spec),
        ]
    )
    if ui != "off":
        app.add_routes([web.get("/ui", to_ui)])
        app.add_subapp("/ui", Ui(store, access, kube, actions=ui == "on").app())
    return app


async def run_api(config: Settings, *, ready: asyncio.Event | None = None) -> None:
    await migrate(config.dsn)
    store = with_commit_faults(make_store(config.dsn, max_size=20, name="cairn-api"))
    await store.open(wait=False)
    kube = AsyncClient(load_config(config.kubeconfig), trust_env=False, field_manager="cairn-api")
    verifier = TokenVerifier(kube, config.token_audience)
    app = make_app(
        store,
        verifier,
        kube,
        config.public_url or config.api_url,
        pace=Pace(config.api_client_rate, config.api_client_burst),
        body_seconds=config.api_body_seconds,
        ui=config.ui,
    )
    runner = web.AppRunner(app, access_log=None, **handler_args(config.api_idle_seconds))
    await runner.setup()
    site = web.TCPSite(runner, config.api_host, config.api_port, backlog=1024)
    await site.start()
    log.info("API listening on %s:%s", config.api_host, config.api_port)
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await store.close()
        await kube.close()


def serve(config: Settings) -> None:
    if config.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(config.metrics_port)
    asyncio.run(run_api(config))
