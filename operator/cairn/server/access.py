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
        self._decisions: dict[tuple[str, str, str], tuple[float, bool]] = {}

    async def check(self, header: str | None, verb: str, namespace: str) -> User:
        """The caller, if the API server says they may `verb` taskruns in `namespace`."""
        if not header or not header.startswith("Bearer "):
            raise unauthorized(
                "send a Kubernetes bearer token (a service account's, or a user's) as 'Authorization: Bearer <token>'"
            )
        token = header[len("Bearer ") :].strip()
        if not token or len(token) > 16384:
            raise unauthorized("the bearer token is empty or too long")
        digest = hashlib.sha256(token.encode()).hexdigest()
        user = await self._user(digest, token)
        now = time.monotonic()
        key = (digest, verb, namespace)
        cached = self._decisions.get(key)
        if cached is None or cached[0] <= now:
            allowed = await self._allowed(user, verb, namespace)
            cached = (now + CACHE_SECONDS, allowed)
            self._decisions[key] = cached
        if not cached[1]:
            raise forbidden(f'{user.name} may not {verb} taskruns.{GROUP} in namespace "{namespace}" (RBAC)')
        return user

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

    async def _allowed(self, user: User, verb: str, namespace: str) -> bool:
        review = await self.client.create(
            SubjectAccessReview(
                spec=SubjectAccessReviewSpec(
                    user=user.name,
                    uid=user.uid or None,
                    groups=list(user.groups) or None,
                    extra={k: list(v) for k, v in user.extra} or None,
                    resourceAttributes=ResourceAttributes(
                        group=GROUP, resource="taskruns", verb=verb, namespace=namespace
                    ),
                )
            )
        )
        return bool(review.status is not None and review.status.allowed)
