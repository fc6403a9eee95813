"""Your bearer token for Cairn's API, as your kubeconfig gives one to kubectl: `--token` or
$CAIRN_TOKEN, else the kubeconfig user's token or token file, else its credential plugin
(`user.exec`: `aws eks get-token`, `gke-gcloud-auth-plugin`, `kubelogin` for OIDC...), run the way
kubectl runs it (the ExecCredential protocol) and run again when its token expires or is refused.

A user who signs in with a client certificate has no token: Cairn's API checks a person with
TokenReview, which takes tokens only."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cairn.cli.errors import CliError, ExitCode

EXEC_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
PLUGIN_TIMEOUT_S = 120.0  # a plugin may wait for a person to sign in (kubelogin opens a browser)
EARLY = timedelta(seconds=30)  # a token this close to its expiry is not sent: a new one is asked for


@dataclass(frozen=True)
class Plugin:
    """A kubeconfig user's credential plugin (`users[].user.exec`)."""

    user: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = EXEC_VERSIONS[0]
    install_hint: str | None = None

    @classmethod
    def of(cls, user_name: str, exec_config: Any) -> Plugin:
        version = str(getattr(exec_config, "apiVersion", "") or "")
        if version not in EXEC_VERSIONS:
            raise CliError(
                ExitCode.INVALID,
                f"the kubeconfig user {user_name!r} has a credential plugin of apiVersion {version or '(none)'!r}, "
                f"which cairn does not speak (it speaks {', '.join(EXEC_VERSIONS)})",
                hint="update the plugin, or pass --token",
            )
        return cls(
            user=user_name,
            command=str(exec_config.command),
            args=tuple(str(a) for a in exec_config.args or ()),
            env=tuple((str(v.name), str(v.value)) for v in exec_config.env or ()),
            api_version=version,
            install_hint=getattr(exec_config, "installHint", None),
        )

    def run(self) -> tuple[str, datetime | None]:
        """The plugin's token and when it expires. Its own messages (a sign-in prompt) go to your
        terminal, as with kubectl."""
        info = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
        env = {**os.environ, **dict(self.env), "KUBERNETES_EXEC_INFO": json.dumps(info)}
        said = f"the kubeconfig user {self.user!r} gets its token from {self.command!r}"
        try:
            done = subprocess.run(
                [self.command, *self.args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                timeout=PLUGIN_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            raise CliError(
                ExitCode.UNREACHABLE,
                f"{said}, which is not installed (or not on PATH)",
                hint=self.install_hint or "install it, or pass --token",
            ) from None
        except PermissionError:
            raise CliError(ExitCode.UNREACHABLE, f"{said}, which is not executable", hint="chmod +x it") from None
        except subprocess.TimeoutExpired:
            raise CliError(
                ExitCode.UNREACHABLE, f"{said}, which gave none within {PLUGIN_TIMEOUT_S:.0f} s", hint="pass --token"
            ) from None
        if done.returncode != 0:
            raise CliError(
                ExitCode.REFUSED,
                f"{said}, which failed (exit code {done.returncode}; its messages are above)",
                hint="run it yourself to see why, or pass --token",
            )
        return _token_of(said, done.stdout)


def _token_of(said: str, output: bytes) -> tuple[str, datetime | None]:
    try:
        doc = json.loads(output)
        status = doc["status"]
    except (ValueError, KeyError, TypeError):
        raise CliError(
            ExitCode.REFUSED, f"{said}, which printed no ExecCredential (JSON with a status)", hint="pass --token"
        ) from None
    token = status.get("token") if isinstance(status, dict) else None
    if not isinstance(token, str) or not token:
        what = "a client certificate" if isinstance(status, dict) and status.get("clientCertificateData") else "none"
        raise CliError(
            ExitCode.INVALID,
            f"{said}, which gave {what} instead of a token: Cairn's API checks tokens only",
            hint="pass --token (e.g. from kubectl create token SERVICEACCOUNT) or set CAIRN_TOKEN",
        )
    expires = status.get("expirationTimestamp")
    try:
        when = datetime.fromisoformat(str(expires).replace("Z", "+00:00")) if expires else None
    except ValueError:
        when = None  # an expiry that cannot be read: the token is used until it is refused
    return token, when


@dataclass
class Bearer:
    """A bearer token to send, and for a plugin's, how to get a new one. Safe to share between
    threads: one plugin run at a time."""

    token: str
    plugin: Plugin | None = None
    expires: datetime | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_plugin(cls, plugin: Plugin) -> Bearer:
        token, expires = plugin.run()
        return cls(token, plugin, expires)

    def current(self, now: datetime | None = None) -> str:
        """The token, a new one first if the plugin's is about to expire."""
        now = now or datetime.now(UTC)
        if self.plugin is not None and self.expires is not None and now >= self.expires - EARLY:
            self.renew(self.token)
        return self.token

    def renew(self, refused: str) -> bool:
        """After `refused` was refused (401): a new token from the plugin, if there is one. False
        when there is nothing to renew (a fixed token)."""
        if self.plugin is None:
            return False
        with self._lock:
            if self.token == refused:  # not renewed meanwhile by another request
                self.token, self.expires = self.plugin.run()
        return True


def from_kubeconfig_user(user_name: str, user: Any) -> Bearer | None:
    """The bearer the kubeconfig user signs in with; None for a certificate (or no) user."""
    token = getattr(user, "token", None)
    if token:
        return Bearer(str(token))
    path = getattr(user, "token_file", None)
    if path and os.path.isfile(str(path)):
        with open(str(path)) as f:
            text = f.read().strip()
        if text:
            return Bearer(text)
    exec_config = getattr(user, "exec", None)
    if exec_config is not None:
        return Bearer.from_plugin(Plugin.of(user_name, exec_config))
    return None
