-- What a worker records on the job row itself, one statement per job, so a rescue knows what
-- really happened to the jobs of a worker that died (issue 19):
-- started_at: set when the handler starts (NULL: claimed but never started; a rescue puts it
--             back without counting the attempt);
-- ended_at, ended_error: set when the handler returned (ended_error NULL: it succeeded), in
--             the same statement that starts the next job, before the completer writes the
--             outcome: a rescue completes such a job instead of running it again.
ALTER TABLE jobs ADD COLUMN started_at timestamptz;
ALTER TABLE jobs ADD COLUMN ended_at timestamptz;
ALTER TABLE jobs ADD COLUMN ended_error text;
