"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against the real cluster,
PostgreSQL and Cairn's API: a run killed after step 3 shows both attempts, the steps each ran and both
logs; the run list updates while runs go through; cancel, rerun and fork from the pages; a person whose
RBAC allows only `get` sees no enabled action and is refused when posting one; a payload carrying
`<script>` shows as text. Screenshots of each page go to $CAIRN_UI_SCREENSHOTS (`make ui-screenshots`
writes docs/ui/)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lightkube import Client
from lightkube.models.rbac_v1 import PolicyRule
from playwright.sync_api import Browser, Page, expect, sync_playwright

from cairn.k8s.resources import QueueResource, ScheduleResource
from harness import config
from tests.support import ui_docs
from tests.support.builders import schedule_body
from tests.support.cairn import CairnProcesses
from tests.support.env import ClusterEnv
from tests.support.kube import as_dict, wait_for
from tests.support.runs import StepCounter, create_run, get_run, make_task, pods_of, wait_phase, wait_steps
from tests.support.tokens import service_account_token

CHROMIUM = os.environ.get("CAIRN_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("CAIRN_UI_SCREENSHOTS", "/tmp/cairn-ui-screenshots"))

FIVE_STEPS = """
RAN = []

def work(ctx, i, hold):
    hit(ctx, "step%d" % i)
    RAN.append(i)
    print("attempt %d runs step %d" % (ctx.attempt, i), flush=True)
    # An attempt 1 that ran step 3 itself holds in step 4 until the test kills it from outside, however
    # slow the machine (a fork from step 4 copies steps 1-3, so it does not hold).
    time.sleep(180 if hold and i == 4 and ctx.attempt == 1 and 3 in RAN else 0.5)
    return {"i": i, "square": i * i}

def main(ctx):
    hold = (ctx.payload or {}).get("hold", True)
    if (ctx.payload or {}).get("forever"):
        time.sleep(600)
    results = [ctx.step("work", work, ctx, i, hold) for i in range(1, 6)]
    return {"sum": sum(r["square"] for r in results)}
"""
APPROVAL = """
def main(ctx):
    token = ctx.create_token("approval")
    answer = ctx.wait_for_token("approved", token)
    return {"approved": answer.data}
"""
EVERYTHING = [
    PolicyRule(apiGroups=["cairn.dev"], resources=["taskruns", "queues", "schedules", "tokencompletions"], verbs=["*"]),
    PolicyRule(apiGroups=[""], resources=["pods", "pods/log"], verbs=["get", "list"]),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: hack/setup.sh installs Debian's chromium"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _signed_in(browser: Browser, cairn: CairnProcesses, token: str, path: str) -> Page:
    page = browser.new_context(base_url=cairn.api_url, viewport={"width": 1400, "height": 1000}).new_page()
    page.on("dialog", lambda d: d.accept())  # the confirmations before an action
    page.goto(f"/ui/login?next={path}")
    page.fill("textarea[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")
    return page


def _reloaded(page: Page, path: str, selector: str, text: str) -> bool | None:
    page.goto(path)
    return True if page.locator(selector).inner_text() == text else None


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _killed_after_step_three(env: ClusterEnv, kube: Client, ns: str, name: str) -> dict[str, Any]:
    create_run(kube, ns, "five", name, {"hold": True})
    wait_steps(kube, ns, name, 3, timeout=120)
    pod = pods_of(kube, ns, name)[0]
    env.require_harness().node(pod["spec"]["nodeName"]).kill_container(
        pod["status"]["containerStatuses"][0]["containerID"]
    )
    st = wait_phase(kube, ns, name, timeout=180)
    assert st["phase"] == "Succeeded", st
    return st


def test_the_run_page_of_a_run_killed_after_step_three_shows_both_attempts_their_steps_and_logs_and_forks(
    browser: Browser,
    cluster_env: ClusterEnv,
    kube: Client,
    ns: str,
    cairn: CairnProcesses,
    counter: StepCounter,
) -> None:
    make_task(kube, ns, "five", FIVE_STEPS, counter=counter)
    _killed_after_step_three(cluster_env, kube, ns, "demo")
    token = ui_docs.person_token(cluster_env.kubeconfig, ns)
    page = _signed_in(browser, cairn, token, f"/ui/namespaces/{ns}/runs/demo")

    expect(page.locator("#phase")).to_have_text("Succeeded")
    attempts = page.locator("tr[data-attempt]")
    expect(attempts).to_have_count(2)
    expect(page.locator("tr[data-attempt='1'] td.steps-of")).to_have_text("work#0, work#1, work#2")
    expect(page.locator("tr[data-attempt='2'] td.steps-of")).to_have_text("work#3, work#4")
    expect(page.locator("tr[data-attempt='1']")).to_contain_text("exit 137")
    expect(page.locator("tr[data-attempt='1'] td.node")).to_have_text(re.compile(r"^node-\d+$"))
    # The waterfall: a bar per attempt and per step recorded (2 + 5).
    expect(page.locator("svg.timeline rect")).to_have_count(7)
    # Both attempts' logs, read from their pods: attempt 1 up to step 4, where it was killed.
    expect(page.locator("#log-1")).to_contain_text("attempt 1 runs step 4", timeout=30_000)
    expect(page.locator("#log-1")).not_to_contain_text("step 5")
    expect(page.locator("#log-2")).to_contain_text("attempt 2 runs step 4", timeout=30_000)
    expect(page.locator("#log-2")).to_contain_text("attempt 2 runs step 5")
    expect(page.locator("#log-2")).not_to_contain_text("runs step 1")
    expect(page.locator("#result")).to_contain_text('"sum": 55')
    # The Task's command as the run was queued with it (tests/support/runs.py's make_task).
    expect(page.locator("#task-as-queued")).to_contain_text("python3 -m cairn.run task_five:main")
    _shot(page, "run")

    # Fork from step work#3 (picked in the steps table the timeline links to).
    page.locator("tr[data-step='work#3'] button.fork").click()
    notice = page.locator(".notice")
    expect(notice).to_contain_text("forked demo from work#3 as five-")
    fork = notice.inner_text().rsplit(" as ", 1)[1].strip()
    st = wait_phase(kube, ns, fork, timeout=120)
    assert st["phase"] == "Succeeded", st
    assert {s["key"]: s["attempt"] for s in st["steps"]}["work#0"] == 0  # copied, not run again
    assert counter.count(fork, "step1") == 0 and counter.count(fork, "step4") == 1, counter.hits
    page.goto(f"/ui/namespaces/{ns}/runs/{fork}")
    expect(page.locator("section[aria-label=summary]")).to_contain_text("Forked from")
    expect(page.locator("section[aria-label=summary] a", has_text="demo")).to_have_count(1)

    # Rerun from the source's page: a new run with the same task and payload.
    page.goto(f"/ui/namespaces/{ns}/runs/demo")
    page.click("#rerun")
    expect(notice).to_contain_text("reran demo as five-")
    rerun = notice.inner_text().rsplit(" as ", 1)[1].strip()
    body = get_run(kube, ns, rerun)
    assert body["metadata"]["annotations"]["cairn.dev/rerun-of"] == "demo"
    assert json.loads(body["spec"]["payload"]) == {"hold": True}


def test_the_run_list_updates_live_and_cancel_stops_a_run_from_its_page(
    browser: Browser, kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    make_task(kube, ns, "five", FIVE_STEPS, counter=counter)
    token = service_account_token(kube, ns, "operator", rules=EVERYTHING)
    page = _signed_in(browser, cairn, token, f"/ui/namespaces/{ns}/runs")
    expect(page.locator("tbody#rows")).to_contain_text("No runs match")
    page.evaluate("window.__samePage = true")
    create_run(kube, ns, "five", "quick", {"hold": False})
    create_run(kube, ns, "five", "slow", {"forever": True})
    row = page.locator("tr[data-run='quick']")
    expect(row).to_have_count(1, timeout=30_000)  # pushed over server-sent events, no reload
    expect(row.locator(".phase")).to_have_text("Succeeded", timeout=120_000)
    expect(page.locator("tr[data-run='quick'] td").nth(6)).to_have_text("5")
    assert page.evaluate("window.__samePage") is True
    _shot(page, "runs")

    # A filter by phase and a search by name.
    page.goto(f"/ui/namespaces/{ns}/runs?phase=Succeeded")
    expect(page.locator("tr[data-run]")).to_have_count(1)
    page.goto(f"/ui/namespaces/{ns}/runs?q=slo")
    expect(page.locator("tr[data-run]")).to_have_count(1)
    expect(page.locator("tr[data-run='slow']")).to_have_count(1)

    page.goto(f"/ui/namespaces/{ns}/runs/slow")
    expect(page.locator("#phase")).to_have_text("Running", timeout=120_000)
    page.click("#cancel")
    expect(page.locator(".notice")).to_have_text("cancelled slow")
    assert wait_phase(kube, ns, "slow", timeout=120)["phase"] == "Cancelled"
    expect(page.locator("#phase")).to_have_text("Cancelled", timeout=30_000)  # live, no reload

    # The store writes a run's end a moment after its status says so: the page is read again until then.
    tasks = f"/ui/namespaces/{ns}/tasks"
    wait_for("the store to count both runs ended", lambda: _reloaded(page, tasks, "tr[data-task='five'] td.live", "0"))
    row = page.locator("tr[data-task='five'] td")
    expect(row.nth(1)).to_have_text("2")
    expect(row.nth(2)).to_have_text("1")
    expect(row.nth(3)).to_have_text("0")
    expect(row.nth(4)).to_have_text("1")
    expect(page.locator("tr[data-task='five'] td.rate")).to_have_text("100 %")
    expect(page.locator("tr[data-task='five'] td.p50")).not_to_have_text("—")
    _shot(page, "tasks")

    page.goto(f"/ui/namespaces/{ns}/queues")
    expect(page.locator("tr[data-queue='default']")).to_contain_text("admitting")
    # The last hour's chart counts the two runs admitted and the two that ended (by PostgreSQL's clock).
    for series in ("admitted", "finished"):
        counts = page.locator(f"tr[data-queue='default'] svg.activity rect.{series}")
        expect(counts).to_have_count(12)
        assert sum(int(c.get_attribute("data-count") or 0) for c in counts.all()) == 2, series
    _shot(page, "queues")

    # The task's runs as the Tasks page counts them: one succeeded, one cancelled, none failed.


def test_a_reader_sees_no_enabled_action_and_is_refused_when_posting_one(
    browser: Browser, kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    make_task(kube, ns, "five", FIVE_STEPS, counter=counter)
    create_run(kube, ns, "five", "long", {"forever": True})
    reader = service_account_token(kube, ns, "reader", verbs=["get"])
    page = _signed_in(browser, cairn, reader, f"/ui/namespaces/{ns}/runs/long")
    for action in ("#cancel", "#rerun"):
        expect(page.locator(action)).to_be_disabled()
    page.goto(f"/ui/namespaces/{ns}/runs")
    expect(page.locator("#bulk button")).to_have_count(2)
    for button in page.locator("#bulk button").all():
        expect(button).to_be_disabled()
    page.goto(f"/ui/namespaces/{ns}/queues")
    for button in page.locator("td.queue-actions button").all():
        expect(button).to_be_disabled()

    url = f"{cairn.api_url}/ui/namespaces/{ns}/runs/long/cancel"
    as_reader = {"Authorization": f"Bearer {reader}"}
    refused = httpx.post(url, headers=as_reader, data={"csrf": ui_docs.csrf(reader)}, follow_redirects=False)
    assert refused.status_code == 403 and "may not patch taskruns" in refused.text, refused.text
    anonymous = httpx.post(url, data={"csrf": "x"}, follow_redirects=False)
    assert anonymous.status_code == 401, anonymous.text
    operator = service_account_token(kube, ns, "operator", rules=EVERYTHING)
    as_operator = {"Authorization": f"Bearer {operator}"}
    no_csrf = httpx.post(url, headers=as_operator, data={}, follow_redirects=False)
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text, no_csrf.text
    other_site = httpx.post(
        url, headers={**as_operator, "Origin": "https://evil.example"}, data={"csrf": ui_docs.csrf(operator)}
    )
    assert other_site.status_code == 403 and "another site" in other_site.text, other_site.text
    assert not (get_run(kube, ns, "long")["spec"].get("cancel")), "a refused action changed the run"
    done = httpx.post(url, headers=as_operator, data={"csrf": ui_docs.csrf(operator)}, follow_redirects=False)
    assert done.status_code == 303 and get_run(kube, ns, "long")["spec"]["cancel"] is True


def test_cairn_ui_on_a_laptop_shows_the_dashboard_as_the_person_and_serves_no_other_host(
    browser: Browser, cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    make_task(kube, ns, "five", FIVE_STEPS, counter=counter)
    create_run(kube, ns, "five", "away", {"forever": True})
    ui_docs.person_token(cluster_env.kubeconfig, ns)  # docs/ui.md's alice, whose token the block makes
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = ui_docs.laptop_script(ns, cairn.api_url, port)
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster_env.kubeconfig),
        "PATH": f"{Path(config.kubectl()).parent}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "BROWSER": "true",  # webbrowser.open runs `true`: no browser window from a test
    }
    proxy = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proxy.stdout is not None
        first = proxy.stdout.readline()
        url = f"http://127.0.0.1:{port}/ui/namespaces/{ns}/runs"
        assert url in first, first + (proxy.stdout.read() if proxy.poll() is not None else "")
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        page.on("dialog", lambda d: d.accept())
        page.goto(url)
        expect(page.locator("header .who span")).to_have_text(f"system:serviceaccount:{ns}:alice")
        expect(page.locator("tr[data-run='away']")).to_have_count(1)
        page.goto(f"http://127.0.0.1:{port}/ui/namespaces/{ns}/runs/away")
        expect(page.locator("#phase")).to_have_text("Running", timeout=120_000)
        page.click("#cancel")
        expect(page.locator(".notice")).to_have_text("cancelled away")
        assert wait_phase(kube, ns, "away", timeout=120)["phase"] == "Cancelled"
        # A name that resolves to 127.0.0.1 is not the proxy's own address: refused, nothing forwarded.
        other = httpx.get(url, headers={"Host": "attacker.example"})
        assert other.status_code == 403 and "serves 127.0.0.1" in other.text, other.text
        # A form posted from another site passes through with its Origin, and the API refuses it.
        posted = httpx.post(
            f"http://127.0.0.1:{port}/ui/namespaces/{ns}/runs/away/rerun",
            headers={"Origin": "https://attacker.example"},
            data={"csrf": "guess"},
        )
        assert posted.status_code == 403 and "another site" in posted.text, posted.text
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def test_cairn_ui_signs_in_with_a_kubeconfig_users_credential_plugin_and_renews_a_refused_token(
    cluster_env: ClusterEnv, ns: str, cairn: CairnProcesses, tmp_path: Path
) -> None:
    # The plugin (a real executable, run as kubectl runs one) first gives a token the cluster refuses,
    # as a revoked or expired one; then a real one. The proxy must ask again and let the page through.
    ui_docs.person_token(cluster_env.kubeconfig, ns)
    count = tmp_path / "count"
    plugin = tmp_path / "get-token"
    plugin.write_text(
        "#!/bin/sh\nset -e\n"
        f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {count}\n"
        'if [ "$n" -eq 1 ]; then t=revoked; else '
        f"t=$({config.kubectl()} --kubeconfig {cluster_env.kubeconfig} -n {ns} create token alice --duration=10m); fi\n"
        'printf \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}\' "$t"\n'
    )
    plugin.chmod(0o755)
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [
                    {
                        "name": "sso",
                        "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}},
                    }
                ],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "sso", "namespace": ns}}],
                "current-context": "c",
            }
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cairn_cli = str(Path(sys.executable).parent / "cairn")
    args = [cairn_cli, "ui", "--kubeconfig", str(kubeconfig), "--server", cairn.api_url, "--port", str(port)]
    proxy = subprocess.Popen(
        [*args, "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ)
    )
    try:
        assert proxy.stdout is not None
        first = proxy.stdout.readline()
        url = f"http://127.0.0.1:{port}/ui/namespaces/{ns}/runs"
        assert url in first, first + (proxy.stdout.read() if proxy.poll() is not None else "")
        assert count.read_text().strip() == "1"  # run once to start
        page = httpx.get(url, timeout=60)
        assert page.status_code == 200, page.text[:500]
        assert f"system:serviceaccount:{ns}:alice" in page.text
        assert count.read_text().strip() == "2", "the refused token was not renewed exactly once"
        again = httpx.get(url, timeout=60)
        assert again.status_code == 200 and count.read_text().strip() == "2"  # the good token is kept
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def test_a_wait_is_approved_a_queue_paused_and_resized_and_runs_cancelled_together_from_the_pages(
    browser: Browser, kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    make_task(kube, ns, "approval", APPROVAL)
    make_task(kube, ns, "five", FIVE_STEPS, counter=counter)
    create_run(kube, ns, "approval", "deploy")
    token = service_account_token(kube, ns, "operator", rules=EVERYTHING)
    page = _signed_in(browser, cairn, token, f"/ui/namespaces/{ns}/runs/deploy")
    expect(page.locator("#phase")).to_have_text("Waiting", timeout=120_000)
    form = page.locator("section[aria-label='wait tokens'] form")
    expect(form).to_have_count(1, timeout=30_000)
    form.locator("input[name=data]").fill('{"by": "alice"}')
    form.locator("button").click()
    expect(page.locator(".notice")).to_contain_text("completed tok-")
    st = wait_phase(kube, ns, "deploy", timeout=120)
    assert st["phase"] == "Succeeded" and json.loads(st["result"]) == {"approved": {"by": "alice"}}, st
    page.goto(f"/ui/namespaces/{ns}/runs/deploy")
    wait = page.locator("svg.timeline rect.wait")  # the token's wait, under the attempt that made it
    expect(wait).to_have_count(1)
    assert "token approved#0" in (wait.locator("title").text_content() or "")

    page.goto(f"/ui/namespaces/{ns}/queues")
    page.locator("tr[data-queue='default'] button[value=pause]").click()
    expect(page.locator(".notice")).to_have_text("paused queue default")
    queue = as_dict(kube.get(QueueResource, "default", namespace=ns))
    assert queue["spec"]["paused"] is True
    limit = page.locator("tr[data-queue='default'] input[name=limit]")
    limit.fill("3")
    limit.press("Enter")
    expect(page.locator(".notice")).to_have_text("set the limit of queue default to 3")
    assert as_dict(kube.get(QueueResource, "default", namespace=ns))["spec"]["concurrencyLimit"] == 3

    # Queued behind the paused queue: select both and cancel them together.
    for name in ("held-a", "held-b"):
        create_run(kube, ns, "five", name, {"hold": False})
    page.goto(f"/ui/namespaces/{ns}/runs")
    for name in ("held-a", "held-b"):
        page.locator(f"tr[data-run='{name}'] input[type=checkbox]").check()
    page.locator("#bulk button[value=cancel]").click()
    for said in ("2 runs: ", "cancelled held-a", "cancelled held-b"):
        expect(page.locator(".notice")).to_contain_text(said)
    for name in ("held-a", "held-b"):
        assert wait_phase(kube, ns, name, timeout=120)["phase"] == "Cancelled"
    assert counter.count("held-a", "step1") == 0, "a cancelled queued run ran"


BAD_INPUT = [
    # (method, path, form, status, what the page must say)
    ("GET", "/ui/namespaces/Bad_NS/runs", None, 400, "is not a namespace name"),
    ("GET", "/ui/namespaces/{ns}/runs?since=yesterday", None, 400, "since"),
    ("GET", "/ui/namespaces/{ns}/runs?phase=Sleeping", None, 400, "phase"),
    ("GET", "/ui/namespaces/{ns}/runs?q=" + "x" * 300, None, 400, "at most 253 characters"),
    ("GET", "/ui/namespaces/{ns}/tasks?window=1y", None, 400, "window: one of"),
    ("GET", "/ui/namespaces/{ns}/runs/nothing-here", None, 404, "no run"),
    ("GET", "/ui/namespaces/{ns}/runs/long/attempts/one/log", None, 400, "the attempt is a number"),
    ("POST", "/ui/namespaces/{ns}/runs/long/explode", {}, 404, "cancel, rerun, fork or complete"),
    ("POST", "/ui/namespaces/{ns}/runs/long/fork", {"step": "nope#0"}, 400, "recorded no step"),
    ("POST", "/ui/namespaces/{ns}/runs/long/complete", {"token": "x"}, 400, "is not a token id"),
    ("POST", "/ui/namespaces/{ns}/runs/bulk", {"action": "cancel"}, 400, "select one run or more"),
    ("POST", "/ui/namespaces/{ns}/runs/bulk", {"action": "delete", "run": "long"}, 400, "cancel or rerun"),
    ("POST", "/ui/namespaces/{ns}/queues/default", {"action": "limit", "limit": "ten"}, 400, "a whole number"),
    ("POST", "/ui/namespaces/{ns}/schedules/none", {"action": "explode"}, 400, "trigger, pause or resume"),
    ("POST", "/ui/namespaces/{ns}/schedules/none", {"action": "pause"}, 404, "no Schedule"),
]


def test_bad_input_at_the_dashboard_gets_a_page_naming_the_fault_and_changes_nothing(
    kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    make_task(kube, ns, "five", FIVE_STEPS, counter=counter)
    create_run(kube, ns, "five", "long", {"forever": True})
    token = service_account_token(kube, ns, "operator", rules=EVERYTHING)
    headers = {"Authorization": f"Bearer {token}"}
    wrong = []
    for method, path, form, status, says in BAD_INPUT:
        data = {**form, "csrf": ui_docs.csrf(token)} if form is not None else None
        answer = httpx.request(method, cairn.api_url + path.format(ns=ns), headers=headers, data=data)
        page = answer.text
        if (
            answer.status_code != status
            or not answer.headers["Content-Type"].startswith("text/html")
            or says not in page
            or "Traceback" in page
        ):
            wrong.append(f"{method} {path[:80]}: {answer.status_code} {page[-600:]}")
    assert not wrong, f"{len(wrong)} of {len(BAD_INPUT)} answers were wrong:\n" + "\n".join(wrong)
    assert not get_run(kube, ns, "long")["spec"].get("cancel"), "a refused action changed the run"


def test_a_payload_carrying_script_shows_as_text_under_a_strict_content_security_policy(
    browser: Browser, kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    make_task(kube, ns, "five", FIVE_STEPS, counter=counter)
    evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    create_run(kube, ns, "five", "evil", {"hold": False, "note": evil})
    assert wait_phase(kube, ns, "evil", timeout=120)["phase"] == "Succeeded"
    token = service_account_token(kube, ns, "operator", rules=EVERYTHING)
    page = _signed_in(browser, cairn, token, f"/ui/namespaces/{ns}/runs/evil")
    expect(page.locator("#payload")).to_contain_text(evil.replace('"', '\\"'))
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("script").count() == 1  # ui.js, and nothing a run carried
    assert page.locator("main img").count() == 0
    answer = httpx.get(f"{cairn.api_url}/ui/namespaces/{ns}/runs/evil", headers={"Authorization": f"Bearer {token}"})
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    _shot(page, "payload")


def test_the_schedules_page_shows_the_next_fire_time_runs_one_now_and_pauses_it(
    browser: Browser, cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    make_task(kube, ns, "five", FIVE_STEPS, counter=counter)
    yearly = {**schedule_body("yearly", "five", "0 3 1 1 *"), "metadata": {"name": "yearly", "namespace": ns}}
    kube.create(ScheduleResource.from_dict(yearly))
    next_fire = wait_for(
        "the schedule's next fire time",
        lambda: (as_dict(kube.get(ScheduleResource, "yearly", namespace=ns)).get("status") or {}).get("nextFireTime"),
        timeout=60,
    )
    page = _signed_in(
        browser, cairn, ui_docs.person_token(cluster_env.kubeconfig, ns), f"/ui/namespaces/{ns}/schedules"
    )
    row = page.locator("tr[data-schedule='yearly']")
    expect(row.locator("td.next")).to_have_text(next_fire)
    expect(row.locator("td.state")).to_have_text("firing")

    row.locator("button[value=trigger]").click()
    notice = page.locator(".notice")
    expect(notice).to_contain_text("from schedule yearly")
    started = notice.inner_text().split()[1]
    body = get_run(kube, ns, started)
    assert body["metadata"]["labels"]["cairn.dev/schedule"] == "yearly", body["metadata"]
    assert body["spec"]["taskRef"]["name"] == "five"

    page.locator("tr[data-schedule='yearly'] button[value=pause]").click()
    expect(notice).to_have_text("paused schedule yearly")
    assert as_dict(kube.get(ScheduleResource, "yearly", namespace=ns))["spec"]["suspend"] is True
    expect(page.locator("tr[data-schedule='yearly'] td.state")).to_have_text("paused")
    _shot(page, "schedules")


@pytest.fixture(scope="module", autouse=True)
def _screenshots_dir() -> None:
    if SHOTS.exists() and not os.environ.get("CAIRN_UI_SCREENSHOTS"):
        shutil.rmtree(SHOTS)
