"""The Lease an operator holds while it leads (coordination.k8s.io/v1), read and written with the
API server's optimistic concurrency: a write based on an old resourceVersion fails (409), so two
standbys cannot both take over."""

from __future__ import annotations

from datetime import UTC, datetime

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from cairn.domain.leader import Record


class Lost(Exception):
    """Someone else wrote the lease first (409), or it was deleted: read it again."""


class LeaseStore:
    def __init__(self, client: AsyncClient, namespace: str, name: str, duration: float) -> None:
        self.client, self.namespace, self.name = client, namespace, name
        self.duration = max(1, round(duration))
        self._lease: Lease | None = None

    async def read(self) -> Record | None:
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as e:
            if e.status.code == 404:
                self._lease = None
                return None
            raise
        self._lease = lease
        spec = lease.spec or LeaseSpec()
        version = (lease.metadata.resourceVersion if lease.metadata else None) or ""
        return Record(holder=spec.holderIdentity, version=version, transitions=spec.leaseTransitions or 0)

    async def create(self, me: str) -> None:
        now = datetime.now(UTC)
        lease = Lease(
            metadata=ObjectMeta(name=self.name, namespace=self.namespace),
            spec=LeaseSpec(
                holderIdentity=me,
                leaseDurationSeconds=self.duration,
                acquireTime=now,
                renewTime=now,
                leaseTransitions=0,
            ),
        )
        try:
            self._lease = await self.client.create(lease)
        except ApiError as e:
            if e.status.code == 409:
                raise Lost("another operator created the lease first") from e
            raise

    async def write(self, me: str, *, take: bool) -> None:
        """Renew our lease, or (take) write ourselves in as its holder; based on the version read."""
        lease = self._lease
        if lease is None or lease.metadata is None:
            raise Lost("the lease is gone")
        now = datetime.now(UTC)
        spec = lease.spec or LeaseSpec()
        spec.holderIdentity = me
        spec.leaseDurationSeconds = self.duration
        spec.renewTime = now
        if take:
            spec.acquireTime = now
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
        lease.spec = spec
        try:
            self._lease = await self.client.replace(lease)
        except ApiError as e:
            if e.status.code in (404, 409):
                raise Lost(f"the lease changed under us ({e.status.code})") from e
            raise

    async def release(self, me: str) -> None:
        """On a clean stop: leave the lease without a holder, so that a standby takes it at once."""
        record = await self.read()
        if record is None or record.holder != me or self._lease is None:
            return
        assert self._lease.spec is not None
        self._lease.spec.holderIdentity = None
        try:
            await self.client.replace(self._lease)
        except ApiError:
            return
