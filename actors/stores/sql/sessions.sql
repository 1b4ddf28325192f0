-- name: session_settings
-- The server drops a lock session by itself when its client goes silent, so its advisory locks
-- are freed for another node: keepalives probe a quiet peer; tcp_user_timeout ends the session
-- when data it sent stays unacknowledged (a host that vanished while a reply was on its way:
-- the kernel would otherwise retransmit for ~15 minutes); an idle session (lock holders query
-- every fraction of a second, so they are never idle for long) is ended after
-- idle_session_timeout.
SELECT set_config('tcp_keepalives_idle', %(idle)s, false),
       set_config('tcp_keepalives_interval', %(interval)s, false),
       set_config('tcp_keepalives_count', %(count)s, false),
       set_config('tcp_user_timeout', %(user_timeout_ms)s, false);

-- name: idle_session_timeout
-- (PostgreSQL 14 and later)
SELECT set_config('idle_session_timeout', %(idle_session_ms)s, false);
