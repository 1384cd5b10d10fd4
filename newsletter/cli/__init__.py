"""`newsletter ...`: one Typer app; each feature adds its commands from its own module."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from mailer.settings import SettingsError, get_settings
from newsletter.cli import bounces, core, issues, lists, segments, sends, subscribers, suppressions, users
from newsletter.cli.common import fail

app = typer.Typer(help="Self-hosted newsletter delivery.", no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _check_settings() -> None:
    """Read the configuration before any command runs, so a refused setting ends with what to set, not a
    traceback from deep inside the first command that happens to need it."""
    try:
        get_settings()
    except SettingsError as exc:
        raise fail(str(exc), code=2) from exc
    except ValidationError as exc:
        problems = "\n".join(f"- NEWSLETTER_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                              for e in exc.errors())
        raise fail(f"Invalid configuration:\n{problems}", code=2) from exc

for module in (core, issues, lists, segments, subscribers, suppressions, sends, bounces, users):
    module.register(app)


def main() -> None:
    app()
