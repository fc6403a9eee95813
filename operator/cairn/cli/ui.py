"""`cairn ui`: the dashboard on your own machine, as you. A small proxy on 127.0.0.1 forwards each
request to the dashboard of Cairn's API (`--server`) with your bearer token added (`--token`,
$CAIRN_TOKEN or the kubeconfig user's, from its credential plugin too: a plugin's token is renewed
when it expires or is refused), so every page and every action is checked against your own RBAC, as in
the cluster; the token never reaches the browser.

The proxy answers only requests addressed to its own loopback address (a page of another site that
resolves its name to 127.0.0.1 is refused), and passes the browser's Origin on, so the dashboard
refuses a form posted from another site as it always does."""

from __future__ import annotations

import asyncio
import socket
import webbrowser
from typing import Annotated

import typer

from cairn.cli.credentials import Bearer
from cairn.cli.errors import CliError, ExitCode
from cairn.cli.history import Server, Token, api_identity
from cairn.cli.options import Context, Kubeconfig, Namespace

# What the browser sends that the dashboard reads; everything else (its cookies above all) stays here.
FORWARDED_REQUEST = ("accept", "content-type", "origin", "sec-fetch-site", "last-event-id", "cache-control")
# What the dashboard answers that the browser needs: its type, where a form leads, its security headers.
FORWARDED_RESPONSE = (
    "content-type",
    "location",
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "cache-control",
    "content-disposition",
)
MAX_BODY = 1024 * 1024

Port = Annotated[int, typer.Option("--port", help="The local port (0: any free one).", min=0, max=65535)]
Browser = Annotated[
    bool, typer.Option("--browser/--no-browser", help="Open the dashboard in your browser once it is up.")
]


def ui(
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
    server: Server = None,
    token: Token = None,
    port: Port = 8081,
    browser: Browser = True,
) -> None:
    """Open Cairn's dashboard on this machine, acting as you (your token, your RBAC) until Ctrl-C."""
    base, bearer, ns = api_identity(server, token, namespace, context, kubeconfig, "the dashboard")
    try:
        asyncio.run(_serve(base, bearer, ns, port, browser))
    except OSError as e:
        raise CliError(ExitCode.UNREACHABLE, f"cannot listen on 127.0.0.1:{port}: {e.strerror}", hint="--port N") from e


def _refused(status: int, location: str) -> bool:
    """The dashboard did not take the token: 401, or a page's way of saying so (to its sign-in page)."""
    return status == 401 or (status in (302, 303) and location.startswith("/ui/login"))


async def _serve(server: str, bearer: Bearer, namespace: str, port: int, browser: bool) -> None:
    from aiohttp import ClientError, ClientSession, ClientTimeout, web

    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))  # bound first, so that --port 0 learns its port before it is shown
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    here = [f"127.0.0.1:{bound}", f"localhost:{bound}"]
    session = ClientSession(timeout=ClientTimeout(total=None, connect=10, sock_read=None), trust_env=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        if request.host not in here:
            return web.Response(status=403, text=f"this proxy serves {here[0]} only, not {request.host}\n")
        if not request.path.startswith("/ui/"):
            return web.Response(status=303, headers={"Location": f"/ui/namespaces/{namespace}/runs"})
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_REQUEST}
        headers["X-Forwarded-Host"] = request.host
        body = await request.read()
        try:
            token = await asyncio.to_thread(bearer.current)
            for last in (False, True):
                headers["Authorization"] = f"Bearer {token}"
                upstream = await session.request(
                    request.method, server + request.path_qs, headers=headers, data=body or None, allow_redirects=False
                )
                if last or not _refused(upstream.status, upstream.headers.get("Location", "")):
                    break
                # A plugin's token that expired early or was revoked: one new token, one more try.
                if not await asyncio.to_thread(bearer.renew, token):
                    break
                upstream.release()
                token = bearer.token
        except ClientError as e:
            return web.Response(status=502, text=f"cannot reach Cairn's API at {server}: {e}\n")
        except CliError as e:
            return web.Response(status=502, text=f"no token to send: {e.message}\n")
        async with upstream:
            response = web.StreamResponse(status=upstream.status)
            for key in FORWARDED_RESPONSE:
                if key in upstream.headers:
                    response.headers[key] = upstream.headers[key]
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():  # server-sent events pass as they come
                    await response.write(chunk)
            except (ClientError, ConnectionResetError):
                pass
            return response

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    url = f"http://127.0.0.1:{bound}/ui/namespaces/{namespace}/runs"
    # One line as it is (no wrapping), at once: a script may wait for the address.
    print(f"Cairn's dashboard, as you, through {server}: {url}  (Ctrl-C to stop)", flush=True)
    if browser:
        webbrowser.open(url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await session.close()
