"""The dashboard's pages and actions, mounted under /ui of the API server.

Server-rendered HTML (Jinja2, every value escaped) with a small script of our own for live updates
over server-sent events: no front-end build, nothing fetched from the internet, and a strict
Content-Security-Policy (no inline script or style at all) that holds because there is none."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web
from lightkube import ApiError as KubeError
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event, Pod

from cairn.api.common import GROUP
from cairn.domain import naming
from cairn.k8s.resources import QueueResource, ScheduleResource
from cairn.server.access import Access
from cairn.server.errors import ApiError, bad_request, not_found
from cairn.server.history import PHASES, filters
from cairn.server.ui import views
from cairn.server.ui.actions import Actions, body_of
from cairn.server.ui.auth import COOKIE, CSRF_FIELD, Viewer, bearer, check_form, refused, viewer
from cairn.server.ui.events import send_events
from cairn.store.postgres import PostgresStore

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PAGE_SIZE = 50
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
ACTIVITY_SPAN, ACTIVITY_SLICES = timedelta(hours=1), 12  # the queues' chart: the last hour, 5 minutes a bar pair
TASK_WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
LIST_FILTERS = ("task", "queue", "phase", "label", "since", "until", "archived", "q", "after")


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cairn.server.ui", "templates"),
        autoescape=True,  # every value is text; nothing a run carries can become markup
        undefined=jinja2.ChainableUndefined,  # an optional field a record lacks shows as nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = views.duration
    return env


@web.middleware
async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer of the dashboard: the CSP, no framing, no sniffing; an error as a page."""
    try:
        response = await handler(request)
    except ApiError as e:
        response = _page_error(request, e.status, e.message)
    except web.HTTPException as e:  # aiohttp's own (404 of an unknown path, 405, 413)
        response = _page_error(request, e.status, e.reason)
    if response.prepared:  # a stream: its headers went out with it
        return response
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _page_error(request: web.Request, status: int, message: str) -> web.Response:
    ui: Ui = request.app["ui"]
    if status == 401 and request.method == "GET" and not request.path.endswith((".json", "/log", "/rows", "/live")):
        return redirect(f"/ui/login?{urlencode({'next': request.path_qs})}")
    return ui.render("error.html", status=status, code=status, message=message, person=None)


