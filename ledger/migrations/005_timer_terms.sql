-- The leadership term (election token) a task was claimed in: a newer
-- leader takes over claims of older terms at once, since their leader's
-- lease, and with it its right to run tasks, has ended.
ALTER TABLE timer_tasks ADD COLUMN claim_token bigint;
