"""CLI commands that run the service: db, serve, worker, beat."""

from __future__ import annotations

import os

import typer
import uvicorn

from newsletter.migrate import downgrade, upgrade
from newsletter.web import intake_process

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    upgrade(revision=revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(...)) -> None:
    """Roll migrations back to REVISION ("base" empties the database)."""
    downgrade(revision=revision)
    typer.echo(f"database at {revision}")


def serve(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8000),
          workers: int = typer.Option(1, min=1, help="Processes serving requests (one per core is a good start)."),
          access_log: bool = typer.Option(True, "--access-log/--no-access-log",
                                          help="A line per request on stdout (a proxy in front often logs them)."),
          reload: bool = typer.Option(False, help="Restart on code changes (development; one process).")) -> None:
    """Serve the web app (public pages, admin, API, webhooks) under uvicorn."""
    if reload and workers > 1:
        raise typer.BadParameter("--reload runs one process; drop --workers")
    if workers == 1:
        _run_uvicorn(host, port, reload=reload, workers=workers, access_log=access_log)
        return
    # Several web processes: the public forms' writes of all of them go through one intake process for the host
    # (newsletter/web/intake_process.py), started first, and told to the web processes through the environment.
    with intake_process.running() as intake:
        os.environ["NEWSLETTER_INTAKE_SOCKET"] = intake.path
        _run_uvicorn(host, port, reload=reload, workers=workers, access_log=access_log)


def _run_uvicorn(host: str, port: int, *, reload: bool, workers: int, access_log: bool) -> None:
    # A worker that is busy (a burst, a loaded host) answers the supervisor's health ping late; uvicorn's default of
    # 5 s killed and restarted workers in a loop on a busy machine, starting them no faster than they were killed.
    uvicorn.run("newsletter.web.app:create_app", factory=True, host=host, port=port, reload=reload,
                workers=workers, access_log=access_log, timeout_worker_healthcheck=60)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.command("serve")(serve)
