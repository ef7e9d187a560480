"""Ctrl-C on `make run` leaves the worker time for its warm shutdown.

honcho 2.0.0 SIGKILLs every line still running 5 s after the first one
stops (its KILL_WAIT, not an option: nickstenning/honcho#189), and a Celery
worker on the filesystem broker takes 4.5-7 s to stop warm even when idle.
The Makefile's run target starts honcho with a longer wait; bin/supervise.py
bounds the worker's own stop well inside it (tests/test_supervise.py).
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SLOW_TO_STOP = """
import signal, sys, time
from pathlib import Path

record = Path(sys.argv[1])

def stop(signum, frame):
    time.sleep(6.5)  # a warm shutdown's length, beyond honcho's own 5 s
    record.write_text("finished")
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
record.write_text("started")
while True:
    time.sleep(0.05)
"""


def make_run_honcho_command(procfile: Path) -> str:
    """The run target's honcho line, for another Procfile."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    (line,) = [line.strip() for line in recipe.splitlines() if "honcho" in line]
    line = line.replace("$(BIN)", str(ROOT / ".venv" / "bin"))
    assert "-f Procfile" in line
    return re.sub(r"-f Procfile\b", f"-f {procfile}", line)


def test_ctrl_c_lets_a_line_finish_a_stop_longer_than_honchos_default(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(SLOW_TO_STOP)
    record = tmp_path / "record.txt"
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        f"quick: {sys.executable} -c 'import time; time.sleep(600)'\n"
        f"slow: {sys.executable} {script} {record}\n"
    )
    honcho = subprocess.Popen(
        ["sh", "-c", f"exec {make_run_honcho_command(procfile)}"],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (record.exists() and record.read_text() == "started"):
            assert time.monotonic() < deadline, "the slow line did not start"
            time.sleep(0.05)
        time.sleep(0.3)
        honcho.send_signal(signal.SIGINT)  # what Ctrl-C sends honcho
        output, _ = honcho.communicate(timeout=30)
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()

    assert record.read_text() == "finished", output
    assert "SIGKILL" not in output
