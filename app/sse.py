"""Server-Sent Events: the wire format both ways, and the job event stream.

The stream replays rows of the ``job_events`` table in id order. The worker
writes those rows (possibly in another process or on another host) and the API
only reads them, so polling the table is what makes a live stream work across
processes. Row ids are the SSE ``id:`` field, so a client that reconnects with
``Last-Event-ID`` continues exactly where it stopped.
"""
from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio

from app.queries import StoredEvent


def format_event(event_id: int, event: str, data: Any) -> bytes:
    # json.dumps never emits a raw newline, so one `data:` line is always enough.
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    return f"id: {event_id}\nevent: {event}\ndata: {payload}\n\n".encode()


def format_comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


EventsAfter = Callable[[int], list[StoredEvent]]
"""Reads the events with id > the given id, oldest first (a bounded batch)."""

JobIsFinished = Callable[[], bool]


async def job_event_stream(
    events_after: EventsAfter,
    job_is_finished: JobIsFinished,
    *,
    last_event_id: int,
    poll_seconds: float,
    heartbeat_seconds: float,
) -> AsyncIterator[bytes]:
    """Yield SSE frames for a job until it has finished and its terminal state event has been sent.

    A terminal event alone does not end the stream: a canceled job that was
    retried has more to come. The two callables do blocking database reads;
    they run in a worker thread so that an idle stream holds no thread while it
    sleeps.
    """
    cursor = last_event_id
    terminal_sent = False
    idle = 0.0
    yield format_comment("stream open")
    while True:
        batch = await anyio.to_thread.run_sync(events_after, cursor)
        for event in batch:
            cursor = event.id
            yield format_event(event.id, event.kind, event.payload)
            if event.kind == "state":
                terminal_sent = event.is_terminal
        if batch and not terminal_sent:
            idle = 0.0
            continue
        if await anyio.to_thread.run_sync(job_is_finished):
            # The status and its state event commit together, so once the job reads as finished
            # every event up to its end is visible: if none is left to send, the stream is complete.
            if not await anyio.to_thread.run_sync(events_after, cursor):
                return
            continue  # retried and finished again in between: send those events too
        if batch:
            idle = 0.0
            continue
        await anyio.sleep(poll_seconds)
        idle += poll_seconds
        if idle >= heartbeat_seconds:
            idle = 0.0
            yield format_comment("heartbeat")


# --- client side ----------------------------------------------------------------------


@dataclass(frozen=True)
class SSEMessage:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(lines: Iterable[str]) -> Iterator[SSEMessage]:
    """Parse a text/event-stream given line by line (the HTML living standard's rules)."""
    event, data, last_id = "", [], None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SSEMessage(event=event or "message", data="\n".join(data), id=last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue  # comment: heartbeat or stream-open
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            last_id = value
