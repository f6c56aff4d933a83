-- The planner preferred this index to the primary key when claiming tasks
-- by key, scanning every pending task of a kind for each claim.
DROP INDEX timer_tasks_by_state;
