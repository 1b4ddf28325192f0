"""Process identities under a shortage: a failed read of /proc is never taken for a death."""

from __future__ import annotations

import subprocess
import sys

PROBE = r"""
import os, resource, subprocess, sys
from supervision.liveness import ProcessIdentity
me = ProcessIdentity.current()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
alive_child = ProcessIdentity.of(child.pid)
dead = subprocess.Popen([sys.executable, "-c", "pass"]); dead.wait()
dead_identity = ProcessIdentity(dead.pid, 1)
# use up every file descriptor this process may open: /proc/<pid>/stat cannot be opened now
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
results = [me.is_alive(), alive_child.is_alive(), dead_identity.is_alive()]
for fd in held:
    os.close(fd)
child.kill()
print(results)
"""


def test_a_process_out_of_file_descriptors_never_takes_a_live_process_for_dead():
    """The runtime's sentinel watches its kernel and admin with `is_alive`: on EMFILE the old
    read of /proc said "gone", and the sentinel killed a live actor system. Now a live process
    (itself, a child) still counts as alive, and a dead one as dead (signal 0 tells)."""
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[True, True, False]", result.stdout
