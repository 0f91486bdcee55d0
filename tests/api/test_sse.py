"""The SSE wire format both ways, and when the job event stream ends (no server needed)."""
from __future__ import annotations

import anyio

from app.queries import StoredEvent
from app.sse import format_comment, format_event, job_event_stream, parse_sse


def test_frames_parse_back_to_the_same_messages() -> None:
    wire = (format_comment("stream open") + format_event(7, "epoch", {"epoch": 0, "text": "a\nb"})
            + format_comment("heartbeat") + format_event(8, "state", {"status": "succeeded"})).decode()
    messages = list(parse_sse(wire.splitlines(keepends=True)))
    assert [(m.id, m.event) for m in messages] == [("7", "epoch"), ("8", "state")]
    assert messages[0].json() == {"epoch": 0, "text": "a\nb"}  # a newline inside JSON stays escaped


def test_the_parser_follows_the_event_stream_rules() -> None:
    lines = ["retry: 100", "data: first", "data:second", "", "event: state\r\n", "id: 3", "data: {}", "", "data: x"]
    messages = list(parse_sse(lines))
    assert [(m.event, m.data, m.id) for m in messages] == [("message", "first\nsecond", None), ("state", "{}", "3")]


class Job:
    """A job's event table and status, as the stream reads them."""

    def __init__(self, events: list[tuple[str, dict]], status: str) -> None:
        self.rows = [StoredEvent(i + 1, kind, payload) for i, (kind, payload) in enumerate(events)]
        self.status = status
        self.reads = 0

    def events_after(self, cursor: int) -> list[StoredEvent]:
        self.reads += 1
        return [row for row in self.rows if row.id > cursor][:2]  # small batches, as with a real LIMIT

    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "canceled")


def collect(job: Job, last_event_id: int = 0, *, on_idle=None, limit: int = 100) -> list[str]:
    async def run() -> list[str]:
        frames = []
        stream = job_event_stream(job.events_after, job.finished, last_event_id=last_event_id,
                                  poll_seconds=0.001, heartbeat_seconds=0.002)
        async for frame in stream:
            frames.append(frame.decode().strip())
            if frame.startswith(b": heartbeat") and on_idle is not None:
                on_idle(job)
            if len(frames) >= limit:
                break
        return frames

    return anyio.run(run)


def events_of(frames: list[str]) -> list[str]:
    return [f.split("\n")[1].removeprefix("event: ") + ":" + f.split("\n")[0].removeprefix("id: ")
            for f in frames if f.startswith("id:")]


FINISHED = [("state", {"status": "queued"}), ("state", {"status": "running"}), ("epoch", {"epoch": 0}),
            ("epoch", {"epoch": 1}), ("state", {"status": "succeeded"})]


def test_a_finished_job_streams_everything_then_ends() -> None:
    frames = collect(Job(FINISHED, "succeeded"))
    assert frames[0] == ": stream open"
    assert events_of(frames) == ["state:1", "state:2", "epoch:3", "epoch:4", "state:5"]


def test_a_reconnect_gets_only_later_events_or_none() -> None:
    assert events_of(collect(Job(FINISHED, "succeeded"), last_event_id=3)) == ["epoch:4", "state:5"]
    assert collect(Job(FINISHED, "succeeded"), last_event_id=5) == [": stream open"]


def test_a_retried_job_goes_on_past_its_first_terminal_event() -> None:
    retried = [*FINISHED[:2], ("state", {"status": "canceled"}), ("state", {"status": "queued"}),
               ("state", {"status": "running"}), ("epoch", {"epoch": 0}), ("state", {"status": "failed"})]
    assert events_of(collect(Job(retried, "failed"))) == [f"{kind}:{i + 1}" for i, (kind, _) in enumerate(retried)]


def test_an_idle_stream_sends_heartbeats_until_the_job_ends() -> None:
    def finish(job: Job) -> None:
        job.rows.append(StoredEvent(3, "state", {"status": "canceled"}))
        job.status = "canceled"

    frames = collect(Job(FINISHED[:2], "running"), on_idle=finish)
    assert ": heartbeat" in frames
    assert events_of(frames) == ["state:1", "state:2", "state:3"]


def test_a_running_job_keeps_its_stream_open() -> None:
    frames = collect(Job(FINISHED[:4], "running"), limit=12)
    assert events_of(frames) == ["state:1", "state:2", "epoch:3", "epoch:4"]
    assert frames[-1] == ": heartbeat"  # still open when the client stopped reading
