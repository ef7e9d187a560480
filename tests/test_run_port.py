"""`make run` on another port or address: web, signatures and README agree.

From a tester's run: the Procfile fixed 127.0.0.1:8000 and the local
settings fixed PUBLIC_BASE_URL to it, so a second instance on another port
answered every signed Twilio request with 403. WEB_PORT (not PORT: honcho
gives each Procfile line a PORT of its own, 5000, 5100, ...) moves both.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "public_base_url": settings.PUBLIC_BASE_URL,
    "allowed_hosts": settings.ALLOWED_HOSTS,
}))
"""


def local_settings(**env: str) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "WEB_", "PUBLIC_BASE_URL", "PORT"))
    }
    run = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "afterhours.settings.local", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def procfile_command(name: str, **env: str) -> str:
    """The Procfile line as honcho's shell expands it."""
    line = next(
        line.split(":", 1)[1].strip()
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith(f"{name}:")
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WEB_")}
    return subprocess.run(
        ["sh", "-c", f"echo {line}"],
        env={**clean, "PORT": "5000", **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_by_default_web_listens_where_the_readme_says():
    assert "runserver 127.0.0.1:8000 " in procfile_command("web")
    assert local_settings()["public_base_url"] == "http://127.0.0.1:8000"


def test_web_port_moves_the_server_and_the_signed_url_together():
    assert "runserver 127.0.0.1:8765 " in procfile_command("web", WEB_PORT="8765")
    assert local_settings(WEB_PORT="8765")["public_base_url"] == (
        "http://127.0.0.1:8765"
    )


def test_web_host_moves_the_address_and_is_an_allowed_host():
    command = procfile_command("web", WEB_HOST="192.0.2.10", WEB_PORT="8001")
    seen = local_settings(WEB_HOST="192.0.2.10", WEB_PORT="8001")

    assert "runserver 192.0.2.10:8001 " in command
    assert seen["public_base_url"] == "http://192.0.2.10:8001"
    assert "192.0.2.10" in seen["allowed_hosts"]


def test_listening_on_every_address_signs_for_loopback():
    seen = local_settings(WEB_HOST="0.0.0.0")

    assert seen["public_base_url"] == "http://127.0.0.1:8000"


def test_an_explicit_public_base_url_still_wins():
    seen = local_settings(WEB_PORT="8765", PUBLIC_BASE_URL="https://tunnel.example")

    assert seen["public_base_url"] == "https://tunnel.example"


@pytest.mark.parametrize("name", ["WEB_PORT", "WEB_HOST"])
def test_the_variables_are_in_env_example_and_the_readme(name):
    assert f"# {name}=" in (ROOT / ".env.example").read_text()
    running_it = (ROOT / "README.md").read_text().split("## Running it", 1)[1]
    assert name in running_it.split("\n## ", 1)[0]
