"""An embedded, real PostgreSQL (the `pgserver` package) for when no server is configured.

The server listens on a Unix socket only (no TCP port, so it never clashes with a server on
5432), keeps its data in a directory, and is stopped when the process that started it exits.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from actors.stores.errors import EmbeddedStartFailed
from supervision.logs import logger

log = logger("actors.stores.embedded")


def default_data_dir() -> Path:
    """The CLI's data directory: the user's data dir (for example ~/.local/share/thespian-otp)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("thespian-otp")) / "postgres"


class EmbeddedPostgres:
    """Start (or attach to) the embedded server in `data_dir`; `temporary` deletes it at stop."""

    def __init__(self, data_dir: str | Path | None = None, *, temporary: bool = False) -> None:
        self.temporary = temporary
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="thespian-otp-pg-")) / "data" if temporary else default_data_dir()
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None

    @property
    def dsn(self) -> str:
        if self._server is None:
            raise RuntimeError("the embedded server is not started")
        return self._server.get_uri()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs: "XDG_RUNTIME_DIR is not set"
                import pgserver
        except ImportError as exc:  # pragma: no cover - it is a dependency
            raise EmbeddedStartFailed(str(self.data_dir), f"the pgserver package is missing ({exc})") from None
        try:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self._server = pgserver.get_server(self.data_dir, cleanup_mode="delete" if self.temporary else "stop")
        except Exception as exc:  # noqa: BLE001 - whatever pgserver/pg_ctl raised, one clear error
            raise EmbeddedStartFailed(str(self.data_dir), _describe(exc, self.data_dir)) from None
        log.info("embedded PostgreSQL running in %s", self.data_dir)
        return self.dsn

    def restart(self, mode: str = "fast") -> None:
        """Restart the server process (a fault for tests: every connection drops)."""
        from pgserver._commands import pg_ctl

        server = self._server
        pg_ctl(["-w", "-m", mode, "restart"], pgdata=self.data_dir, user=server.system_user, timeout=30)
        self._refresh()

    def _refresh(self) -> None:
        """The postmaster changes on a restart: point pgserver at the new one, or its cleanup
        at exit would miss it and leave a server running."""
        from pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        if info is not None and self._server is not None:
            self._server._postmaster_info = info

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server process but keep the handle (start it again with `start_server`)."""
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.data_dir, user=self._server.system_user, timeout=30)

    def start_server(self) -> None:
        with self._server._lock:
            self._server.ensure_postgres_running()
        self._refresh()

    def stop(self) -> None:
        if self._server is None:
            return
        self._refresh()
        server, self._server = self._server, None
        try:
            server.cleanup()
        except Exception as exc:  # noqa: BLE001 - best effort at exit
            log.warning("stopping the embedded PostgreSQL failed: %s", exc)
        if self.temporary:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def __enter__(self) -> "EmbeddedPostgres":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _describe(exc: BaseException, data_dir: Path) -> str:
    text = f"{type(exc).__name__}: {exc}"
    log_file = data_dir / "log"
    if log_file.exists():
        tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
        if tail:
            text += "; server log: " + " | ".join(tail)
    return text
