"""Server-side commands: `serve`, `migrate`, `keys create|revoke`, `check` and `demo`.

They act on the database and broker named by the ``NETGROW_*`` settings. In
embedded mode (no broker) `serve` and `keys create` bring the SQLite schema up
to date first, so a workstation needs no setup step; with a broker, migrating
is the deployment's separate `netgrow migrate` step.
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from worker.store.models import JobStatus
from worker.store.settings import Settings, get_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run the HTTP API (and, without a broker, the jobs too)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--migrate", action=argparse.BooleanOptionalAction, default=None,
                       help="apply database migrations before serving (default: only in embedded mode)")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    serve.set_defaults(handler=serve_command)

    migrate = subparsers.add_parser("migrate", help="bring the database schema up to date (Alembic)")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(handler=migrate_command)

    keys = subparsers.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create an API key for NAME (printed once, as the last line)")
    create.add_argument("name", help="the owner: jobs submitted with the key belong to NAME")
    create.set_defaults(handler=keys_create_command)
    revoke = key_commands.add_parser("revoke", help="revoke the keys whose shown prefix is PREFIX")
    revoke.add_argument("prefix")
    revoke.set_defaults(handler=keys_revoke_command)

    check = subparsers.add_parser("check", help="exit 0 if the database and/or broker are reachable (healthchecks)")
    check.add_argument("--database", action="store_true")
    check.add_argument("--broker", action="store_true")
    check.set_defaults(handler=check_command)

    demo = subparsers.add_parser("demo", help="grow a VGG on the digits data end to end, with a dense baseline")
    demo.add_argument("--data-dir", type=Path, help="keep the database and artifacts here (default: a temp dir)")
    demo.add_argument("--grow-spec", type=Path, default=EXAMPLES / "digits-vgg-grow.json")
    demo.add_argument("--dense-spec", type=Path, default=EXAMPLES / "digits-vgg-dense.json")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--serve", action=argparse.BooleanOptionalAction, default=None,
                      help="keep serving the dashboard after the demo until Ctrl+C (default: when run in a terminal)")
    demo.set_defaults(handler=demo_command)


# --- serve, migrate, keys, check ------------------------------------------------------------------


def migrate_database(settings: Settings, revision: str = "head") -> None:
    from worker.store.migrate import upgrade

    upgrade(settings.database_url, revision)


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    settings = get_settings()
    if args.migrate or (args.migrate is None and settings.embedded):
        migrate_database(settings)
    mode = "embedded (jobs run in this process)" if settings.embedded else f"broker {_redact(settings.broker_url)}"
    print(f"netgrow serving on http://{args.host}:{args.port} — {mode}; docs at /docs", file=sys.stderr)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                proxy_headers=True, timeout_graceful_shutdown=30)
    return 0


def migrate_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    migrate_database(settings, args.revision)
    print(f"database {_redact(settings.database_url)} is at revision {args.revision}")
    return 0


def keys_create_command(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from worker.store.session import session_scope
    from worker.store.keys import create_key

    settings = get_settings()
    if settings.embedded:
        migrate_database(settings)
    try:
        with session_scope(settings.database_url) as session:
            secret = create_key(session, args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OperationalError, ProgrammingError) as exc:
        print(f"error: cannot store the key ({type(exc).__name__}); is the database migrated? "
              f"(netgrow migrate)", file=sys.stderr)
        return 1
    print(f"API key for {args.name.strip()!r} (shown once; send it as 'Authorization: Bearer <key>'):")
    print(secret)
    return 0


def keys_revoke_command(args: argparse.Namespace) -> int:
    from worker.store.session import session_scope
    from worker.store.keys import revoke_key

    with session_scope(get_settings().database_url) as session:
        revoked = revoke_key(session, args.prefix)
    print(f"revoked {revoked} key{'s' if revoked != 1 else ''} with prefix {args.prefix!r}")
    return 0 if revoked else 1


def check_command(args: argparse.Namespace) -> int:
    from worker.store.health import HEALTHY, check_broker, check_database
    from worker.store.session import session_factory

    settings = get_settings()
    results = {}
    if args.database or not args.broker:
        results["database"] = check_database(session_factory(settings.database_url))
    if args.broker or not args.database:
        results["broker"] = check_broker(settings)
    for name, result in results.items():
        print(f"{name}: {result}")
    return 0 if all(result in HEALTHY for result in results.values()) else 1


def _redact(url: str | None) -> str:
    from sqlalchemy import make_url

    if url is None:
        return "none"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (redis://): drop any credentials
        return url.split("@")[-1]


# --- demo -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BackgroundServer:
    """uvicorn serving an app on a thread of this process (the demo's embedded server)."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="netgrow-demo-server", daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def demo_command(args: argparse.Namespace) -> int:
    from app.cli.client import ApiClient, follow
    from app.cli.local import read_json
    from app.main import create_app
    from worker.store.session import session_scope
    from worker.store.keys import create_key

    grow_spec = read_json(args.grow_spec, "spec")
    dense_spec = read_json(args.dense_spec, "spec")
    data_dir = (args.data_dir or Path(tempfile.mkdtemp(prefix="netgrow-demo-"))).resolve()
    settings = Settings(database_url=f"sqlite:///{data_dir / 'netgrow.db'}", artifact_dir=data_dir / "artifacts",
                        broker_url=None)
    print(f"demo data in {data_dir}")
    migrate_database(settings)
    with session_scope(settings.database_url) as session:
        key = create_key(session, "demo")

    with BackgroundServer(create_app(settings), free_port()) as server, ApiClient(server.url, key) as client:
        print(f"server on {server.url} (embedded worker; API docs at {server.url}/docs)")
        grow = client.submit(grow_spec)
        dense = client.submit(dense_spec)
        print(f"submitted {grow['method']} job {grow['id']} and {dense['method']} baseline {dense['id']}")
        grow = follow(client, grow["id"], quiet=args.quiet, label="grow")
        dense = follow(client, dense["id"], quiet=args.quiet, label="dense")
        failed = [job for job in (grow, dense) if job["status"] != JobStatus.SUCCEEDED]
        if failed:
            for job in failed:
                print(f"error: job {job['id']} {job['status']}: {job.get('error')}", file=sys.stderr)
            return 1
        architecture = client.architecture(grow["id"])["model"]
        widths = ", ".join(f"{unit}={width}" for unit, width in (grow["current_widths"] or {}).items())
        print(f"\ngrown architecture ({widths}), usable as the `model` of a new job:")
        print(json.dumps(architecture))
        print("\ncomparison with the dense baseline:\n")
        print(client.compare([dense["id"], grow["id"]], "markdown").rstrip("\n"))
        pictures = write_demo_pictures(client, grow["id"], dense["id"], data_dir / "pictures")
        print(f"\npictures of the run in {pictures}:")
        for path in sorted(pictures.iterdir()):
            print(f"  {path.name}")
        print(f"\ndashboard: {server.url}/ui/  (API key: {key})")
        serve = args.serve if args.serve is not None else sys.stdin.isatty() and sys.stdout.isatty()
        if serve:
            print("serving the dashboard until you press Ctrl+C", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print()
    return 0


def write_demo_pictures(client: Any, grow_id: str, dense_id: str, folder: Path) -> Path:
    """The grown job's timeline, heatmap and curves and the comparison with the baseline, as SVG and PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("timeline", "heatmap", "curves"):
        for fmt in ("svg", "png"):
            (folder / f"grow-{name}.{fmt}").write_bytes(client.plot(grow_id, name, fmt))
    for fmt in ("svg", "png"):
        (folder / f"comparison.{fmt}").write_bytes(client.compare_plot([dense_id, grow_id], fmt))
    return folder
