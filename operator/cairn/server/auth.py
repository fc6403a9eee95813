"""Who is calling: a task pod, proven by its projected service-account token.

The token has Cairn's own audience, so the Kubernetes API server refuses it for anything else; the
API server also vouches for it here (TokenReview) and names the pod it is bound to. The pod's attempt
is then looked up in the store: a token only ever reaches its own run, and only while that run's
attempt is current (the store refuses the rest).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.models.authentication_v1 import TokenReviewSpec
from lightkube.resources.authentication_v1 import TokenReview

from cairn.server.errors import ApiError, unauthorized

POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"
CACHE_SECONDS = 60.0  # a deleted pod's token stops working within this long (its run is fenced at once)


@dataclass(frozen=True)
class Caller:
    namespace: str
    pod: str
    pod_uid: str
    service_account: str


def _expiry(token: str) -> float | None:
    """The token's own expiry (exp claim); the API server has already checked its signature."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


class TokenVerifier:
    def __init__(self, client: AsyncClient, audience: str, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.client = client
        self.audience = audience
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Caller | ApiError]] = {}

    async def verify(self, header: str | None) -> Caller:
        if not header or not header.startswith("Bearer "):
            raise unauthorized("send the run's token as 'Authorization: Bearer <token>' (the file in CAIRN_TOKEN_FILE)")
        token = header[len("Bearer ") :].strip()
        if not token or len(token) > 16384:
            raise unauthorized("the bearer token is empty or too long")
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            if isinstance(cached[1], ApiError):
                raise cached[1]
            return cached[1]
        result: Caller | ApiError
        try:
            result = await self._review(token)
        except ApiError as e:
            result = e
        until = now + self.cache_seconds
        exp = _expiry(token)
        if exp is not None:
            until = min(until, now + max(0.0, exp - time.time()))
        if len(self._cache) > 50_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[digest] = (until, result)
        if isinstance(result, ApiError):
            raise result
        return result

    async def _review(self, token: str) -> Caller:
        review = await self.client.create(TokenReview(spec=TokenReviewSpec(token=token, audiences=[self.audience])))
        status: Any = review.status
        if status is None or not status.authenticated:
            reason = (status.error if status is not None else None) or "not authenticated"
            raise unauthorized(f"the token was refused: {reason}")
        if self.audience not in (status.audiences or []):
            raise unauthorized(f"the token is not for audience {self.audience!r}")
        user = status.user
        username: str = user.username or ""
        extra = user.extra or {}
        parts = username.split(":")
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"] or POD_NAME not in extra:
            raise unauthorized("the token is not bound to a pod: use the projected token Cairn mounts in task pods")
        return Caller(
            namespace=parts[2],
            pod=extra[POD_NAME][0],
            pod_uid=(extra.get(POD_UID) or [""])[0],
            service_account=parts[3],
        )
