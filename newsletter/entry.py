"""The `newsletter` command's entry point, which reads the configuration before any command module is imported.

Importing the commands builds the Celery app from the settings, so a setting that production mode refuses (or a
value that does not parse) would otherwise surface as a traceback from deep inside that import. Here it ends the
command with the message that says what to set, and exit status 2.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from mailer.settings import SettingsError, get_settings


def configuration_problem() -> str | None:
    try:
        get_settings()
    except SettingsError as exc:
        return str(exc)
    except ValidationError as exc:
        problems = "\n".join(f"- NEWSLETTER_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in exc.errors())
        return f"Invalid configuration:\n{problems}"
    return None


def main() -> None:
    problem = configuration_problem()
    if problem is not None:
        sys.stderr.write(problem + "\n")
        raise SystemExit(2)
    from newsletter.cli import main as run  # noqa: PLC0415 (only once the settings are known to load)

    run()
