"""The bearer token the CLI sends to Cairn's API from a kubeconfig user: a token, a token file, or a
credential plugin run as kubectl runs one (a real executable here, speaking ExecCredential), run again
when its token is about to expire or is refused; every way a plugin can fail named."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from lightkube.config.models import NameValue, User, UserExec

from cairn.cli.credentials import Bearer, Plugin, from_kubeconfig_user
from cairn.cli.errors import CliError, ExitCode
from cairn.cli.history import api_identity

V1 = "client.authentication.k8s.io/v1"
LATER = "2031-01-01T00:00:00Z"


def plugin_script(tmp_path: Path, body: str) -> Path:
    """An executable credential plugin: `body` is shell; each run appends to runs.log what it saw."""
    path = tmp_path / "get-token"
    path.write_text(
        "#!/bin/sh\n"
        f'echo "$KUBERNETES_EXEC_INFO|$TEAM|$*" >> {tmp_path}/runs.log\n'
        f"n=$(wc -l < {tmp_path}/runs.log | tr -d ' ')\n" + body
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def credential(expires: str | None = LATER) -> str:
    status = {"token": "token-$n", **({"expirationTimestamp": expires} if expires else {})}
    return f"cat <<EOF\n{json.dumps({'apiVersion': V1, 'kind': 'ExecCredential', 'status': status})}\nEOF\n"


def exec_user(command: Path | str, *, version: str = V1) -> User:
    return User(
        exec=UserExec(
            apiVersion=version, command=str(command), args=["--cluster", "prod"], env=[NameValue("TEAM", "media")]
        )
    )


def runs(tmp_path: Path) -> list[str]:
    log = tmp_path / "runs.log"
    return log.read_text().splitlines() if log.exists() else []


def refusal(call: object, *args: object) -> CliError:
    with pytest.raises(CliError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def test_a_plugin_is_run_as_kubectl_runs_it_and_its_token_is_sent(tmp_path: Path) -> None:
    bearer = from_kubeconfig_user("eks-admin", exec_user(plugin_script(tmp_path, credential())))
    assert bearer is not None and bearer.current() == "token-1"
    assert bearer.expires == datetime(2031, 1, 1, tzinfo=UTC)
    (seen,) = runs(tmp_path)
    info, team, args = seen.split("|")
    assert json.loads(info) == {"apiVersion": V1, "kind": "ExecCredential", "spec": {"interactive": False}}
    assert (team, args) == ("media", "--cluster prod")


def test_a_plugins_token_near_its_expiry_is_renewed_before_it_is_sent(tmp_path: Path) -> None:
    bearer = from_kubeconfig_user("u", exec_user(plugin_script(tmp_path, credential(expires="2030-01-01T00:00:00Z"))))
    assert bearer is not None
    assert bearer.current(datetime(2029, 12, 31, 23, 0, tzinfo=UTC)) == "token-1"  # an hour left: kept
    assert bearer.current(datetime(2029, 12, 31, 23, 59, 45, tzinfo=UTC)) == "token-2"  # 15 s left: renewed
    assert len(runs(tmp_path)) == 2


def test_a_refused_token_is_renewed_once_however_many_requests_saw_it_refused(tmp_path: Path) -> None:
    bearer = from_kubeconfig_user("u", exec_user(plugin_script(tmp_path, credential(expires=None))))
    assert bearer is not None and bearer.current() == "token-1"
    assert bearer.renew("token-1") and bearer.token == "token-2"
    assert bearer.renew("token-1") and bearer.token == "token-2"  # already renewed by another request
    assert len(runs(tmp_path)) == 2
    fixed = Bearer("t")
    assert fixed.renew("t") is False and fixed.current() == "t"


def test_a_token_or_a_token_file_needs_no_plugin_and_a_certificate_user_has_no_bearer(tmp_path: Path) -> None:
    assert from_kubeconfig_user("u", User(token="abc")) == Bearer("abc")
    (tmp_path / "tok").write_text("from-file\n")
    assert from_kubeconfig_user("u", User(token_file=str(tmp_path / "tok"))) == Bearer("from-file")
    assert from_kubeconfig_user("u", User(client_cert="c.crt", client_key="c.key")) is None


def test_every_way_a_plugin_fails_is_named_with_what_to_do(tmp_path: Path) -> None:
    missing = refusal(from_kubeconfig_user, "u", exec_user(tmp_path / "no-such-plugin"))
    assert missing.code is ExitCode.UNREACHABLE and "which is not installed" in missing.message
    hinted = User(exec=UserExec(apiVersion=V1, command=str(tmp_path / "nope"), installHint="brew install it"))
    assert refusal(from_kubeconfig_user, "u", hinted).hint == "brew install it"
    failing = refusal(from_kubeconfig_user, "u", exec_user(plugin_script(tmp_path, "exit 3\n")))
    assert failing.code is ExitCode.REFUSED and "failed (exit code 3" in failing.message
    (tmp_path / "runs.log").unlink()
    garbled = refusal(from_kubeconfig_user, "u", exec_user(plugin_script(tmp_path, "echo not-json\n")))
    assert garbled.code is ExitCode.REFUSED and "printed no ExecCredential" in garbled.message
    (tmp_path / "runs.log").unlink()
    cert = 'echo \'{"status": {"clientCertificateData": "x", "clientKeyData": "y"}}\'\n'
    certificate = refusal(from_kubeconfig_user, "u", exec_user(plugin_script(tmp_path, cert)))
    assert (
        certificate.code is ExitCode.INVALID and "gave a client certificate instead of a token" in certificate.message
    )
    old = refusal(Plugin.of, "u", exec_user("x", version="client.authentication.k8s.io/v1alpha1").exec)
    assert old.code is ExitCode.INVALID and "does not speak" in old.message


def test_the_history_and_the_dashboard_take_a_plugin_users_token_from_the_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAIRN_TOKEN", raising=False)
    plugin = plugin_script(tmp_path, credential())
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "prod", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "sso", "user": {"exec": {"apiVersion": V1, "command": str(plugin)}}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "sso", "namespace": "media"}}],
        "current-context": "prod",
    }
    (tmp_path / "config").write_text(yaml.safe_dump(doc))
    server, bearer, ns = api_identity("http://api:8080/", None, None, None, str(tmp_path / "config"), "the dashboard")
    assert (server, bearer.current(), ns) == ("http://api:8080", "token-1", "media")
    # --token wins, and no plugin runs.
    _, given, _ = api_identity("http://api:8080", "mine", None, None, str(tmp_path / "config"), "the dashboard")
    assert given.current() == "mine" and len(runs(tmp_path)) == 1
