"""One prompt on one ComfyUI: post it, follow its events to the outcome, fetch its images (scheduler and CLI)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from comfy.client import ComfyClient, PromptWatch
from comfy.events import Event
from comfy.models import ImageRef
from comfy.outcome import Outcome
from comfy.progress import ProgressSnapshot, ProgressTracker

# Called with every event of the prompt and the overall progress when it changed.
EventHandler = Callable[[Event, ProgressSnapshot | None], Awaitable[None]]


class NoImages(Exception):
    """The prompt succeeded without an image to download."""


class PromptRun:
    """A prompt's watch (opened before the prompt is posted, so no event is missed) and its progress.

    The owner closes it (`close()`) when it no longer follows the prompt.
    """

    def __init__(
        self,
        client: ComfyClient,
        watch: PromptWatch,
        tracker: ProgressTracker,
        graph: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.watch = watch
        self.tracker = tracker
        self.graph = graph  # None for a prompt posted earlier (re-attached)

    @classmethod
    def new(cls, client: ComfyClient, graph: Mapping[str, Any], prompt_id: str) -> PromptRun:
        """A prompt about to be posted: its watch is open, its progress counts the graph's samplers."""
        return cls(client, client.watch(prompt_id), ProgressTracker.from_graph(graph), graph)

    @classmethod
    async def reattach(cls, client: ComfyClient, prompt_id: str) -> PromptRun:
        """A prompt posted earlier (before a restart); one that already ended ends from /history."""
        return cls(client, await client.reattach(prompt_id), ProgressTracker())

    @property
    def prompt_id(self) -> str:
        """The prompt's id (the one ComfyUI chose, if it ignored ours)."""
        return self.watch.prompt_id

    @property
    def done(self) -> bool:
        """Whether the outcome is known (or the watch was closed)."""
        return self.watch.done

    async def post(self) -> None:
        """Queue the graph on ComfyUI under this prompt's id; raises PromptRejected, BackendUnavailable, ..."""
        if self.graph is None:
            raise ValueError(f"prompt {self.prompt_id} was posted before; there is no graph to post")
        await self.client.queue_prompt(self.graph, self.watch.prompt_id)

    async def follow(
        self,
        on_event: EventHandler,
        *,
        check: Callable[[], None] | None = None,
        tick_s: float = 1.0,
    ) -> Outcome:
        """Hand every event to `on_event` until the prompt ends, then return its outcome.

        With `check`, it is called whenever `tick_s` passes without an event; it raises to stop following
        (a connection gone too long, a deadline).
        """
        if check is None:
            async for event in self.watch:
                await on_event(event, self.tracker.update(event))
            return await self.watch.result()
        events = aiter(self.watch)
        # One pending read that survives the ticks: cancelling and re-creating it each tick (wait_for)
        # could swallow a cancellation (Ctrl-C) that lands just as an event arrives.
        reader: asyncio.Task[Event | None] | None = None
        try:
            while True:
                if reader is None:
                    reader = asyncio.create_task(_next_event(events))
                done, _ = await asyncio.wait({reader}, timeout=tick_s)
                if not done:
                    check()
                    continue
                received, reader = reader.result(), None
                if received is None:
                    break
                await on_event(received, self.tracker.update(received))
        finally:
            if reader is not None:
                reader.cancel()
        return await self.watch.result()

    async def download(self, outcome: Outcome) -> list[tuple[ImageRef, bytes]]:
        """The outcome's output images (any images when none is marked output); NoImages when there is none."""
        refs = [ref for ref in outcome.images if ref.type == "output"] or list(outcome.images)
        if not refs:
            raise NoImages(f"prompt {outcome.prompt_id} finished without an image")
        return [(ref, await self.client.download_image(ref)) for ref in refs]

    def close(self) -> None:
        """Stop following the prompt."""
        self.watch.close()


async def _next_event(events: AsyncIterator[Event]) -> Event | None:
    """The watch's next event, None after the last."""
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None
