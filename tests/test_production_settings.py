"""Production mode refuses unsafe configuration at start-up, through the real `newsletter` command; embedded
installs keep their database and secret private to the owner."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailer.db import get_engine
from mailer.settings import Settings, SettingsError
from tests.conftest import TEST_SECRET

NEWSLETTER = str(Path(sys.executable).with_name("newsletter"))
ROOT = Path(__file__).resolve().parent.parent


def _public_key() -> str:
    der = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(Encoding.DER,
                                                                           PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


GOOD = {"NEWSLETTER_ENV": "production", "NEWSLETTER_SECRET_KEY": TEST_SECRET,
        "NEWSLETTER_BASE_URL": "https://news.example.com"}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_") or k.startswith("NEWSLETTER_T")}
    full |= {"NEWSLETTER_DATA_DIR": os.environ["NEWSLETTER_DATA_DIR"]} | env
    return subprocess.run([NEWSLETTER, *args], env=full, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("change", "names"), [
    ({"secret_key": "x"}, ["NEWSLETTER_SECRET_KEY", "at least 32"]),
    ({"secret_key": ""}, ["NEWSLETTER_SECRET_KEY must be set"]),
    ({"base_url": "http://news.example.com"}, ["NEWSLETTER_BASE_URL", "https://"]),
    ({"sendgrid_webhook_verify": False}, ["NEWSLETTER_SENDGRID_WEBHOOK_VERIFY"]),
    ({"sendgrid_webhook_public_key": "not-a-key"}, ["NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY"]),
    ({"sendgrid_webhook_public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"},  # a truncated key
     ["NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY"]),
])
def test_production_refuses_each_unsafe_setting_with_what_to_set(change: dict[str, object],
                                                                 names: list[str]) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings(**({"env": "production", "secret_key": TEST_SECRET, "base_url": "https://news.example.com"}
                    | change))
    assert str(caught.value).count("\n- ") == 1
    for name in names:
        assert name in str(caught.value)


def test_the_command_refuses_to_start_with_a_message_not_a_traceback() -> None:
    result = _run(GOOD | {"NEWSLETTER_SECRET_KEY": "x"}, "lists", "ls")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Refusing to start in production" in result.stderr
    assert "NEWSLETTER_SECRET_KEY is 1 characters: set at least 32" in result.stderr


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings(env="production", secret_key="short", base_url="http://x.example", sendgrid_webhook_verify=False)
    assert str(caught.value).count("\n- ") == 3


def test_a_sound_production_configuration_starts(tmp_path: Path) -> None:
    good = GOOD | {"NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY": _public_key(), "NEWSLETTER_TRANSPORT": "sendgrid",
                   "NEWSLETTER_SENDGRID_API_KEY": "SG.test", "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path}/p.db"}
    assert _run(good, "db", "upgrade").returncode == 0
    result = _run(good, "lists", "ls")
    assert result.returncode == 0, result.stderr
    missing_key = good | {"NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY": ""}  # as compose passes an unset variable
    assert "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY must be set" in _run(missing_key, "lists", "ls").stderr


def test_an_invalid_value_is_a_message_not_a_traceback() -> None:
    result = _run({"NEWSLETTER_SMTP_PORT": "twenty-five"}, "lists", "ls")
    assert result.returncode == 2 and "NEWSLETTER_SMTP_PORT" in result.stderr and "Traceback" not in result.stderr


def test_embedded_database_and_secret_are_private(settings_env: Path) -> None:
    os.umask(0o022)  # the usual umask, under which files come out world-readable by default
    Settings(secret_key=None)  # generates the secret into a fresh data dir
    database = settings_env / "newsletter.db"
    engine = get_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")
    for path in [database, settings_env / "secret_key", *settings_env.glob("newsletter.db-*")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(settings_env.stat().st_mode) == 0o700


COMPOSE_ENV = {"POSTGRES_PASSWORD": "compose-check", "NEWSLETTER_SECRET_KEY": "compose-check",
               "NEWSLETTER_BASE_URL": "https://compose-check.example"}


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    compose = shutil.which("docker-compose")
    if compose is None and not os.environ.get("CI"):
        pytest.skip("docker-compose is not installed (scripts/test installs it)")
    assert compose is not None
    return subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True,
                          text=True, timeout=60, env={"PATH": os.environ["PATH"], **env})


def test_compose_keeps_flower_behind_a_password_and_off_public_interfaces() -> None:
    without = _compose_config(COMPOSE_ENV)
    assert without.returncode != 0 and "FLOWER_BASIC_AUTH" in without.stderr
    result = _compose_config(COMPOSE_ENV | {"FLOWER_BASIC_AUTH": "ops:correct-horse-battery"})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "ops:correct-horse-battery"
    for name in ("flower", "mailpit"):
        for port in services[name].get("ports", []):  # docker-compose 1.x prints short syntax, 2.x long
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).rsplit(":", 2)[0]
            assert host_ip == "127.0.0.1", (name, port)
    plain_http = _compose_config({**COMPOSE_ENV, "FLOWER_BASIC_AUTH": "a:b", "NEWSLETTER_BASE_URL": ""})
    assert plain_http.returncode != 0 and "NEWSLETTER_BASE_URL" in plain_http.stderr
