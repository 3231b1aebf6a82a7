-- The inbox pruner deletes rows by age (`INBOX_RETENTION_HOURS`); without this index each
-- run would scan the whole table.
CREATE INDEX inbox_processed_at_idx ON inbox (processed_at);
