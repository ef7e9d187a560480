"""Keep one of the product's processes running: start it again when it exits.

`make run` (Procfile, through honcho) starts the Celery worker and beat under
this, as systemd or supervisord does in production: honcho starts nothing
again, and a worker can end on its own (celery 5.7.0 did whenever Redis went
away while it held an unacked task; see requirements.txt). The command is
started again after a pause that doubles from --backoff up to --max-backoff
while it keeps exiting, and drops back to --backoff once it has run for
--stable-after seconds.

SIGTERM and SIGINT are passed on to the command, once; the supervisor then
waits for it to finish (a Celery worker's warm shutdown) and exits with its
status, without starting it again. A signal during a pause ends the supervisor
at once.

The command runs in a process group of its own. honcho stops a Procfile line
with SIGTERM to that line's whole group: without this, a Celery worker got
SIGTERM twice (from honcho and from us: "Warm shutdown" logged twice) and its
pool children got it directly (logged as ERROR). honcho SIGKILLs what is left
a fixed time after the first line stops (12 s as the Makefile starts it),
which would kill us and leave the command running alone, so the supervisor
bounds the stop itself: a command still running --stop-timeout seconds after
the signal gets SIGQUIT (Celery's cold shutdown; its unacknowledged tasks go
back to the queue), and a second later SIGKILL to its whole group. Whatever
of the group is left once the command has stopped (pool children) is killed
too.

    python bin/supervise.py --name=worker -- celery -A afterhours worker
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
import time

logger = logging.getLogger("afterhours.supervise")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# After SIGQUIT, how long the command has before SIGKILL to its group.
KILL_AFTER = 1.0


class Supervisor:
    def __init__(
        self,
        command: list[str],
        *,
        name: str,
        backoff: float,
        max_backoff: float,
        stable_after: float,
        stop_timeout: float = 10.0,
    ) -> None:
        self.command = command
        self.name = name
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.child: subprocess.Popen | None = None
        self.stopping = False
        self.stop_deadline = 0.0

    def on_stop_signal(self, signum: int, frame: object) -> None:
        if self.stopping:
            # One stop is enough; Celery logs each SIGTERM as a new one.
            return
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.stop_timeout
        child = self.child
        if child is not None and child.poll() is None:
            logger.info(
                "%s: passing %s to pid=%s",
                self.name,
                signal.Signals(signum).name,
                child.pid,
            )
            child.send_signal(signum)

    def wait(self, child: subprocess.Popen) -> int:
        """The command's status; once stopping, ended if it takes too long."""
        quit_sent = killed = False
        while (status := child.poll()) is None:
            if self.stopping:
                overdue = time.monotonic() - self.stop_deadline
                if overdue >= 0 and not quit_sent:
                    logger.warning(
                        "%s: pid=%s still running %.1f s after the stop signal; "
                        "sending SIGQUIT",
                        self.name,
                        child.pid,
                        self.stop_timeout,
                    )
                    child.send_signal(signal.SIGQUIT)
                    quit_sent = True
                elif overdue >= KILL_AFTER and not killed:
                    logger.warning(
                        "%s: pid=%s still running; SIGKILL to its group",
                        self.name,
                        child.pid,
                    )
                    kill_group(child.pid)
                    killed = True
            time.sleep(0.05)
        return status

    def pause(self, seconds: float) -> None:
        """Sleep in short steps, so that a stop signal ends the pause."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.on_stop_signal)
        delay = self.backoff
        while True:
            started = time.monotonic()
            # A group of its own: a signal to ours reaches it only through us.
            self.child = child = subprocess.Popen(self.command, process_group=0)
            logger.info("%s: started pid=%s", self.name, child.pid)
            if self.stopping:
                # The signal came before `self.child` was this process.
                child.send_signal(signal.SIGTERM)
            status = self.wait(child)
            if self.stopping:
                logger.info(
                    "%s: pid=%s stopped with status %s", self.name, child.pid, status
                )
                kill_group(child.pid)
                return exit_status(status)

            if time.monotonic() - started >= self.stable_after:
                delay = self.backoff
            logger.warning(
                "%s: pid=%s exited with status %s after %.1f s; "
                "starting it again in %.1f s",
                self.name,
                child.pid,
                status,
                time.monotonic() - started,
                delay,
            )
            self.pause(delay)
            if self.stopping:
                return exit_status(status)
            delay = min(delay * 2, self.max_backoff)


def kill_group(pgid: int) -> None:
    """SIGKILL to what is left of the command's process group, if anything."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def exit_status(returncode: int) -> int:
    """A status for our own exit: killed by signal N becomes 128 + N."""
    return returncode if returncode >= 0 else 128 - returncode


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", help="for the log lines (default: the command)")
    parser.add_argument("--backoff", type=float, default=1.0, help="first pause, s")
    parser.add_argument("--max-backoff", type=float, default=30.0, help="s")
    parser.add_argument(
        "--stable-after",
        type=float,
        default=60.0,
        help="a run this long (s) resets the pause to --backoff",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        help="after a stop signal, s before SIGQUIT (then SIGKILL 1 s later)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to supervise")

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    return Supervisor(
        command,
        name=args.name or command[0],
        backoff=args.backoff,
        max_backoff=args.max_backoff,
        stable_after=args.stable_after,
        stop_timeout=args.stop_timeout,
    ).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
