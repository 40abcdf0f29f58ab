-- olaclick 0.3.0 -> 0.4.0. Released upgrade scripts are never edited; this one
-- is not released yet. Each change of the install SQL (sql/*.sql) made for
-- 0.4.0 is made here too, in the section of the work it belongs to; the
-- upgrade drill (tests/ops/run) compares the result with a fresh install.

\echo Use "ALTER EXTENSION olaclick UPDATE" to load this file. \quit

-- == The native write path as correct as SQL ==================================
--
--
--

-- == Fail safe: cache invalidation, NOTIFY queue, old SQL ========================
--
--
--

-- == Behind a connection pooler ===================================================
--
--
--

-- == Part 5: passwords, staging, access audit =====================================
--
--
--
