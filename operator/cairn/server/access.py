"""Who is calling the trigger API, and may they: any Kubernetes identity (a service account's token,
a user's token), checked by the API server (TokenReview) and its RBAC (SubjectAccessReview). An
application that may `create taskruns` in a namespace may trigger runs there through this API."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.models.authentication_v1 import TokenReviewSpec
from lightkube.models.authorization_v1 import ResourceAttributes, SubjectAccessReviewSpec
from lightkube.resources.authentication_v1 import TokenReview
from lightkube.resources.authorization_v1 import SubjectAccessReview

from cairn.api.common import GROUP
from cairn.server.errors import ApiError, forbidden, unauthorized

CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class User:
    name: str
    uid: str
    groups: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...]


class Access:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self._users: dict[str, tuple[float, User | ApiError]] = {}
        self._decisions: dict[tuple[str, str, str, str, str], tuple[float, bool]] = {}

    async def check(self, header: str | None, verb: str, namespace: str) -> User:
        """The caller, if the API server says they may `verb` taskruns in `namespace`."""
        if not header or not header.startswith("Bearer "):
            raise unauthorized(
                "send a Kubernetes bearer token (a service account's, or a user's) as 'Authorization: Bearer <token>'"
            )
        user = await self.user(header[len("Bearer ") :].strip())
        if not await self.may(user, verb, namespace):
            raise forbidden(f'{user.name} may not {verb} taskruns.{GROUP} in namespace "{namespace}" (RBAC)')
        return user

    async def user(self, token: str) -> User:
        """Who the token belongs to, as the API server says (TokenReview); 401 if no one."""
        if not token or len(token) > 16384:
            raise unauthorized("the bearer token is empty or too long")
        return await self._user(hashlib.sha256(token.encode()).hexdigest(), token)

    async def may(
        self, user: User, verb: str, namespace: str, resource: str = "taskruns", group: str = GROUP, sub: str = ""
    ) -> bool:
        """Whether RBAC lets `user` `verb` `resource` (or its subresource `sub`) in `namespace`."""
        now = time.monotonic()
        key = (repr((user.name, user.uid, user.groups, user.extra)), verb, namespace, f"{group}/{resource}", sub)
        cached = self._decisions.get(key)
        if cached is None or cached[0] <= now:
            allowed = await self._allowed(user, verb, namespace, resource, group, sub)
            cached = (now + CACHE_SECONDS, allowed)
            if len(self._decisions) > 50_000:
                self._decisions = {k: v for k, v in self._decisions.items() if v[0] > now}
            self._decisions[key] = cached
        return cached[1]

    async def _user(self, digest: str, token: str) -> User:
        now = time.monotonic()
        cached = self._users.get(digest)
        if cached is None or cached[0] <= now:
            result: User | ApiError
            try:
                result = await self._review(token)
            except ApiError as e:
                result = e
            cached = (now + CACHE_SECONDS, result)
            if len(self._users) > 50_000:
                self._users = {k: v for k, v in self._users.items() if v[0] > now}
            self._users[digest] = cached
        if isinstance(cached[1], ApiError):
            raise cached[1]
        return cached[1]

    async def _review(self, token: str) -> User:
        review = await self.client.create(TokenReview(spec=TokenReviewSpec(token=token)))
        status: Any = review.status
        if status is None or not status.authenticated:
            reason = (status.error if status is not None else None) or "not authenticated"
            raise unauthorized(f"the token was refused by the Kubernetes API server: {reason}")
        user = status.user
        extra = tuple(sorted((k, tuple(v)) for k, v in (user.extra or {}).items()))
        return User(name=user.username or "", uid=user.uid or "", groups=tuple(user.groups or ()), extra=extra)

    async def _allowed(self, user: User, verb: str, namespace: str, resource: str, group: str, sub: str) -> bool:
        review = await self.client.create(
            SubjectAccessReview(
                spec=SubjectAccessReviewSpec(
                    user=user.name,
                    uid=user.uid or None,
                    groups=list(user.groups) or None,
                    extra={k: list(v) for k, v in user.extra} or None,
                    resourceAttributes=ResourceAttributes(
                        group=group, resource=resource, verb=verb, namespace=namespace, subresource=sub or None
                    ),
                )
            )
        )
        return bool(review.status is not None and review.status.allowed)
