"""Drills of the scale-out (issue 11): two real bot processes, one Discord shard each, on one PostgreSQL
database and two ComfyUIs. Processes are killed, stopped and restarted, PostgreSQL too; each drill ends
with every job completed exactly once (no prompt ran twice, one result per job in its channel mentioning
its owner) and nothing lost. The harness is tests/drills/_cluster.py.

The first process started takes both backends' leases (a process takes every free lease and keeps it
while it renews), so the other one drives no backend until the first goes: results of the second shard's
guild are run by the first process and shown by the second, through the event relay.
"""

from __future__ import annotations

from pathlib import Path

from tests.drills._cluster import Cluster, running_cluster
from tests.pg import Databases

RESULT_POSTS = 'discord_posts_total{outcome="ok",purpose="result"}'


async def ran_by(cluster: Cluster, job_id: int) -> str | None:
    """The backend the database says the job ran on."""
    job = await cluster.store.get(job_id)
    assert job is not None
    return job.backend


async def test_each_process_shows_its_own_guilds_results_and_u1_works_whichever_process_ran_the_parent(
    tmp_path: Path, pg_databases: Databases
) -> None:
    async with running_cluster(tmp_path, pg_databases) as cluster:
        first = await cluster.start(0)
        await cluster.start(1)
        # The first process took both backends; the second drives none.
        assert await cluster.holders() == {"gpu0": first.pid, "gpu1": first.pid}
        zero, one = cluster.places
        jobs = {
            place.shard: [await cluster.imagine(place, f"a lighthouse {n} --seed {n}") for n in (1, 2)]
            for place in cluster.places
        }
        await cluster.wait_shown(jobs[0] + jobs[1])
        for job_id in jobs[0] + jobs[1]:
            assert await ran_by(cluster, job_id) in ("gpu0", "gpu1")
        # Each process posted the results of its own shard's guild: the second posted the two results of
        # its guild although the first ran them.
        assert await cluster.metric(0, RESULT_POSTS) == 2
        assert await cluster.metric(1, RESULT_POSTS) == 2

        # U1 in each guild: in shard 0's guild the process that ran the parent shows it; in shard 1's the
        # press, the child's status and its result are the second process's, the run the first's.
        children = []
        for place in (zero, one):
            parent = jobs[place.shard][0]
            (grid,) = cluster.results_of(parent)
            children.append(await cluster.press(place, grid, f"ci:upscale_2x:{parent}:1"))
        await cluster.wait_shown(children)
        assert await cluster.holders() == {"gpu0": first.pid, "gpu1": first.pid}
        assert await cluster.metric(0, RESULT_POSTS) == 3
        assert await cluster.metric(1, RESULT_POSTS) == 3
        for child in children:
            job = await cluster.store.get(child)
            assert job is not None and job.parent_job_id is not None
        await cluster.assert_each_job_done_once()
