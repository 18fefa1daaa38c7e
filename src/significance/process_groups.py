"""Sweep jobs as process groups: a job's DDP ranks all end when the job ends.

Lightning ends a DDP job when one of its ranks dies (rank 0 kills the others when a child
exits non-zero; a child gets "connection reset" from gloo at its next collective when rank 0
dies). A rank that outlives its job by accident would still hold memory and CPU while the next
job of the sweep starts, so the launcher puts every job into a process group of its own and
ends whatever is left of that group once the job's main process has exited.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import IO


def start_process_group(
    command: list[str], output: IO[bytes] | None, environment: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start `command` as the leader of a new process group (so its ranks can be ended too)."""
    # A group, not a new session: the job keeps writing to the terminal; Ctrl-C reaches the
    # launcher, which passes it on (stop_process_group).
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    return subprocess.Popen(
        command,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        env=environment,
        **group,
    )


def end_process_group(process: subprocess.Popen) -> None:
    """Kill what is left of the job's process group (ranks orphaned by a killed rank 0)."""
    if os.name != "posix":
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):  # all of it has exited
        os.killpg(process.pid, signal.SIGKILL)


def stop_process_group(process: subprocess.Popen) -> None:
    """Interrupt a running job (the sweep itself was interrupted), then make sure it ends."""
    if os.name != "posix":
        process.kill()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=10)
    end_process_group(process)