def _namespace(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise bad_request(f"{value!r} is not a namespace name")
    return value


def _name(value: str, what: str = "TaskRun") -> str:
    if len(value) > 253 or not _NAME.match(value):
        raise bad_request(f"{value!r} is not a {what} name")
    return value


class Ui:
    def __init__(self, store: PostgresStore, access: Access, kube: AsyncClient, *, actions: bool = True) -> None:
        self.actions = Actions(store, access, kube, enabled=actions)
        self.store = store
        self.access = access
        self.kube = kube
        self.env = _templates()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[headers])
        app["ui"] = self
        static = resources.files("cairn.server.ui").joinpath("static")
        app.add_routes(
            [
                web.get("/", self.home),
                web.get("/login", self.login_page),
                web.post("/login", self.login),
                web.post("/logout", self.logout),
                web.get("/static/{file}", self.static_file(static)),
                web.get("/namespaces/{namespace}/runs", self.runs),
                web.get("/namespaces/{namespace}/runs/rows", self.rows_stream),
                web.post("/namespaces/{namespace}/runs/bulk", self.bulk),
                web.get("/namespaces/{namespace}/runs/{name}", self.run_page),
                web.get("/namespaces/{namespace}/runs/{name}/live", self.run_stream),
                web.get("/namespaces/{namespace}/runs/{name}/value/{what}.json", self.value),
                web.get("/namespaces/{namespace}/runs/{name}/attempts/{attempt}/log", self.log_stream),
                web.post("/namespaces/{namespace}/runs/{name}/{action}", self.act),
                web.get("/namespaces/{namespace}/queues", self.queues),
                web.post("/namespaces/{namespace}/queues/{name}", self.queue_act),
                web.get("/namespaces/{namespace}/schedules", self.schedules),
                web.get("/namespaces/{namespace}/tasks", self.tasks),
                web.post("/namespaces/{namespace}/schedules/{name}", self.schedule_act),
            ]
        )
        return app

    def render(self, template: str, *, status: int = 200, **context: Any) -> web.Response:
        given = {
            "person": None,
            "notice": None,
            "namespace": "default",
            "csrf": "",
            "csrf_field": CSRF_FIELD,
            "can": None,
        }
        text = self.env.get_template(template).render(**{**given, **context})
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    async def page(
        self, request: web.Request, template: str, person: Viewer, namespace: str, **context: Any
    ) -> web.Response:
        """A page for a signed-in person: what they may do there, their form token, the notice an
        action left."""
        return self.render(
            template,
            person=person,
            namespace=namespace,
            can=await self._permissions(person, namespace),
            csrf=person.csrf,
            csrf_field=CSRF_FIELD,
            notice=request.query.get("notice"),
            **context,
        )

    def static_file(self, root: Any) -> Handler:
        files = {p.name: p.read_bytes() for p in root.iterdir() if p.name.endswith((".js", ".css"))}

        async def serve(request: web.Request) -> web.Response:
            name = request.match_info["file"]
            if name not in files:
                raise not_found(f"no file {name!r}")
            kind = "text/javascript" if name.endswith(".js") else "text/css"
            return web.Response(body=files[name], content_type=kind, headers={"Cache-Control": "max-age=300"})

        return serve

    # -- signing in ----------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.Response:
        if bearer(request) is None:
            return redirect("/ui/login")
        namespace = request.query.get("namespace", "default")
        return redirect(f"/ui/namespaces/{_namespace(namespace)}/runs")

    async def login_page(self, request: web.Request) -> web.Response:
        return self.render("login.html", next=_next_path(request.query.get("next")), message=None, person=None)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token") or "").strip()
        target = _next_path(str(form.get("next") or ""))
        try:
            await self.access.user(token)
        except ApiError as e:
            return self.render("login.html", status=401, next=target, message=e.message, person=None)
        response = redirect(target)
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            path="/ui",
            secure=request.secure or _forwarded_https(request),
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        person = await viewer(request, self.access)
        await check_form(request, person)
        response = redirect("/ui/login")
        response.del_cookie(COOKIE, path="/ui")
        return response

    # -- runs ----------------------------------------------------------------------------------

    async def _reader(self, request: web.Request) -> tuple[Viewer, str]:
        namespace = _namespace(request.match_info["namespace"])
        person = await viewer(request, self.access)
        if not await self.access.may(person.user, "get", namespace):
            raise refused(person, "get", f"taskruns.{GROUP}", namespace)
        return person, namespace

    async def _list(self, namespace: str, query: dict[str, str]) -> tuple[list[dict[str, Any]], str | None]:
        given = {k: v for k, v in query.items() if k in LIST_FILTERS and v != ""}
        search = given.pop("q", None)
        queue = given.pop("queue", None)
        if given.get("archived") == "any":
            given.pop("archived")
        wanted, _ = filters(given, datetime.now(UTC))
        if search is not None:
            if len(search) > 253:
                raise bad_request("q: at most 253 characters of a run's name")
            wanted["search"] = search
        if queue is not None:
            wanted["queue"] = _name(queue, "Queue")
        rows = await self.store.history_runs(namespace, wanted, PAGE_SIZE)
        for row in rows:
            row["shownPhase"] = views.list_phase(row)
            row["duration"] = views.seconds(row.get("createdAt"), row.get("finishedAt"))
        more = None
        if len(rows) == PAGE_SIZE:
            last = rows[-1]
            more = base64.urlsafe_b64encode(f"{last['createdAt']}|{last['uid']}".encode()).decode().rstrip("=")
        return rows, more

    async def _permissions(self, person: Viewer, namespace: str) -> dict[str, bool]:
        checks = {
            "cancel": ("patch", "taskruns", "", GROUP),
            "rerun": ("create", "taskruns", "", GROUP),
            "complete": ("create", "tokencompletions", "", GROUP),
            "queues": ("patch", "queues", "", GROUP),
            "schedules": ("patch", "schedules", "", GROUP),
            "logs": ("get", "pods", "log", ""),
        }
        answers = await asyncio.gather(
            *(self.access.may(person.user, v, namespace, r, g, s) for v, r, s, g in checks.values())
        )
        can = dict(zip(checks, answers, strict=True))
        if not self.actions.enabled:
            can.update(cancel=False, rerun=False, complete=False, queues=False, schedules=False)
        can["read_only"] = not self.actions.enabled
        return can

    async def runs(self, request: web.Request) -> web.Response:
        person, namespace = await self._reader(request)
        query = {k: v for k, v in request.query.items() if k in LIST_FILTERS}
        rows, more = await self._list(namespace, query)
        return await self.page(
            request,
            "runs.html",
            person,
            namespace,
            query=query,
            rows=rows,
            more=urlencode({**query, "after": more}) if more else None,
            stream=urlencode(query),
            phases=PHASES,
        )

    async def rows_stream(self, request: web.Request) -> web.StreamResponse:
        person, namespace = await self._reader(request)
        query = {k: v for k, v in request.query.items() if k in LIST_FILTERS}
        can = await self._permissions(person, namespace)

        async def fragments() -> AsyncIterator[str]:
            while True:
                rows, _ = await self._list(namespace, query)
                yield self.env.get_template("rows.html").render(rows=rows, namespace=namespace, can=can)

        return await send_events(request, "rows", fragments(), csp=CSP)

    async def bulk(self, request: web.Request) -> web.Response:
        namespace = _namespace(request.match_info["namespace"])
        person = await viewer(request, self.access)
        form = await request.post()
        await check_form(request, person)
        action = str(form.get("action") or "")
        names = [str(n) for n in form.getall("run", [])]
        if action not in ("cancel", "rerun"):
            raise bad_request("action: cancel or rerun")
        if not names:
            raise bad_request("select one run or more first")
        if len(names) > 500:
            raise bad_request("at most 500 runs at once")
        done = []
        for name in names:
            done.append(await self.actions.run(person, namespace, _name(name), action, {}))
        return redirect(
            f"/ui/namespaces/{namespace}/runs?{urlencode({'notice': f'{len(done)} runs: ' + '; '.join(done)[:600]})}"
        )

    async def _view(self, namespace: str, name: str) -> dict[str, Any]:
        run = await self.store.history_run(namespace, name)
        taskrun = await self.actions.taskrun(namespace, name)
        if run is None and taskrun is None:
            raise not_found(f'no run "{name}" in namespace "{namespace}" (never made, or past its retention)')
        status = (taskrun or {}).get("status") or {}
        events: list[dict[str, Any]] = []
        uid = (taskrun or {}).get("metadata", {}).get("uid")
        if uid:
            async for ev in self.kube.list(Event, namespace=namespace, fields={"involvedObject.uid": uid}):
                events.append(body_of(ev))
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        now = datetime.now(UTC)
        record = run or {"attempts": [], "steps": [], "stage": "queued"}
        nodes = {a.get("number"): a.get("node") for a in status.get("attempts") or []}  # the store keeps no node
        for a in record["attempts"]:
            a["took"] = views.seconds(a.get("startedAt"), a.get("endedAt"))
            a["node"] = nodes.get(a.get("number"))
        family = await self.store.history_family(run["uid"]) if run else {"parent": None, "children": [], "waits": []}
        bars, rows = views.timeline({**record, "waits": family["waits"], "children": family["children"]}, now)
        phase = status.get("phase") or (views.list_phase(run) if run else "Pending")
        spec = (taskrun or {}).get("spec") or {}
        return {
            "name": name,
            "namespace": namespace,
            "run": record,
            "taskrun": taskrun,
            "phase": phase,
            "reason": status.get("reason"),
            "message": status.get("message"),
            "live": phase not in views.FINISHED,
            "conditions": status.get("conditions") or [],
            "tokens": status.get("tokens") or [],
            "events": events[-50:],
            "bars": bars,
            "bar_rows": rows,
            "width": views.WIDTH,
            "payload": views.pretty(record.get("payload") or spec.get("payload"), is_json_text=True)
            if (record.get("payload") or spec.get("payload")) is not None
            else None,
            "result": views.pretty(record.get("result")) if record.get("resultRecorded") else None,
            "state": views.pretty(record["state"]) if isinstance(record.get("state"), dict) else None,
            "fork": spec.get("from") or status.get("forkedFrom"),
            "rerun_of": ((taskrun or {}).get("metadata", {}).get("annotations") or {}).get(f"{GROUP}/rerun-of"),
            "family": family,
            "containers": views.containers(status.get("task")),
            "task_generation": (status.get("task") or {}).get("generation"),
        }

    async def run_page(self, request: web.Request) -> web.Response:
        person, namespace = await self._reader(request)
        name = _name(request.match_info["name"])
        view = await self._view(namespace, name)
        return await self.page(
            request,
            "run.html",
            person,
            namespace,
            view=view,
        )

    async def run_stream(self, request: web.Request) -> web.StreamResponse:
        person, namespace = await self._reader(request)
        name = _name(request.match_info["name"])
        can = await self._permissions(person, namespace)

        async def fragments() -> AsyncIterator[str]:
            while True:
                view = await self._view(namespace, name)
                yield self.env.get_template("live.html").render(
                    view=view, namespace=namespace, can=can, csrf=person.csrf, csrf_field=CSRF_FIELD
                )
                if not view["live"]:
                    return

        return await send_events(request, "live", fragments(), csp=CSP)

    async def value(self, request: web.Request) -> web.Response:
        """The whole of a value the page cut short: payload, result, state, or a step's result."""
        _, namespace = await self._reader(request)
        name = _name(request.match_info["name"])
        what = request.match_info["what"]
        run = await self.store.history_run(namespace, name)
        if run is None:
            raise not_found(f'no run "{name}" in the history of namespace "{namespace}"')
        if what == "payload":
            doc = run.get("payload")
            text = doc if isinstance(doc, str) else json.dumps(doc)
        elif what == "result":
            text = json.dumps(run.get("result"), ensure_ascii=False)
        elif what == "state":
            text = json.dumps(run.get("state"), ensure_ascii=False)
        elif what.startswith("step-"):
            key = what[len("step-") :]
            recorded, result = await self.store.step_result(run["uid"], key)
            if not recorded:
                raise not_found(f'run "{name}" recorded no step "{key}"')
            text = json.dumps(result, ensure_ascii=False)
        else:
            raise not_found("payload, result, state or step-KEY")
        return web.Response(
            text=text,
            content_type="application/json",
            headers={"Content-Disposition": f'inline; filename="{name}-{what}.json"'},
        )

    async def log_stream(self, request: web.Request) -> web.StreamResponse:
        """An attempt's log, line by line, followed while its pod runs."""
        person, namespace = await self._reader(request)
        name = _name(request.match_info["name"])
        if not await self.access.may(person.user, "get", namespace, "pods", "", "log"):
            raise refused(person, "get", "pods/log", namespace)
        attempt = request.match_info["attempt"]
        if not attempt.isdigit():
            raise bad_request("the attempt is a number")
        run = await self.store.history_run(namespace, name)
        if run is None:
            raise not_found(f'no run "{name}" in namespace "{namespace}"')
        pods = [
            body_of(p)
            async for p in self.kube.list(
                Pod, namespace=namespace, labels={naming.LABEL_RUN_UID: run["uid"], naming.LABEL_ATTEMPT: attempt}
            )
        ]

        async def lines() -> AsyncIterator[str]:
            if not pods:
                yield f"(the pod of attempt {attempt} is gone: its logs went with it)"
                return
            pod = pods[0]
            try:
                async for line in self.kube.log(pod["metadata"]["name"], namespace=namespace, follow=True):
                    yield line.rstrip("\n")
            except KubeError as e:
                yield f"(no logs: {e.status.message})"
            yield "(end of log)"

        return await send_events(request, "line", lines(), csp=CSP, dedupe=False)

    # -- actions -------------------------------------------------------------------------------

    async def act(self, request: web.Request) -> web.Response:
        namespace = _namespace(request.match_info["namespace"])
        name = _name(request.match_info["name"])
        action = request.match_info["action"]
        if action not in ("cancel", "rerun", "fork", "complete"):
            raise not_found(f"no action {action!r}: cancel, rerun, fork or complete")
        person = await viewer(request, self.access)
        form = await check_form(request, person)
        said = await self.actions.run(person, namespace, name, action, form)
        return redirect(f"/ui/namespaces/{namespace}/runs/{name}?{urlencode({'notice': said})}")

    # -- queues --------------------------------------------------------------------------------

    async def queues(self, request: web.Request) -> web.Response:
        person, namespace = await self._reader(request)
        items = [body_of(q) async for q in self.kube.list(QueueResource, namespace=namespace)]
        items.sort(key=lambda q: q["metadata"]["name"])
        activity = await self.store.queue_activity(namespace, ACTIVITY_SPAN, ACTIVITY_SLICES)
        charts = {q["metadata"]["name"]: views.activity(activity.get(q["metadata"]["name"], {})) for q in items}
        return await self.page(
            request,
            "queues.html",
            person,
            namespace,
            queues=items,
            charts=charts,
            chart_width=views.CHART_WIDTH,
            chart_height=views.CHART_HEIGHT,
            bar_width=views.CHART_WIDTH / ACTIVITY_SLICES / 2,
        )

    async def queue_act(self, request: web.Request) -> web.Response:
        namespace = _namespace(request.match_info["namespace"])
        name = _name(request.match_info["name"], "Queue")
        person = await viewer(request, self.access)
        form = await check_form(request, person)
        said = await self.actions.queue(person, namespace, name, form)
        return redirect(f"/ui/namespaces/{namespace}/queues?{urlencode({'notice': said})}")

    # -- tasks ---------------------------------------------------------------------------------

    async def tasks(self, request: web.Request) -> web.Response:
        person, namespace = await self._reader(request)
        window = request.query.get("window", "24h")
        if window not in TASK_WINDOWS:
            raise bad_request(f"window: one of {', '.join(TASK_WINDOWS)}, not {window!r}")
        since = datetime.now(UTC) - TASK_WINDOWS[window]
        rows = await self.store.task_summary(namespace, since)
        for row in rows:
            row["successRate"] = views.success_rate(row["succeeded"], row["failed"])
        return await self.page(
            request,
            "tasks.html",
            person,
            namespace,
            tasks=rows,
            window=window,
            windows=list(TASK_WINDOWS),
        )

    # -- schedules -----------------------------------------------------------------------------

    async def schedules(self, request: web.Request) -> web.Response:
        person, namespace = await self._reader(request)
        items = [body_of(s) async for s in self.kube.list(ScheduleResource, namespace=namespace)]
        items.sort(key=lambda s: s["metadata"]["name"])
        return await self.page(
            request,
            "schedules.html",
            person,
            namespace,
            schedules=items,
        )

    async def schedule_act(self, request: web.Request) -> web.Response:
        namespace = _namespace(request.match_info["namespace"])
        name = _name(request.match_info["name"], "Schedule")
        person = await viewer(request, self.access)
        form = await check_form(request, person)
        said = await self.actions.schedule(person, namespace, name, form.get("action", ""))
        return redirect(f"/ui/namespaces/{namespace}/schedules?{urlencode({'notice': said})}")


def redirect(location: str) -> web.Response:
    """303 See Other: after a form, the page it leads to is fetched with GET."""
    return web.Response(status=303, headers={"Location": location})


def _next_path(value: str | None) -> str:
    """Where to go after signing in: a page of the dashboard, never another site."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


def _forwarded_https(request: web.Request) -> bool:
    return request.headers.get("X-Forwarded-Proto", "").lower() == "https"
