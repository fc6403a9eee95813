"""Leader election over a Kubernetes Lease, the decisions only (as client-go's leaderelection does
them): who may hold the lease, when a holder's lease has run out, and when a leader must stop.

Expiry is judged by the local clock from when this process last saw the lease record change (its
`observed` time), never from the holder's `renewTime`: the two machines' clocks need not agree.

A leader stops (the process exits) once `renew_deadline` has passed since its last successful
renewal; a standby takes over only after `lease_duration` with no change seen. renew_deadline <
lease_duration, so a leader that cannot renew (dead, paused, or cut off from the API server) has
stopped writing before another starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Timing:
    lease_duration: float = 10.0  # a standby waits this long without a renewal before taking over
    renew_deadline: float = 7.0  # a leader that has not renewed for this long stops
    retry_period: float = 2.0  # how often the leader renews and a standby looks

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration; got "
                f"{self.retry_period}, {self.renew_deadline}, {self.lease_duration}"
            )


@dataclass(frozen=True)
class Record:
    """The lease as last read: its holder and the version that changes with every renewal."""

    holder: str | None
    version: str  # the Lease's resourceVersion
    transitions: int = 0


class Move(Enum):
    CREATE = "create"  # no lease yet: create it, held by us
    RENEW = "renew"  # ours: write a new renewTime
    TAKE = "take"  # another's, run out (or released): write ourselves in as holder
    WAIT = "wait"  # another's and current: look again later


def next_move(me: str, record: Record | None, observed_at: float, now: float, timing: Timing) -> Move:
    """What to do with the lease. `observed_at`: when (local monotonic seconds) the record was first
    seen as it is now."""
    if record is None:
        return Move.CREATE
    if record.holder == me:
        return Move.RENEW
    if not record.holder or now - observed_at >= timing.lease_duration:
        return Move.TAKE
    return Move.WAIT


def must_stop(last_renewed: float, now: float, timing: Timing) -> bool:
    """A leader must stop once it has gone `renew_deadline` without a successful renewal."""
    return now - last_renewed >= timing.renew_deadline
