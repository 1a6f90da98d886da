"""Prometheus metrics and /healthz: the arithmetic, the endpoint through the real bot, and `comfy-imagine health`."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.jobs import QueueSnapshot
from bot.metrics import Health, Metrics, MetricsError, MetricsServer
from tests.cli import run_cli
from tests.e2e import running_bot, status_message, wait_for_result
from tests.factories import FakeClock
from tests.fakes.discord_server import EDIT_ROUTE

EMPTY = QueueSnapshot(by_status={}, queued_by_guild={})


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


# ------------------------------------------------------------------------------------------ the arithmetic


def test_busy_ratio_and_busy_seconds_follow_the_prompts_executing_on_a_backend() -> None:
    clock = FakeClock(frozen=True)
    metrics = Metrics(clock=clock, window_s=60)
    metrics.add_backend("gpu0")
    metrics.add_backend("gpu1")
    clock.now += 10
    metrics.prompt_started("gpu0")
    clock.now += 20
    metrics.prompt_started("gpu0")  # a second prompt overlapping (max_running 2): still one busy span
    clock.now += 10
    metrics.prompt_stopped("gpu0")
    clock.now += 5
    metrics.prompt_stopped("gpu0")
    clock.now += 15  # t = 60 s: busy from 10 s to 45 s
    metrics.update(EMPTY)
    text = metrics.exposition().decode()

    assert value(text, "comfy_imagine_backend_busy_ratio", backend="gpu0") == pytest.approx(35 / 60)
    assert value(text, "comfy_imagine_backend_busy_seconds_total", backend="gpu0") == pytest.approx(35)
    assert value(text, "comfy_imagine_backend_busy_ratio", backend="gpu1") == 0

    metrics.prompt_started("gpu0")
    clock.now += 30  # t = 90 s: the window is 30..90, busy 30..45 and 60..90
    metrics.update(EMPTY)
    text = metrics.exposition().decode()
    assert value(text, "comfy_imagine_backend_busy_ratio", backend="gpu0") == pytest.approx(45 / 60)
    # the running prompt is credited up to the scrape, and not again when it stops
    assert value(text, "comfy_imagine_backend_busy_seconds_total", backend="gpu0") == pytest.approx(65)
    clock.now += 10
    metrics.prompt_stopped("gpu0")
    metrics.prompt_stopped("gpu0")  # an extra stop is ignored
    metrics.update(EMPTY)
    assert value(
        metrics.exposition().decode(), "comfy_imagine_backend_busy_seconds_total", backend="gpu0"
    ) == (pytest.approx(75))


def test_step_rate_counts_the_steps_of_the_last_window() -> None:
    clock = FakeClock(frozen=True)
    metrics = Metrics(clock=clock, window_s=60)
    metrics.add_backend("gpu0")
    for _ in range(120):
        clock.now += 0.5
        metrics.sampler_step("gpu0")  # 2 steps/s for 60 s
    clock.now += 30  # the first 30 s of steps fall out of the window
    metrics.update(EMPTY)
    text = metrics.exposition().decode()

    assert value(text, "comfy_imagine_sampler_steps_total", backend="gpu0") == 120
    assert value(text, "comfy_imagine_sampler_step_rate", backend="gpu0") == pytest.approx(60 / 60)


def test_queue_gauges_come_from_the_snapshot_and_guilds_that_emptied_disappear() -> None:
    metrics = Metrics()
    metrics.update(QueueSnapshot({"queued": 5, "submitted": 1, "running": 1}, {111: 4, 222: 1}))
    metrics.update(QueueSnapshot({"queued": 4, "submitted": 0, "running": 1}, {111: 4}))
    text = metrics.exposition().decode()

    assert value(text, "comfy_imagine_queue_depth", guild="111") == 4
    assert value(text, "comfy_imagine_queue_depth", guild="222") is None
    assert value(text, "comfy_imagine_jobs", status="queued") == 4
    assert value(text, "comfy_imagine_jobs", status="submitted") == 0


# ------------------------------------------------------------------------------------------ the endpoint


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_a_port_in_use_is_an_error_naming_the_config_key(busy_port: int) -> None:
    async def snapshot() -> QueueSnapshot:
        return EMPTY

    async def health() -> Health:
        return Health(True, {})

    server = MetricsServer(Metrics(), host="127.0.0.1", port=busy_port, snapshot=snapshot, health=health)
    with pytest.raises(MetricsError, match=r"metrics\.port"):
        await server.start()


async def test_healthz_is_503_with_the_reason_when_a_check_fails_or_raises() -> None:
    answers: list[Health | Exception] = [Health(False, {"discord": False}), RuntimeError("database on fire")]

    async def snapshot() -> QueueSnapshot:
        raise RuntimeError("no database")

    async def health() -> Health:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    server = MetricsServer(Metrics(), host="127.0.0.1", port=0, snapshot=snapshot, health=health)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{server.port}"
            first = await session.get(f"{base}/healthz")
            second = await session.get(f"{base}/healthz")
            scrape = await session.get(f"{base}/metrics")  # the queue gauges fail; the counters still answer
            bodies = [await first.json(), await second.json()]
            scrape_text = await scrape.text()
    finally:
        await server.close()

    assert (first.status, second.status) == (503, 503)
    assert bodies[0] == {"status": "unhealthy", "discord": False}
    assert bodies[1]["status"] == "unhealthy" and "database on fire" in bodies[1]["error"]
    assert scrape.status == 200 and "comfy_imagine_jobs_ended_total" in scrape_text


async def test_the_running_bot_serves_job_backend_and_discord_metrics_and_a_healthy_healthz(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, config_extra="[metrics]\nport = 0\n") as e2e:
        server = e2e.bot.metrics_server
        assert server is not None
        base = f"http://127.0.0.1:{server.port}"
        fake, comfy = e2e.discord, e2e.comfy[0]
        done = await status_message(await fake.slash_command("imagine", {"prompt": "a lighthouse --seed 1"}))
        await wait_for_result(e2e, done.id)
        comfy.pause()
        for prompt in ("one", "two", "three"):  # one runs, one waits in ComfyUI (prefetch), one in the bot
            await fake.slash_command("imagine", {"prompt": prompt})
        await comfy.wait_paused()
        await comfy.wait_until(lambda: len(comfy.pending_ids) == 1)
        async with aiohttp.ClientSession() as session:
            scrape = await session.get(f"{base}/metrics")
            text = await scrape.text()
            steps_done = comfy.steps_done  # the sampler is paused: no step runs meanwhile
            health = await session.get(f"{base}/healthz")
            health_body = await health.json()
        comfy.resume()
        code, out, err = await run_cli("health", "--config", str(_with_port(tmp_path, server.port)))

    guild = str(fake.guild.id)
    assert scrape.status == 200
    assert value(text, "comfy_imagine_jobs_ended_total", status="completed") == 1
    assert value(text, "comfy_imagine_jobs", status="queued") == 1
    assert value(text, "comfy_imagine_jobs", status="running") == 1
    assert value(text, "comfy_imagine_jobs", status="submitted") == 1
    assert value(text, "comfy_imagine_queue_depth", guild=guild) == 1
    assert value(text, "comfy_imagine_backend_up", backend="gpu0") == 1
    assert value(text, "comfy_imagine_sampler_steps_total", backend="gpu0") == steps_done
    assert 0 < (value(text, "comfy_imagine_backend_busy_ratio", backend="gpu0") or 0) <= 1
    assert (value(text, "comfy_imagine_backend_busy_seconds_total", backend="gpu0") or 0) > 0
    assert value(text, "comfy_imagine_discord_posts_total", purpose="result", outcome="ok") == 1
    assert value(text, "comfy_imagine_discord_edits_total", purpose="result", outcome="ok") is None
    assert (value(text, "comfy_imagine_discord_edits_total", purpose="progress", outcome="ok") or 0) >= 1
    assert health.status == 200, health_body
    assert health_body == {"status": "ok", "discord": True, "database": True, "backends": {"gpu0": True}}
    assert (code, err) == (0, "")
    assert out.startswith("healthy: ") and json.loads(out.removeprefix("healthy: "))["status"] == "ok"


def _with_port(folder: Path, port: int) -> Path:
    """The e2e config with `[metrics] port` set to the port the bot took (for `comfy-imagine health`)."""
    source = (folder / "config.toml").read_text(encoding="utf-8")
    path = folder / "health.toml"
    path.write_text(source.replace("port = 0", f"port = {port}"), encoding="utf-8")
    return path


async def test_health_command_without_a_port_is_a_usage_error_and_with_nothing_listening_fails(
    write_config: object, busy_port: int
) -> None:
    unset = write_config()  # type: ignore[operator]
    closed_port = _free_port()
    silent = write_config(extra=f"\n[metrics]\nport = {closed_port}\n", name="silent.toml")  # type: ignore[operator]

    unset_result = await run_cli("health", "--config", str(unset))
    silent_result = await run_cli("health", "--config", str(silent))

    assert unset_result[0] == 2 and "metrics.port is not set" in unset_result[2]
    assert silent_result[0] == 1 and f"127.0.0.1:{closed_port}" in silent_result[2]
    assert "metrics.port" in silent_result[2]


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_429s_discord_py_waits_out_are_counted(tmp_path: Path) -> None:
    async with running_bot(tmp_path, config_extra="[metrics]\nport = 0\n") as e2e:
        server = e2e.bot.metrics_server
        assert server is not None
        fake = e2e.discord
        fake.fail_next(EDIT_ROUTE, 429, count=2, retry_after=0.05)
        fake.fail_next(EDIT_ROUTE, 429, retry_after=0.05, is_global=True)
        done = await status_message(await fake.slash_command("imagine", {"prompt": "a crowded channel"}))
        await wait_for_result(e2e, done.id)
        async with aiohttp.ClientSession() as session:
            text = await (await session.get(f"http://127.0.0.1:{server.port}/metrics")).text()

    seen = sum(1 for c in fake.calls_to(EDIT_ROUTE) if c.status == 429)
    assert seen == 3
    assert value(text, "comfy_imagine_discord_rate_limited_total") == seen
    assert value(text, "comfy_imagine_discord_global_rate_limited_total") == 1
