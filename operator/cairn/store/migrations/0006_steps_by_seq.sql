-- A run's steps by their order: the next step's seq is max(seq) + 1, read from this index in one
-- probe (it was count(*) over the run's steps, a cost that grew with every step a run recorded), and
-- the last or most recent steps (the run's status) come from its end.
CREATE INDEX steps_by_seq ON steps (run_uid, seq);
