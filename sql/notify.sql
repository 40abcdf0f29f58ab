-- Cache notifications that were skipped (src/notify.rs): above
-- olaclick.notify_queue_skip_threshold of the NOTIFY queue, a commit queues
-- no notification and counts each one it would have sent here instead. A
-- sequence, not a table: nextval is not rolled back and takes no row lock, so
-- writers counting at once neither wait for each other nor fail. Registered
-- for pg_dump like every sequence olaclick creates (the contract): a restored
-- database keeps its count, so the invalidator sees no skip that didn't happen.
CREATE SEQUENCE notify_skipped_seq AS bigint;
REVOKE ALL ON SEQUENCE notify_skipped_seq FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('olaclick.notify_skipped_seq', '');

-- How many cache notifications were skipped in all. olaclick-cache's
-- invalidator polls it and flushes the cache when it moves; health() reports
-- it. SECURITY DEFINER: the reading roles get the count, not the sequence.
CREATE FUNCTION notify_skipped() RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT coalesce(pg_catalog.pg_sequence_last_value('olaclick.notify_skipped_seq'::pg_catalog.regclass), 0);
END;
