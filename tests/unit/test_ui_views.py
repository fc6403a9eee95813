"""The dashboard's pages rendered from records (no server): every value escaped, the timeline drawn
to scale, long values cut with a link to the whole, actions disabled where RBAC says no."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cairn.server.access import User
from cairn.server.ui import views
from cairn.server.ui.app import Ui
from cairn.server.ui.auth import Viewer

NOW = datetime(2026, 12, 3, 10, 0, 30, tzinfo=UTC)
PERSON = Viewer(User("system:serviceaccount:ns:reader", "u1", (), ()), "token")
ALL = {"cancel": True, "rerun": True, "complete": True, "queues": True, "logs": True}
NONE = dict.fromkeys(ALL, False)


def _record(**extra: Any) -> dict[str, Any]:
    return {
        "uid": "0c6a8a53-7a1e-4a6e-9d1e-0d7e0b1c2d3e",
        "name": "demo",
        "task": "five",
        "queue": "default",
        "stage": "finished",
        "phase": "Succeeded",
        "createdAt": "2026-12-03T10:00:00Z",
        "finishedAt": "2026-12-03T10:00:20Z",
        "payload": '{"note": "<script>alert(1)</script>"}',
        "resultRecorded": True,
        "result": {"sum": 55},
        "state": None,
        "attempts": [
            {
                "number": 1,
                "pod": "demo-1",
                "startedAt": "2026-12-03T10:00:00Z",
                "endedAt": "2026-12-03T10:00:10Z",
                "exitCode": 137,
                "reason": "Error",
            },
            {
                "number": 2,
                "pod": "demo-2",
                "startedAt": "2026-12-03T10:00:12Z",
                "endedAt": "2026-12-03T10:00:20Z",
                "exitCode": 0,
                "reason": "Completed",
            },
        ],
        "steps": [
            {
                "key": f"work#{i}",
                "seq": i + 1,
                "attempt": 1 if i < 3 else 2,
                "bytes": 20,
                "tries": 1,
                "startedAt": f"2026-12-03T10:00:{(i * 3 if i < 3 else 12 + (i - 3) * 4):02d}Z",
                "completedAt": f"2026-12-03T10:00:{(i * 3 + 2 if i < 3 else 14 + (i - 3) * 4):02d}Z",
            }
            for i in range(5)
        ],
        **extra,
    }


def _view(record: dict[str, Any]) -> dict[str, Any]:
    for a in record["attempts"]:
        a["took"] = views.seconds(a.get("startedAt"), a.get("endedAt"))
    bars, rows = views.timeline(record, NOW)
    return {
        "name": record["name"],
        "namespace": "ns",
        "run": record,
        "taskrun": {"spec": {"taskRef": {"name": "five"}}},
        "phase": "Succeeded",
        "reason": None,
        "message": None,
        "live": False,
        "conditions": [],
        "tokens": [],
        "events": [],
        "bars": bars,
        "bar_rows": rows,
        "width": views.WIDTH,
        "payload": views.pretty(record["payload"], is_json_text=True),
        "result": views.pretty(record["result"]),
        "state": None,
        "fork": None,
        "rerun_of": None,
        "family": {"parent": None, "children": []},
    }


def _page(template: str, **context: Any) -> str:
    ui = Ui(None, None, None)  # type: ignore[arg-type]
    return ui.render(template, person=PERSON, namespace="ns", csrf="c", **context).text or ""


def test_a_run_page_escapes_the_payload_and_draws_a_bar_per_attempt_and_step() -> None:
    html = _page("run.html", view=_view(_record()), can=ALL)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<rect") == 7
    assert 'data-attempt="1"' in html and "work#0, work#1, work#2" in html and "work#3, work#4" in html
    assert "(exit 137)" in html


def test_the_timeline_is_to_scale_from_the_first_start_to_the_last_end() -> None:
    bars, rows = views.timeline(_record(), NOW)
    assert rows == 7
    first, second = bars[0], bars[4]
    assert first.label == "attempt 1" and first.x == 0 and round(first.width) == 500  # 10 s of 20
    assert second.label == "attempt 2" and round(second.x) == 600 and round(second.width) == 400


def test_every_action_is_disabled_for_a_person_rbac_allows_only_to_read() -> None:
    run = _page("run.html", view={**_view(_record()), "live": True}, can=NONE)
    assert run.count("disabled") >= 2 + 5  # cancel, rerun, and each step's fork
    assert 'id="cancel" disabled' in run and 'id="rerun" disabled' in run
    runs = _page("runs.html", query={}, rows=[], more=None, stream="", phases=("Live",), can=NONE)
    assert runs.count("disabled title=") == 2


def test_a_value_past_the_cap_is_cut_and_says_how_large_the_whole_is() -> None:
    shown = views.pretty({"blob": "x" * 40_000})
    assert shown.truncated and len(shown.text.encode()) <= views.SHOWN_BYTES and shown.size > 40_000
    assert not views.pretty({"a": 1}).truncated
    assert views.pretty("not json{", is_json_text=True).text == "not json{"


def test_a_live_run_shows_the_phase_its_record_means() -> None:
    assert views.list_phase({"stage": "queued", "phase": "Live"}) == "Queued"
    assert views.list_phase({"stage": "admitted", "phase": "Live"}) == "Running"
    assert views.list_phase({"stage": "waiting", "phase": "Live"}) == "Waiting"
    assert views.list_phase({"stage": "finished", "phase": "Failed"}) == "Failed"


def test_the_login_and_error_pages_render_without_a_person() -> None:
    ui = Ui(None, None, None)  # type: ignore[arg-type]
    assert "Sign in" in (ui.render("login.html", next="/ui/", message="<b>no</b>").text or "")
    assert "&lt;b&gt;" in (ui.render("error.html", code=403, message="<b>no</b>").text or "")


def test_the_success_rate_is_of_the_runs_that_ended_and_none_when_none_ended() -> None:
    assert views.success_rate(3, 1) == 75
    assert views.success_rate(0, 0) is None
    assert views.success_rate(0, 4) == 0
    assert views.success_rate(2, 1) == 67


def test_the_activity_chart_puts_both_series_in_each_slice_scaled_to_the_busiest() -> None:
    columns = views.activity({"admitted": [0, 4, 2], "finished": [1, 0, 2]})
    assert [(c.series, c.count) for c in columns] == [
        ("admitted", 0),
        ("finished", 1),
        ("admitted", 4),
        ("finished", 0),
        ("admitted", 2),
        ("finished", 2),
    ]
    assert max(c.height for c in columns) == views.CHART_HEIGHT and columns[2].height == views.CHART_HEIGHT
    assert columns[4].height == views.CHART_HEIGHT / 2
    assert [c.x for c in columns[:3]] == [0, views.CHART_WIDTH / 6, views.CHART_WIDTH / 3]
    assert views.activity({}) == []
    quiet = views.activity({"admitted": [0, 0], "finished": [0, 0]})
    assert len(quiet) == 4 and all(c.height == 0 for c in quiet)  # an idle hour: bars of nothing, no division by 0


def test_env_from_secrets_and_config_maps_is_shown_as_where_it_comes_from_never_as_a_value() -> None:
    snapshot = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "task",
                            "image": "registry.local/video:1.2",
                            "command": ["cairn-run"],
                            "args": ["main.py"],
                            "env": [
                                {"name": "MODE", "value": "fast"},
                                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
                                {"name": "REGION", "valueFrom": {"configMapKeyRef": {"name": "site", "key": "r"}}},
                                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            ],
                            "envFrom": [{"secretRef": {"name": "bulk"}, "prefix": "B_"}],
                        }
                    ]
                }
            }
        }
    }
    (c,) = views.containers(snapshot)
    assert (c.name, c.image, c.command) == ("task", "registry.local/video:1.2", "cairn-run main.py")
    assert [(e.name, e.shown, e.reference) for e in c.env] == [
        ("MODE", "fast", False),
        ("TOKEN", "from Secret api, key token", True),
        ("REGION", "from ConfigMap site, key r", True),
        ("POD", "from the pod's metadata.name", True),
        ("*", "every key of Secret bulk (prefixed B_)", True),
    ]
    assert views.containers(None) == [] and views.containers({"spec": {}}) == []


def test_a_wait_is_drawn_under_the_attempt_that_made_it_and_child_runs_after_the_attempts() -> None:
    record = _record(
        waits=[
            {"key": "nap#0", "kind": "sleep", "attempt": 1, "createdAt": "2026-12-03T10:00:05Z", "endedAt": None},
        ],
        children=[
            {
                "name": "demo-child-0",
                "stage": "finished",
                "phase": "Succeeded",
                "createdAt": "2026-12-03T10:00:12Z",
                "endedAt": "2026-12-03T10:00:18Z",
            }
        ],
    )
    record["stage"] = "waiting"  # a wait not ended yet: its bar runs to now
    bars, rows = views.timeline(record, NOW)
    kinds = [b.kind for b in bars]
    first_attempt_rows = kinds[: kinds.index("attempt-ok")]
    assert first_attempt_rows[-1] == "wait" and kinds[-1] == "child"
    wait = next(b for b in bars if b.kind == "wait")
    child = bars[-1]
    assert wait.label == "sleep nap#0" and "so far" in wait.title
    assert round(wait.x + wait.width) == round(views.WIDTH)  # open: to now, the right edge
    assert child.label == "demo-child-0" and child.anchor == "children" and "Succeeded" in child.title
    assert rows == len(bars)
