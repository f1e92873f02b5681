"""A child process that dies with its parent, even when the parent is killed with SIGKILL.

``SIGKILL`` runs no handler and no ``finally``: a comparison killed that way cannot stop its
worker, which is re-parented (to PID 1 or a subreaper) and would train on for its whole budget.
:func:`die_with_parent`, called first thing in the child:

1. on Linux asks the kernel to send the child ``SIGKILL`` when its parent exits
   (``prctl(PR_SET_PDEATHSIG)``, through ctypes);
2. everywhere starts a daemon thread that polls ``os.getppid()`` and ends the process when
   it changes (the fallback where prctl is unavailable);
3. exits at once when the parent is already gone (it died before step 1).
"""

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_SECONDS = 1.0


def _set_parent_death_signal(sig=signal.SIGKILL):
    """True when the kernel will send ``sig`` to this process at its parent's exit (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid, poll_seconds):
    while True:
        if os.getppid() != parent_pid:
            os._exit(137)  # the parent is gone: no cleanup, nobody waits for our result
        time.sleep(poll_seconds)


def die_with_parent(parent_pid, poll_seconds=POLL_SECONDS):
    """Make this process end when ``parent_pid`` (its parent at spawn time) ends."""
    _set_parent_death_signal()
    if os.getppid() != parent_pid:
        os._exit(137)
    watchdog = threading.Thread(target=_watch_parent, args=(parent_pid, poll_seconds), daemon=True, name="lifeline")
    watchdog.start()
    return watchdog
