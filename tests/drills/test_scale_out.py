"""Drills of the scale-out (issue 11): two real bot processes, one Discord shard each, on one PostgreSQL
database and two ComfyUIs. Processes are killed, stopped and restarted, PostgreSQL too, and a process's
event relay connection is cut; each drill ends with every job completed exactly once (no prompt ran twice,
one result per job, in its channel, mentioning its owner) and nothing lost. The harness is
tests/drills/_cluster.py.

The first process started takes both backends' leases (a process takes every free lease and keeps it
while it renews), so the other one drives no backend until the first goes: results of the second shard's
guild are run by the first process and shown by the second, through the event relay.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from bot.jobs import JobStatus
from tests.drills._cluster import running_cluster
from tests.pg import Databases

HEALTHY = {"status": "ok", "discord": True, "database": True, "backends": {"gpu0": True, "gpu1": True}}
RESULT_POSTS = 'discord_posts_total{outcome="ok",purpose="result"}'


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
        # The database says which backend ran each job, the leases which process drives that backend.
        holders = await cluster.holders()
        for job_id in jobs[0] + jobs[1]:
            job = await cluster.store.get(job_id)
            assert job is not None and job.backend is not None and holders[job.backend] == first.pid
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
        for child, parent in zip(children, (jobs[0][0], jobs[1][0]), strict=True):
            job = await cluster.store.get(child)
            assert job is not None and job.parent_job_id == parent and job.backend is not None
        await cluster.assert_each_job_done_once()


async def test_kill9_of_the_process_driving_the_backends_mid_run_hands_them_over_and_its_shard_catches_up(
    tmp_path: Path, pg_databases: Databases
) -> None:
    async with running_cluster(tmp_path, pg_databases) as cluster:
        await cluster.start(0)
        second = await cluster.start(1)
        zero = cluster.places[0]
        for comfy in cluster.comfy:
            comfy.pause()
        jobs = {
            place.shard: [await cluster.imagine(place, f"a harbour {n} --seed {n}") for n in (1, 2)]
            for place in cluster.places
        }
        everything = jobs[0] + jobs[1]
        # Mid-run: on each backend one prompt holds at its first sampler step, another waits in its queue;
        # every status message is recorded.
        for comfy in cluster.comfy:
            await comfy.wait_paused()
            await comfy.wait_until(lambda comfy=comfy: len(comfy.received_bodies) == 2)
        await cluster.wait_jobs(everything, lambda job: job.status_message_id is not None)

        await cluster.kill(0)
        for comfy in cluster.comfy:
            comfy.resume()
        # The second process takes both backends once the leases run out, re-attaches to the four prompts
        # and shows its own guild's results; shard 0's guild has nobody to show its results.
        await cluster.wait_shown(jobs[1])
        await cluster.wait_jobs(jobs[0], lambda job: job.status is JobStatus.COMPLETED)
        assert await cluster.holders() == {"gpu0": second.pid, "gpu1": second.pid}
        assert not [m for job in jobs[0] for m in cluster.results_of(job)]
        assert sum(len(comfy.received_bodies) for comfy in cluster.comfy) == 4  # no prompt posted again

        # Shard 0 comes back: its process shows the results that finished meanwhile, and its guild works:
        # a new /imagine, and a U1 under a result the second process finished (the second runs both).
        await cluster.start(0)
        await cluster.wait_shown(jobs[0])
        again = await cluster.imagine(zero, "a harbour at night --seed 3")
        (grid,) = cluster.results_of(jobs[0][0])
        child = await cluster.press(zero, grid, f"ci:upscale_2x:{jobs[0][0]}:1")
        await cluster.wait_shown([again, child])
        assert await cluster.holders() == {"gpu0": second.pid, "gpu1": second.pid}
        await cluster.assert_each_job_done_once()


async def test_postgresql_restarted_mid_run_loses_no_job_and_runs_none_twice_and_healthz_reports_the_outage(
    tmp_path: Path, pg_databases: Databases
) -> None:
    server = pg_databases.server
    if not server.can_restart:
        pytest.skip("COMFY_IMAGINE_TEST_PG_URL names a server the tests cannot restart")
    async with running_cluster(tmp_path, pg_databases) as cluster:
        await cluster.start(0)
        await cluster.start(1)
        for comfy in cluster.comfy:
            comfy.pause()
        jobs = [
            await cluster.imagine(place, f"a mill {n} --seed {n}") for place in cluster.places for n in (1, 2)
        ]
        for comfy in cluster.comfy:
            await comfy.wait_paused()
            await comfy.wait_until(lambda comfy=comfy: len(comfy.received_bodies) == 2)
        await cluster.wait_jobs(jobs, lambda job: job.status_message_id is not None)
        for shard in (0, 1):
            assert await cluster.healthz(shard) == (200, HEALTHY)

        await asyncio.to_thread(server.stop)
        try:
            # While PostgreSQL is down both processes say so; the prompts finish meanwhile.
            for shard in (0, 1):
                status, body = await cluster.healthz(shard)
                assert (status, body["status"], body["database"], body["discord"]) == (
                    503,
                    "unhealthy",
                    False,
                    True,
                )
            for comfy in cluster.comfy:
                comfy.resume()
            for comfy in cluster.comfy:
                await comfy.wait_until(lambda comfy=comfy: len(comfy.finished_prompt_ids) == 2)
        finally:
            await asyncio.to_thread(server.start)

        await cluster.wait_shown(jobs)
        for shard in (0, 1):
            assert await cluster.healthz(shard) == (200, HEALTHY)
        again = [await cluster.imagine(place, "a mill at dawn --seed 5") for place in cluster.places]
        await cluster.wait_shown(again)
        await cluster.assert_each_job_done_once()


async def test_a_result_finished_while_the_shard_holders_event_relay_was_cut_is_shown_when_it_reconnects(
    tmp_path: Path, pg_databases: Databases
) -> None:
    async with running_cluster(tmp_path, pg_databases) as cluster:
        await cluster.start(0)
        second = await cluster.start(1)
        one = cluster.places[1]
        for comfy in cluster.comfy:
            comfy.pause()
        # Run by the first process (it drives both backends), shown by the second.
        job = await cluster.imagine(one, "a windmill --seed 9")
        await cluster.wait_jobs([job], lambda j: j.status_message_id is not None and j.backend is not None)
        # The second process's relay connection is cut (as a network blip or PostgreSQL's own hiccup would);
        # the job finishes before the relay is back, so its Completed notification never reaches it.
        conn = await asyncpg.connect(cluster.database_url)
        try:
            cut = await conn.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                "WHERE application_name LIKE $1",
                f"comfy-imagine relay %:{second.pid}:%",
            )
        finally:
            await conn.close()
        assert cut == 1
        for comfy in cluster.comfy:
            comfy.resume()
        await cluster.wait_shown([job])
        await cluster.assert_each_job_done_once()


async def test_a_rolling_restart_of_both_processes_under_a_backlog_completes_every_job_once(
    tmp_path: Path, pg_databases: Databases
) -> None:
    async with running_cluster(tmp_path, pg_databases, step_time=0.05) as cluster:
        await cluster.start(0)
        await cluster.start(1)
        for comfy in cluster.comfy:
            comfy.pause()
        # Ten jobs, five a guild: two in each ComfyUI (one running, one in its queue), six waiting.
        jobs = [
            await cluster.imagine(place, f"a lantern {n} --seed {n}")
            for n in range(5)
            for place in cluster.places
        ]
        for comfy in cluster.comfy:
            await comfy.wait_paused()
            await comfy.wait_until(lambda comfy=comfy: len(comfy.received_bodies) == 2)
        await cluster.wait_jobs(jobs, lambda job: job.status_message_id is not None)

        # SIGTERM the process driving both backends mid-run; the other takes them over and the work goes
        # on until six prompts have started, then holds again (four jobs left, in ComfyUI or waiting).
        await cluster.stop(0)
        for comfy in cluster.comfy:
            comfy.resume()
        await cluster.comfy[0].wait_until(lambda: sum(len(c.executed_prompt_ids) for c in cluster.comfy) >= 6)
        for comfy in cluster.comfy:
            comfy.pause()
        await cluster.start(0)
        # Then the other one, which drives the backends now, mid-run too.
        assert set((await cluster.holders()).values()) == {cluster.bots[1].pid}
        await cluster.stop(1)
        for comfy in cluster.comfy:
            comfy.resume()
        await cluster.start(1)

        await cluster.wait_shown(jobs, timeout=60)
        assert set((await cluster.holders()).values()) == {cluster.bots[0].pid}
        await cluster.assert_each_job_done_once()
