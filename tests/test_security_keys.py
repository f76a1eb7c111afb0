"""No guessable keys: required outside local development, long, never in the repo."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_settings import manage_check

POSTGRES = "postgres://postgres@127.0.0.1:5432/healthcare"
LONG = "k" * 50


@pytest.mark.parametrize(
    "mode", [{"DEMO_MODE": "1"}, {"DJANGO_DEBUG": "1"}, {"DEMO_MODE": "0"}]
)
def test_a_database_url_without_a_secret_key_refuses_to_start(mode):
    result = manage_check(DJANGO_SECRET_KEY="", DATABASE_URL=POSTGRES, **mode)
    assert result.returncode == 2
    assert "configuration error: DJANGO_SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_database_url_without_a_jwt_signing_key_refuses_to_start():
    result = manage_check(
        DJANGO_SECRET_KEY=LONG, JWT_SIGNING_KEY="", DATABASE_URL=POSTGRES, DEMO_MODE="1"
    )
    assert result.returncode == 2
    assert "JWT_SIGNING_KEY is not set" in result.stderr


@pytest.mark.parametrize(
    "variable", ["DJANGO_SECRET_KEY", "JWT_SIGNING_KEY", "JWT_PREVIOUS_SIGNING_KEY"]
)
def test_keys_shorter_than_50_characters_are_refused(variable):
    env = {"DJANGO_SECRET_KEY": LONG, "JWT_SIGNING_KEY": "j" * 50, variable: "s" * 49}
    result = manage_check(DATABASE_URL=POSTGRES, **env)
    assert result.returncode == 2
    assert f"{variable} is 49 characters long" in result.stderr


def settings_in(var_dir: Path, code: str) -> str:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DJANGO_SECRET_KEY", "JWT_SIGNING_KEY")
    }
    env["HEALTHCARE_VAR_DIR"] = str(var_dir)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_local_development_generates_random_keys_once(tmp_path):
    code = (
        "from django.conf import settings; "
        "print(settings.SECRET_KEY, settings.JWT_SIGNING_KEY)"
    )
    first = settings_in(tmp_path / "a", code).split()
    assert first == settings_in(tmp_path / "a", code).split()  # kept in the file
    other = settings_in(tmp_path / "b", code).split()
    assert other != first  # random per checkout, not derived from a path
    assert first[0] != first[1] and all(len(key) >= 50 for key in first)
    key_file = tmp_path / "a" / "secret_key"
    assert key_file.read_text().strip() == first[0]
    assert key_file.stat().st_mode & 0o077 == 0


def test_the_key_files_are_git_ignored():
    ignored = subprocess.run(
        ["git", "check-ignore", "var/secret_key", "var/jwt_key"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ignored.stdout.split() == ["var/secret_key", "var/jwt_key"]


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.prod.yml"])
def test_compose_files_carry_no_default_key(name):
    text = (ROOT / name).read_text()
    services = yaml.safe_load(text)
    for key in ("DJANGO_SECRET_KEY", "JWT_SIGNING_KEY"):
        assert f"${{{key}:?" in text, f"{name}: {key} must be required"
        assert f"${{{key}:-" not in text, f"{name}: {key} has a default"
    assert services  # the file still parses
