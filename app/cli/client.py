"""Client commands: talk to a running netgrow server over HTTP.

`submit`, `status`, `watch`, `history`, `result`, `cancel`, `retry` and the server half of
`compare` (job ids instead of result files). ``ApiClient`` is the one place that
knows URLs and error bodies; `netgrow demo` drives its embedded server with it.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from app.sse import SSEMessage, parse_sse
from worker.store.models import TERMINAL_STATUSES, JobStatus

DEFAULT_SERVER = "http://127.0.0.1:8000"


class ApiError(Exception):
    """A non-2xx answer, with the server's explanation."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {describe_detail(detail)}")


def describe_detail(detail: Any) -> str:
    if isinstance(detail, list):  # FastAPI validation errors: name each field as the spec does
        return "; ".join(f"{field_path(item.get('loc', []))}: {item.get('msg')}"
                         for item in detail if isinstance(item, dict))
    return str(detail)


def field_path(loc: list[Any]) -> str:
    """``["body", "model", "layers", 2]`` → ``model.layers[2]``; a header or query keeps its name."""
    where, *parts = loc or ["body"]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or str(where)


class ApiClient:
    """A thin synchronous client for the /v1 API."""

    def __init__(self, server: str, key: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, response: httpx.Response) -> Any:
        if response.is_success:
            return response.json()
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):
            detail = response.text
        raise ApiError(response.status_code, detail)

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json(self.http.post("/v1/jobs", json=spec, headers=headers))

    def upload_dataset(self, path: Path) -> dict[str, Any]:
        """POST /v1/datasets, the file streamed from disk; the server checks every array or image first."""
        with open(path, "rb") as handle:
            response = self.http.post("/v1/datasets", files={"file": (path.name, handle)},
                                      timeout=httpx.Timeout(30.0, write=None, read=600.0))
        return self._json(response)

    def datasets(self) -> dict[str, Any]:
        return self._json(self.http.get("/v1/datasets"))

    def download(self, path: str, out: Path) -> Path:
        """Stream ``GET path`` into ``out``, through a temporary file renamed once the body is complete."""
        temporary = out.with_name(f".{out.name}.part")
        try:
            with self.http.stream("GET", path, timeout=httpx.Timeout(30.0, read=600.0)) as response:
                if not response.is_success:
                    response.read()
                    self._json(response)
                with open(temporary, "wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
            os.replace(temporary, out)
        finally:
            temporary.unlink(missing_ok=True)
        return out

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/jobs/{job_id}"))

    def jobs(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._json(self.http.get("/v1/jobs", params=params))

    def history(self, job_id: str, *, units: list[str] | None = None, from_epoch: int | None = None,
                to_epoch: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"unit": units or []}
        if from_epoch is not None:
            params["from_epoch"] = from_epoch
        if to_epoch is not None:
            params["to_epoch"] = to_epoch
        return self._json(self.http.get(f"/v1/jobs/{job_id}/history", params=params))

    def result(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/jobs/{job_id}/result"))

    def architecture(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/jobs/{job_id}/architecture"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.post(f"/v1/jobs/{job_id}/cancel"))

    def retry(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.post(f"/v1/jobs/{job_id}/retry"))

    def compare(self, job_ids: list[str], fmt: str = "markdown") -> str:
        response = self.http.get("/v1/compare", params={"ids": ",".join(job_ids), "format": fmt})
        if not response.is_success:
            self._json(response)
        return response.text

    def plot(self, job_id: str, name: str, fmt: str = "svg") -> bytes:
        """A job's picture (timeline, heatmap or curves) as SVG or PNG bytes."""
        return self._bytes(self.http.get(f"/v1/jobs/{job_id}/plots/{name}.{fmt}"))

    def compare_plot(self, job_ids: list[str], fmt: str = "svg", measure: str = "params") -> bytes:
        return self._bytes(self.http.get(f"/v1/compare/plot.{fmt}",
                                         params={"ids": ",".join(job_ids), "measure": measure}))

    def _bytes(self, response: httpx.Response) -> bytes:
        if not response.is_success:
            self._json(response)
        return response.content

    def events(self, job_id: str, *, last_event_id: int = 0, reconnects: int = 5) -> Iterator[SSEMessage]:
        """Follow the job's SSE stream to its end, reconnecting with Last-Event-ID if the connection drops."""
        failures = 0
        while True:
            headers = {"Last-Event-ID": str(last_event_id), "Accept": "text/event-stream"}
            try:
                with self.http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers,
                                      timeout=httpx.Timeout(30.0, read=None)) as response:
                    if not response.is_success:
                        response.read()
                        self._json(response)
                    for message in parse_sse(response.iter_lines()):
                        if message.id is not None:
                            last_event_id = int(message.id)
                        failures = 0
                        yield message
                        if message.event == "state" and message.json().get("status") in TERMINAL_STATUSES:
                            return
                return  # the server closed the stream after the terminal event
            except (httpx.TransportError, httpx.RemoteProtocolError):
                failures += 1
                if failures > reconnects:
                    raise
                time.sleep(min(2.0**failures, 10.0))


def follow(client: ApiClient, job_id: str, *, quiet: bool = False, label: str | None = None) -> dict[str, Any]:
    """Show a live progress bar for a job from its event stream; returns the final job."""
    from tqdm import tqdm

    job = client.job(job_id)
    bar = tqdm(total=job["progress"]["total"], unit="epoch", desc=label or job["method"], disable=quiet,
               dynamic_ncols=True, file=sys.stderr)
    try:
        for message in client.events(job_id):
            payload = message.json()
            if message.event == "epoch":
                bar.n = int(payload["epoch"]) + 1
                widths = " ".join(str(unit["width"]) for unit in payload.get("units", []))
                bar.set_postfix_str(f"{payload.get('phase', '')} loss={_fmt(payload.get('train_loss'))} "
                                    f"val={_fmt(payload.get('val_accuracy'))} widths=[{widths}]", refresh=False)
                bar.refresh()
            elif message.event == "architecture":
                grown = ", ".join(f"{unit} {old}→{new}" for unit, (old, new) in payload.get("units", {}).items())
                bar.write(f"epoch {payload.get('epoch')}: {payload.get('change')} {grown}")
            elif message.event == "state" and payload.get("status") == JobStatus.SUCCEEDED:
                bar.total = bar.n  # growth can stop before the epoch budget is spent
                bar.refresh()
    finally:
        bar.close()
    return client.job(job_id)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


# --- commands -------------------------------------------------------------------------


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("NETGROW_SERVER", DEFAULT_SERVER),
                        help="netgrow server URL (env NETGROW_SERVER; default %(default)s)")
    parser.add_argument("--key", default=os.environ.get("NETGROW_API_KEY"),
                        help="API key (env NETGROW_API_KEY); create one with `netgrow keys create NAME`")


def register(subparsers: argparse._SubParsersAction) -> None:
    submit = subparsers.add_parser("submit", help="submit a job spec to a server")
    submit.add_argument("spec", type=Path, help="job spec JSON, e.g. examples/digits-vgg-grow.json")
    submit.add_argument("--idempotency-key", help="retry-safe submission: the same key returns the same job")
    submit.add_argument("--watch", action="store_true", help="follow the job with a progress bar until it ends")
    submit.set_defaults(handler=submit_command)

    status = subparsers.add_parser("status", help="show a job's status, progress and metrics")
    status.add_argument("job_id")
    status.set_defaults(handler=status_command)

    watch = subparsers.add_parser("watch", help="follow a job live (progress bar from its event stream)")
    watch.add_argument("job_id")
    watch.set_defaults(handler=watch_command)

    history = subparsers.add_parser("history", help="per-epoch metrics and unit widths of a job")
    history.add_argument("job_id")
    history.add_argument("--unit", action="append", help="only this unit (repeatable), e.g. conv1")
    history.add_argument("--from-epoch", type=int)
    history.add_argument("--to-epoch", type=int)
    history.add_argument("--json", action="store_true", help="print the raw JSON")
    history.set_defaults(handler=history_command)

    result = subparsers.add_parser("result", help="a succeeded job's result JSON, as `netgrow grow --out` writes it")
    result.add_argument("job_id")
    result.add_argument("--out", type=Path, help="where to write it (default: print it)")
    result.set_defaults(handler=result_command)

    for name, handler, text in (("cancel", cancel_command, "cancel a queued or running job"),
                                ("retry", retry_command, "re-queue a failed or canceled job (resumes)")):
        parser = subparsers.add_parser(name, help=text)
        parser.add_argument("job_id")
        parser.set_defaults(handler=handler)

    for name in ("submit", "status", "watch", "history", "result", "cancel", "retry"):
        add_connection_arguments(subparsers.choices[name])


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(args.server, args.key)


Command = Callable[[argparse.Namespace], int]


def talks_to_server(command: Command) -> Command:
    """The client commands' one error path: a refusal or an unreachable server is one line on stderr, exit 1."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ApiError as exc:
            hint = " (set --key or NETGROW_API_KEY)" if exc.status_code == 401 else ""
            print(f"error: {exc}{hint}", file=sys.stderr)
        except httpx.HTTPError as exc:
            print(f"error: cannot reach the server: {exc}", file=sys.stderr)
        return 1

    return run


@talks_to_server
def submit_command(args: argparse.Namespace) -> int:
    from app.cli.local import read_json

    spec = read_json(args.spec, "spec")
    with _client(args) as client:
        job = client.submit(spec, args.idempotency_key or str(uuid.uuid4()))
        print(f"submitted job {job['id']} ({job['method']}, {job['status']})")
        print(f"  follow it: netgrow watch {job['id']}")
        if args.watch:
            job = follow(client, job["id"])
            print_job(job)
            return 0 if job["status"] == JobStatus.SUCCEEDED else 1
        print(job["id"])
    return 0


@talks_to_server
def status_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print_job(client.job(args.job_id))
    return 0


@talks_to_server
def watch_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = follow(client, args.job_id)
    print_job(job)
    return 0 if job["status"] == JobStatus.SUCCEEDED else 1


@talks_to_server
def history_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        history = client.history(args.job_id, units=args.unit, from_epoch=args.from_epoch, to_epoch=args.to_epoch)
    if args.json:
        print(json.dumps(history, indent=1))
        return 0
    epochs = history["epochs"]
    units = [unit["name"] for unit in epochs[0]["units"]] if epochs else []
    print("| epoch | phase | loss | val acc | params | " + " | ".join(units) + " |")
    print("|---:|---|---:|---:|---:|" + "---:|" * len(units))
    for row in epochs:
        widths = {unit["name"]: f"{unit['selected']}/{unit['width']}" for unit in row["units"]}
        print(f"| {row['epoch']} | {row['phase']} | {_fmt(row['train_loss'])} | {_fmt(row['val_accuracy'])} | "
              f"{row['params']:,} | " + " | ".join(widths.get(name, "") for name in units) + " |")
    return 0


@talks_to_server
def result_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        text = json.dumps(client.result(args.job_id), indent=1)
    if args.out is None:
        print(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"result written to {args.out}")
    return 0


@talks_to_server
def cancel_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print_job(client.cancel(args.job_id))
    return 0


@talks_to_server
def retry_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print_job(client.retry(args.job_id))
    return 0


@talks_to_server
def compare_jobs(args: argparse.Namespace) -> int:
    """The server half of `netgrow compare`: arguments are job ids."""
    with _client(args) as client:
        text = client.compare(args.items, args.format)
    if args.out is not None:
        args.out.write_text(text)
        print(f"comparison written to {args.out}")
    else:
        print(text.rstrip("\n"))
    return 0


@talks_to_server
def plot_jobs(args: argparse.Namespace) -> int:
    """The server half of `netgrow plot`: arguments are job ids, the server draws."""
    from app.cli.plot import plot_jobs as download

    with _client(args) as client:
        return download(client, args.items, args)


def print_job(job: dict[str, Any]) -> None:
    progress, metrics = job["progress"], job["metrics"]
    print(f"job {job['id']}: {job['method']} {job['status']}  "
          f"epoch {progress['epoch']}/{progress['total']}  attempts {job['attempts']}/{job['max_attempts']}")
    if job.get("current_widths"):
        print("  widths: " + ", ".join(f"{name}={width}" for name, width in job["current_widths"].items()))
    if metrics.get("test_accuracy") is not None:
        print(f"  test accuracy {metrics['test_accuracy']:.2%}, {metrics['params']:,} params, "
              f"{metrics['macs']:,} MACs, {metrics['wall_seconds']:.1f} s")
    if job.get("error"):
        print(f"  error: {job['error']}")
