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


# A worker with a pool: the command starts a "pool child" of its own, and
# both write down every SIGTERM that reaches them. The command stops its
# pool itself (as Celery's warm shutdown does) when it gets one SIGTERM.
WORKER_WITH_POOL = """
import os, signal, subprocess, sys, time
from pathlib import Path

record = Path(sys.argv[1])
role = sys.argv[2]
ignores_sigterm = sys.argv[3] == "ignore"

def note(word):
    with record.open("a") as lines:
        lines.write(f"{word} {role} {os.getpid()} {time.time()}\\n")

pool = None
if role == "worker":
    pool = subprocess.Popen(
        [sys.executable, __file__, str(record), "pool", sys.argv[3]]
    )

def stop(signum, frame):
    note("sigterm")
    if ignores_sigterm:
        return
    if pool is not None:
        pool.kill()
        pool.wait()
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
note("started")
while True:
    time.sleep(0.05)
"""


def start_worker_with_pool(
    tmp_path: Path, *, ignores_sigterm: bool = False, stop_timeout: float = 5.0
) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER_WITH_POOL)
    record = tmp_path / "record.txt"
    record.touch()
    # Its own session, as honcho starts each Procfile line.
    supervisor = subprocess.Popen(
        [
            sys.executable,
            str(SUPERVISE),
            "--name=worker",
            f"--stop-timeout={stop_timeout}",
            "--",
            sys.executable,
            str(script),
            str(record),
            "worker",
            "ignore" if ignores_sigterm else "stop",
        ],
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while record.read_text().count("started") < 2:
        assert time.monotonic() < deadline, record.read_text()
        time.sleep(0.02)
    time.sleep(0.2)  # both have installed their SIGTERM handlers
    return supervisor, record


def noted(record: Path, word: str) -> list[tuple[str, int]]:
    return [
        (words[1], int(words[2]))
        for words in (line.split() for line in record.read_text().splitlines())
        if words[0] == word
    ]


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's reaper may be slow or absent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def stop_pool_leftovers(supervisor: subprocess.Popen, record: Path) -> None:
    if supervisor.poll() is None:
        supervisor.kill()
        supervisor.wait()
    for _, pid in noted(record, "started"):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_to_the_supervisors_group_reaches_the_worker_once_and_not_its_pool(
    tmp_path,
):
    """honcho stops a Procfile line with SIGTERM to its whole process group.
    The worker must get it once (through the supervisor) and its pool
    children never: a pool child killed from outside logs an ERROR, and a
    second SIGTERM made Celery log "Warm shutdown" twice."""
    supervisor, record = start_worker_with_pool(tmp_path)
    try:
        os.killpg(supervisor.pid, signal.SIGTERM)
        supervisor.wait(timeout=5)
    finally:
        stop_pool_leftovers(supervisor, record)
    log = supervisor.stderr.read()

    (worker,) = [pid for role, pid in noted(record, "started") if role == "worker"]
    assert noted(record, "sigterm") == [("worker", worker)]
    assert supervisor.returncode == 0, log
    assert not any(running(pid) for _, pid in noted(record, "started"))


def test_a_worker_that_does_not_stop_in_time_is_ended_within_the_stop_timeout(
    tmp_path,
):
    """Warm shutdown waits for running tasks; honcho SIGKILLs its lines 5 s
    after the first one stops. The supervisor ends the command first
    (SIGQUIT, Celery's cold shutdown, then SIGKILL to its group), so nothing
    is left running behind a stopped `make run`."""
    supervisor, record = start_worker_with_pool(
        tmp_path, ignores_sigterm=True, stop_timeout=0.5
    )
    try:
        stopped_at = time.monotonic()
        os.killpg(supervisor.pid, signal.SIGTERM)
        supervisor.wait(timeout=5)
        took = time.monotonic() - stopped_at
    finally:
        stop_pool_leftovers(supervisor, record)
    log = supervisor.stderr.read()

    assert took < 2.5, log
    assert "SIGQUIT" in log
    deadline = time.monotonic() + 2
    while any(running(pid) for _, pid in noted(record, "started")):
        assert time.monotonic() < deadline, "a process of the worker is left"
        time.sleep(0.02)
