"""ensure_admin: the local login file is private and never prints a stale password."""

import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def var_dir(tmp_path, settings):
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


def _run(capsys) -> str:
    call_command("ensure_admin")
    return capsys.readouterr().out


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_first_run_creates_the_login_and_a_file_only_its_owner_reads(
    var_dir, capsys
):
    out = _run(capsys)

    credentials = var_dir / "admin-login.txt"
    username, password = credentials.read_text().split()
    assert _mode(credentials) == 0o600
    assert get_user_model().objects.get(username=username).check_password(password)
    assert f"password: {password}" in out


def test_a_later_run_prints_the_password_while_it_still_signs_in(var_dir, capsys):
    _run(capsys)
    password = (var_dir / "admin-login.txt").read_text().split()[1]

    assert f"password: {password}" in _run(capsys)


def test_a_file_left_world_readable_is_made_private(var_dir, capsys):
    _run(capsys)
    credentials = var_dir / "admin-login.txt"
    credentials.chmod(0o644)

    _run(capsys)

    assert _mode(credentials) == 0o600


def test_after_a_password_change_the_old_one_is_not_printed(var_dir, capsys):
    _run(capsys)
    old = (var_dir / "admin-login.txt").read_text().split()[1]
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("changed-in-admin")
    admin.save()

    out = _run(capsys)

    assert old not in out
    assert "no longer matches" in out
    assert "changepassword" in out


def test_an_unreadable_file_is_reported_not_printed(var_dir, capsys):
    _run(capsys)
    (var_dir / "admin-login.txt").write_text("garbage\n")

    out = _run(capsys)

    assert "garbage" not in out
    assert "changepassword" in out


def test_it_refuses_to_run_outside_development(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="local development"):
        call_command("ensure_admin")


def test_the_login_line_names_where_the_site_is_served(var_dir, settings, capsys):
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:18601"

    assert "Admin: http://127.0.0.1:18601/admin/" in _run(capsys)
