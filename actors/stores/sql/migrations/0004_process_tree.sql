-- The job tree a worker process belongs to (issue 19): each tree's rescuer rescues only its
-- own tree's processes, so one tree's settings (heartbeat ttl and the outage grace that
-- follows from it, kill_stuck) are never overridden by another tree's rescuer. NULL: a row
-- written without a tree (older code, or a worker started outside jobs_tree); the default
-- tree "jobs" and rescuers without a tree rescue those.
ALTER TABLE processes ADD COLUMN tree text;
