"""bin/supervise.py: what `make run` starts the Celery worker and beat under.

The supervised command here is a small script that writes down each start
and each SIGTERM it gets; it exits on its own (status 3) for its first two
starts, as a worker did whenever Redis went away (requirements.txt).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUPERVISE = ROOT / "bin" / "supervise.py"

CHILD = """
import os, signal, sys, time
from pathlib import Path

record = Path(sys.argv[1])
exits_on_its_own = int(sys.argv[2])
with record.open("a") as lines:
    lines.write(f"started {os.getpid()} {time.time()}\\n")
if record.read_text().count("started") <= exits_on_its_own:
    sys.exit(3)

def stop(signum, frame):
    with record.open("a") as lines:
        lines.write(f"stopped {os.getpid()}\\n")
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(0.05)
"""


def start_supervised(
    tmp_path: Path, *, exits_on_its_own: int, backoff: float
) -> tuple[subprocess.Popen, Path]:
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    record = tmp_path / "record.txt"
    record.touch()
    # Its own session: a SIGTERM to the supervisor reaches the child only if
    # the supervisor passes it on.
    supervisor = subprocess.Popen(
        [
            sys.executable,
            str(SUPERVISE),
            "--name=child",
            f"--backoff={backoff}",
            f"--max-backoff={backoff * 2}",
            "--",
            sys.executable,
            str(child),
            str(record),
            str(exits_on_its_own),
        ],
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    return supervisor, record


def starts(record: Path) -> list[tuple[int, float]]:
    return [
        (int(words[1]), float(words[2]))
        for words in (line.split() for line in record.read_text().splitlines())
        if words[0] == "started"
    ]


def wait_for_starts(record: Path, count: int, *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(starts(record)) < count:
        assert time.monotonic() < deadline, record.read_text()
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_leftovers(supervisor: subprocess.Popen, record: Path) -> None:
    """After a failed check, leave no process of the test behind."""
    if supervisor.poll() is None:
        supervisor.kill()
        supervisor.wait()
    for pid, _ in starts(record):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_command_that_exits_is_started_again_and_sigterm_stops_both(tmp_path):
    """Started again after each exit, the pause doubling; then SIGTERM to the
    supervisor reaches the running command, and both end."""
    supervisor, record = start_supervised(tmp_path, exits_on_its_own=2, backoff=0.2)
    try:
        wait_for_starts(record, 3)
        time.sleep(0.3)  # the third start installs its SIGTERM handler
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=5)
    finally:
        stop_leftovers(supervisor, record)
    log = supervisor.stderr.read()

    (first, at_1), (second, at_2), (third, at_3) = starts(record)
    assert len({first, second, third}) == 3
    assert at_2 - at_1 >= 0.2  # --backoff
    assert at_3 - at_2 >= 0.4  # doubled after a second exit in a row
    assert f"stopped {third}" in record.read_text()
    assert not alive(third)
    assert supervisor.returncode == 0, log
    assert len(starts(record)) == 3
    assert "exited with status 3" in log


def test_sigterm_during_the_pause_ends_the_supervisor_without_a_new_start(
    tmp_path,
):
    supervisor, record = start_supervised(tmp_path, exits_on_its_own=99, backoff=5)
    try:
        wait_for_starts(record, 1)
        time.sleep(0.3)  # the command has exited; the 5 s pause has begun
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=2)
    finally:
        stop_leftovers(supervisor, record)

    assert len(starts(record)) == 1
    assert supervisor.returncode == 3  # the command's last status
