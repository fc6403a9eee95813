"""Who is looking at the dashboard: the person's own Kubernetes bearer token, from the login cookie or
an Authorization header (set by a proxy in front that signs people in). The token is checked
by the API server (TokenReview) on every request (cached 30 s); each action is asked of RBAC
(SubjectAccessReview) for that person before it is made.

A form that acts carries a CSRF token derived from the bearer token (HMAC), which another site cannot
read: the cookie is HttpOnly and SameSite=Strict, and a POST whose Origin is another site is refused."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from aiohttp import web

from cairn.server.access import Access, User
from cairn.server.errors import ApiError, forbidden, unauthorized

COOKIE = "cairn-ui-token"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Viewer:
    user: User
    token: str

    @property
    def csrf(self) -> str:
        return hmac.new(self.token.encode(), b"cairn-ui-csrf", hashlib.sha256).hexdigest()


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip() or None
    return request.cookies.get(COOKIE) or None


async def viewer(request: web.Request, access: Access) -> Viewer:
    token = bearer(request)
    if token is None:
        raise unauthorized("sign in with a Kubernetes bearer token")
    return Viewer(await access.user(token), token)


def same_origin(request: web.Request) -> bool:
    """A browser names the page a POST comes from; one from another site is refused (no Origin: a
    client that is not a browser, which has no cookie to be tricked with)."""
    origin = request.headers.get("Origin")
    if origin is None or (origin == "null" and request.headers.get("Sec-Fetch-Site") == "same-origin"):
        return True
    host = request.headers.get("X-Forwarded-Host") or request.host
    return origin.split("://", 1)[-1] == host


async def check_form(request: web.Request, person: Viewer) -> dict[str, str]:
    """The posted form, if it comes from a page of this dashboard shown to this person."""
    if not same_origin(request):
        raise forbidden("this form was posted from another site (Origin); use the dashboard's own page")
    form = await request.post()
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not hmac.compare_digest(sent, person.csrf):
        raise forbidden("the form's CSRF token is missing or stale: reload the page and try again")
    return {k: v for k, v in form.items() if isinstance(v, str)}


def refused(person: Viewer, verb: str, what: str, namespace: str) -> ApiError:
    return forbidden(f'{person.user.name} may not {verb} {what} in namespace "{namespace}" (RBAC)')
