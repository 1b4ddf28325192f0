"""The keeper: a tiny process per embedded server that stops it once no program uses it.

Started (in a session of its own, so a terminal's Ctrl-C does not reach it) by the program that
starts the server: `python -m actors.stores.embedded_keeper DATA_DIR [--delete PATH]`. It
holds the KEEPER lock for its life and sleeps in the kernel until the OWNERS lock is free, which
happens the moment the last program using the server exits, however it died. It then takes
CONTROL (so nobody attaches meanwhile), checks again, stops the cluster, deletes PATH for a
temporary server, and exits. SIGTERM, SIGINT or SIGHUP to the keeper stop the server too: an
embedded server without its keeper is never left behind on purpose.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from actors.stores.pgcluster import STATE_FILE, LockFile, stop_cluster


class _Stop(Exception):
    pass


def _on_signal(signum: int, frame: Any) -> None:
    raise _Stop


def finish(data_dir: Path, delete: Path | None) -> None:
    """Stop the cluster and remove what this server's start created (call holding CONTROL)."""
    stop_cluster(data_dir)
    state = _read_state(data_dir)
    if delete is None and state.get("delete"):
        delete = Path(state["delete"])  # a keeper started to replace a killed one
    socket_dir = state.get("created_socket_dir")
    if socket_dir:
        shutil.rmtree(socket_dir, ignore_errors=True)
    if delete is not None:
        shutil.rmtree(delete, ignore_errors=True)
    else:
        (data_dir / STATE_FILE).unlink(missing_ok=True)


def _read_state(data_dir: Path) -> dict:
    try:
        return json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.stores.embedded_keeper")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--delete", type=Path, default=None, help="directory to delete at the end")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    locks = LockFile(args.data_dir)
    if not locks.hold_keeper():
        print("busy", flush=True)  # another keeper serves this data directory
        return 1
    print("ready", flush=True)
    sys.stdout.close()
    os.close(1)
    try:
        while True:
            locks.wait_no_owners()
            locks.wait_control()
            if locks.no_owners():
                break
            locks.release_control()  # a program attached between the two waits: keep serving
    except _Stop:
        pass
    # only signals end the wait early; from here on nothing interrupts the shutdown
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    finish(args.data_dir, args.delete)
    return 0


if __name__ == "__main__":
    sys.exit(main())
