"""What the CLI reads before it talks to a cluster: payloads (JSON, with the position of a mistake),
kubeconfigs (kubectl's precedence and merging), the new run's spec, and the exit codes of mistakes
made on the command line. No cluster: these run in process."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import KubeConfig

from cairn.api.common import PAYLOAD_MAX_BYTES
from cairn.cli import kube, payload
from cairn.cli import kubeconfig as kc
from cairn.cli.errors import EXIT_CODES_HELP, CliError, ExitCode
from cairn.cli.main import run
from cairn.cli.trigger import build_spec
from cairn.domain.rerun import run_body


def error_of(fn: Any, *args: Any, **kwargs: Any) -> CliError:
    with pytest.raises(CliError) as info:
        fn(*args, **kwargs)
    return info.value


# -- payloads --------------------------------------------------------------------------------------


def test_a_payload_is_sent_as_compact_json() -> None:
    assert payload.parse_payload('{ "n": 7,\n  "tags": ["a", "é"] }', "the payload") == '{"n":7,"tags":["a","é"]}'


def test_invalid_json_says_the_line_the_column_and_the_character() -> None:
    e = error_of(payload.parse_payload, '{\n  "n": 7\n  "m": 8\n}', "the payload file p.json")
    assert e.code is ExitCode.INVALID
    assert e.message == (
        "the payload file p.json is not valid JSON: Expecting ',' delimiter at line 3, column 3 (character 13)\n"
        '      "m": 8\n'
        "      ^"
    )


def test_the_excerpt_of_a_long_line_is_a_window_around_the_mistake() -> None:
    text = '{"a": "' + "x" * 200 + '" "b": "' + "y" * 200 + '"}'
    e = error_of(payload.parse_payload, text, "the payload")
    excerpt, caret = e.message.splitlines()[1:]
    assert excerpt.startswith("    …") and excerpt.endswith("…")
    assert excerpt[caret.index("^")] == '"'  # the caret points at the offending character


def test_nan_and_infinity_are_not_json() -> None:
    e = error_of(payload.parse_payload, '{"x": NaN}', "the payload")
    assert e.code is ExitCode.INVALID and "NaN is not JSON" in e.message


def test_a_payload_over_the_cap_is_refused_before_anything_is_sent() -> None:
    e = error_of(payload.parse_payload, json.dumps("x" * PAYLOAD_MAX_BYTES), "the payload")
    assert e.code is ExitCode.INVALID and f"over the payload cap of {PAYLOAD_MAX_BYTES} bytes" in e.message


def test_payload_from_a_file_from_stdin_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "p.json").write_text('{"n": 1}\n')
    assert payload.read_payload(None, str(tmp_path / "p.json")) == '{"n":1}'
    monkeypatch.setattr("sys.stdin", io.StringIO("[1, 2]"))
    assert payload.read_payload(None, "-") == "[1,2]"
    assert payload.read_payload(None, None) is None
    assert "not both" in error_of(payload.read_payload, "{}", "p.json").message
    missing = error_of(payload.read_payload, None, str(tmp_path / "nope.json"))
    assert missing.code is ExitCode.INVALID and "cannot read the payload file" in missing.message


# -- the new run -----------------------------------------------------------------------------------


def test_the_new_run_is_checked_here_and_named_by_the_server_unless_named() -> None:
    spec = build_spec("flaky", '{"n":7}', 5, "tenant-a", None)
    body = run_body(None, "flaky", spec)
    assert body["metadata"] == {"generateName": "flaky-"}
    assert body["spec"] == {
        "taskRef": {"name": "flaky"},
        "payload": '{"n":7}',
        "priority": 5,
        "concurrencyKey": "tenant-a",
    }
    assert run_body("r1", "flaky", spec, {"cairn.dev/rerun-of": "r0"})["metadata"] == {
        "name": "r1",
        "annotations": {"cairn.dev/rerun-of": "r0"},
    }
    assert len(run_body(None, "t" * 250, spec)["metadata"]["generateName"]) == 58
    e = error_of(build_spec, "flaky", None, 0, "k" * 200, None)
    assert e.code is ExitCode.INVALID and "concurrencyKey" in e.message


def test_a_run_for_later_and_its_expiry_are_checked_before_anything_is_sent() -> None:
    spec = build_spec("flaky", None, 0, None, None, delay="10m", expire_after="1h")
    assert run_body(None, "flaky", spec)["spec"] == {
        "taskRef": {"name": "flaky"},
        "priority": 0,
        "delay": "10m",
        "expireAfter": "1h",
    }
    both = error_of(build_spec, "flaky", None, 0, None, None, delay="10m", not_before="2026-12-24T18:00:00Z")
    assert both.code is ExitCode.INVALID and "set delay or notBefore, not both" in both.message
    bad = error_of(build_spec, "flaky", None, 0, None, None, delay="soon")
    assert bad.code is ExitCode.INVALID and "delay" in bad.message and "30s, 5m" in bad.message
    when = error_of(build_spec, "flaky", None, 0, None, None, not_before="tomorrow")
    assert when.code is ExitCode.INVALID and "notBefore" in when.message


# -- kubeconfigs -----------------------------------------------------------------------------------


def kubeconfig(
    path: Path,
    server: str,
    *,
    name: str = "main",
    current: bool = True,
    namespace: str | None = None,
    ca: str | None = None,
) -> Path:
    context: dict[str, Any] = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, **({"certificate-authority": ca} if ca else {})}}],
        "users": [{"name": name, "user": {"token": "t"}}],
        "contexts": [{"name": name, "context": context}],
    }
    if current:
        doc["current-context"] = name
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubeconfig_precedence_flag_then_env_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = kubeconfig(tmp_path / "a", "https://a:6443")
    b = kubeconfig(tmp_path / "b", "https://b:6443")
    assert kc.kubeconfig_files(str(a), {"KUBECONFIG": str(b)}) == [a]
    assert kc.kubeconfig_files(None, {"KUBECONFIG": f"{tmp_path / 'missing'}:{b}:{a}"}) == [b, a]
    e = error_of(kc.kubeconfig_files, None, {"KUBECONFIG": str(tmp_path / "missing")})
    assert e.code is ExitCode.UNREACHABLE and "none of the files in KUBECONFIG exists" in e.message
    monkeypatch.setattr(kc, "DEFAULT_KUBECONFIG", tmp_path / "home-config")
    monkeypatch.setattr(kc, "SERVICE_ACCOUNT", tmp_path / "no-service-account")
    e = error_of(kc.kubeconfig_files, None, {})
    assert e.code is ExitCode.UNREACHABLE and e.hint == "pass --kubeconfig FILE, or set KUBECONFIG"


def test_kubeconfigs_merge_as_kubectl_merges_them(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = kubeconfig(tmp_path / "one" / "config", "https://first:6443", current=False, ca="ca.crt")
    second = kubeconfig(tmp_path / "two" / "config", "https://second:6443", ca="ca.crt")
    other = kubeconfig(tmp_path / "two" / "other", "https://other:6443", name="other", namespace="media", ca="ca.crt")
    docs = [(p, yaml.safe_load(p.read_text())) for p in (first, second, other)]
    merged = kc.merge_kubeconfigs(docs)
    assert merged["current-context"] == "main"  # the first file that sets one
    clusters = {c["name"]: c["cluster"] for c in merged["clusters"]}
    assert clusters["main"]["server"] == "https://first:6443"  # the first file defining a name wins
    assert clusters["main"]["certificate-authority"] == str(tmp_path / "one" / "ca.crt")  # relative to its file
    assert clusters["other"]["certificate-authority"] == str(tmp_path / "two" / "ca.crt")
    config = KubeConfig.from_dict(merged, fname=first)
    assert kc.select_context(config, "other", "x").namespace == "media"
    e = error_of(kc.select_context, config, "nope", "the files")
    assert e.message == "there is no context 'nope' in the files" and e.hint == "contexts: main, other"


def test_connect_targets_the_context_and_namespace(tmp_path: Path) -> None:
    broken = kubeconfig(tmp_path / "broken", "https://127.0.0.1:6443", ca="ca.crt")
    e = error_of(kube.connect, kube.Target(kubeconfig=str(broken)))
    assert e.code is ExitCode.UNREACHABLE and "ca.crt" in e.message  # its certificate authority is missing
    path = kubeconfig(tmp_path / "config", "https://127.0.0.1:6443", namespace="media")
    k = kube.connect(kube.Target(kubeconfig=str(path)))
    assert (k.server, k.context, k.namespace) == ("https://127.0.0.1:6443", "main", "media")
    k.close()
    k = kube.connect(kube.Target(kubeconfig=str(path), namespace="other"))
    assert k.namespace == "other"
    k.close()


# -- the command line ------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_exit_codes_of_mistakes_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([]) == ExitCode.OK  # prints help, as kubectl does
    assert run(["--help"]) == ExitCode.OK
    assert "Exit codes:" in capsys.readouterr().out
    assert run(["runs", "--bogus"]) == ExitCode.INVALID
    assert "No such option: --bogus" in capsys.readouterr().err
    assert run(["get"]) == ExitCode.INVALID
    assert run(["runs", "-o", "xml"]) == ExitCode.INVALID
    assert run(["trigger", "t", "--payload", "{"]) == ExitCode.INVALID
    assert "the payload is not valid JSON" in capsys.readouterr().err
    port = closed_port()
    dead = kubeconfig(tmp_path / "dead", f"https://127.0.0.1:{port}")
    assert run(["runs", "--kubeconfig", str(dead)]) == ExitCode.UNREACHABLE
    err = capsys.readouterr().err
    assert f"error: could not connect to the Kubernetes API server at https://127.0.0.1:{port} (context 'main')" in err


def test_the_exit_codes_are_documented_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("trigger", "wait", "logs", "describe"):
        assert run([command, "--help"]) == ExitCode.OK
        out = capsys.readouterr().out
        assert EXIT_CODES_HELP.splitlines()[3] in out, command
    documented = {int(line.split()[0]) for line in EXIT_CODES_HELP.splitlines()[1:]}
    assert documented == {int(code) for code in ExitCode}


def test_a_short_option_means_the_same_thing_in_every_command() -> None:
    import typer

    from cairn.cli.main import app

    meaning: dict[str, set[str]] = {}
    for command in typer.main.get_command(app).commands.values():  # type: ignore[attr-defined]
        for param in command.params:
            for opt in param.opts + param.secondary_opts:
                if len(opt) == 2:
                    meaning.setdefault(opt, set()).add(param.opts[0])
    assert meaning.get("-f") == {"--follow"}, meaning
    assert len(meaning) >= 3, meaning
    assert {opt: longs for opt, longs in meaning.items() if len(longs) > 1} == {}


def test_cairn_ui_names_what_it_lacks_before_it_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CAIRN_SERVER", raising=False)
    monkeypatch.delenv("CAIRN_TOKEN", raising=False)
    config = kubeconfig(tmp_path / "k", f"https://127.0.0.1:{closed_port()}")
    assert run(["ui", "--kubeconfig", str(config)]) == ExitCode.UNREACHABLE
    assert "the dashboard is reached through Cairn's API: give --server URL" in capsys.readouterr().err
    assert run(["ui", "--port", "70000", "--server", "http://127.0.0.1:1", "--token", "t"]) == ExitCode.INVALID
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        args = ["ui", "--kubeconfig", str(config), "--server", "http://127.0.0.1:1", "--token", "t", "--no-browser"]
        assert run([*args, "--port", str(busy)]) == ExitCode.UNREACHABLE
    assert f"cannot listen on 127.0.0.1:{busy}" in capsys.readouterr().err
