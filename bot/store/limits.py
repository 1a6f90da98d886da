"""What every store engine checks when it enqueues: well-formed jobs, and the `[limits]` rule inside its
transaction (the counting is the engine's)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence

from bot.jobs import EnqueueLimits, JobKind, LimitExceeded, LimitKind, NewJob
from bot.store.base import RATE_WINDOW_S


def owners_of(jobs: Sequence[NewJob], limits: EnqueueLimits | None) -> set[tuple[int, int]]:
    """The (guild, user) pairs of the jobs of one enqueue, after checking the jobs are well formed.

    Raises ValueError for an unknown kind, a request that is not JSON, a negative parent index, or jobs of
    several members when limits are checked (limits count one member in one guild).
    """
    owners = {(job.guild_id, job.user_id) for job in jobs}
    if limits is not None and len(owners) != 1:
        raise ValueError("enqueue_many with limits takes the jobs of one user in one guild")
    for job in jobs:
        JobKind(job.kind)
        json.loads(job.request_json)
        if job.parent_index is not None and job.parent_index < 0:
            raise ValueError("parent_index must be >= 0")
    return owners


async def check_limits(
    limits: EnqueueLimits,
    *,
    count: int,
    now: float,
    command_times: Callable[[float], Awaitable[list[float]]],
    active: Callable[[], Awaitable[int]],
    queued: Callable[[], Awaitable[int]],
) -> None:
    """Raise `LimitExceeded` when a command adding `count` jobs breaks a limit, checked in a fixed order.

    The engine gives the counts as it reads them in its own transaction: `command_times(since)` the
    creation times of the member's commands (batches) after `since`, oldest first; `active()` the member's
    jobs waiting or running in the guild; `queued()` the guild's waiting jobs. Only the counts a set
    limit needs are read.
    """
    cap = limits.max_jobs_per_command
    if cap is not None and count > cap:
        raise LimitExceeded(LimitKind.MAX_JOBS_PER_COMMAND, cap, requested=count)
    cap = limits.per_user_per_minute
    if cap is not None:
        times = await command_times(now - RATE_WINDOW_S)
        if len(times) >= cap:
            # The command that must leave the window before one more fits.
            release = times[len(times) - cap] if cap > 0 else now + RATE_WINDOW_S
            retry = max(0.0, release + RATE_WINDOW_S - now)
            raise LimitExceeded(
                LimitKind.PER_USER_PER_MINUTE, cap, retry, requested=count, current=len(times)
            )
    cap = limits.per_user_active
    if cap is not None:
        current = await active()
        if current + count > cap:
            raise LimitExceeded(LimitKind.PER_USER_ACTIVE, cap, requested=count, current=current)
    cap = limits.per_guild_queued
    if cap is not None:
        current = await queued()
        if current + count > cap:
            raise LimitExceeded(LimitKind.PER_GUILD_QUEUED, cap, requested=count, current=current)
