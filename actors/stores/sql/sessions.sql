-- name: idle_session_timeout
-- (PostgreSQL 14 and later) A lock session left idle this long is ended by the server, and its
-- advisory locks with it: lock holders query every fraction of a second, so only a frozen
-- client is idle that long. The server-side keepalives and tcp_user_timeout that end the
-- session of a vanished client are set on every connection (`Database.connect_kwargs`).
SELECT set_config('idle_session_timeout', %(idle_session_ms)s, false);
