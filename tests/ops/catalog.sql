-- Everything olaclick puts in a database, as sorted text: an updated install
-- and a fresh one must print the same. Schema "tests" holds the #[pg_test]
-- functions of a test build (what the test suite installs), not olaclick's.
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'olaclick'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
),
-- The audit log's months (made by maintain(), as data is) and the log kept
-- from before 0.4.0 (made by the upgrade): tables of the schema that are not
-- members, so not what the install made. Their guards and indexes are
-- checked by the drills that write them.
kept AS (
    SELECT c.oid FROM pg_class c
    WHERE c.relnamespace = 'olaclick'::regnamespace AND c.relkind IN ('r', 'p')
      AND NOT EXISTS (SELECT FROM members m WHERE m.classid = 'pg_class'::regclass AND m.objid = c.oid)
),
rels AS (SELECT c.oid, c.relname FROM pg_class c
         WHERE c.relnamespace = 'olaclick'::regnamespace AND c.oid NOT IN (SELECT oid FROM kept))
SELECT line FROM (
    SELECT 'member ' || pg_describe_object(classid, objid, 0) AS line FROM members
    UNION ALL
    SELECT format('function %s(%s) returns %s %s %s %s %s acl=%s', p.proname, pg_get_function_arguments(p.oid),
                  pg_get_function_result(p.oid), l.lanname, p.provolatile, p.prosecdef, p.proconfig,
                  p.proacl) || coalesce(' body=' || md5(pg_get_functiondef(p.oid)), '')
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
    WHERE p.pronamespace = 'olaclick'::regnamespace
    UNION ALL
    SELECT format('column %s.%s %s notnull=%s default=%s identity=%s acl=%s', r.relname, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attacl)
    FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef ad ON ad.adrelid = r.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT format('relation %s kind=%s rls=%s force=%s acl=%s', c.relname, c.relkind, c.relrowsecurity,
                  c.relforcerowsecurity, c.relacl)
    FROM rels r JOIN pg_class c ON c.oid = r.oid
    WHERE NOT EXISTS (SELECT FROM pg_index i WHERE i.indexrelid = c.oid AND i.indrelid IN (SELECT oid FROM kept))
    UNION ALL
    SELECT format('constraint %s.%s %s', r.relname, co.conname, pg_get_constraintdef(co.oid))
    FROM rels r JOIN pg_constraint co ON co.conrelid = r.oid
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM rels r JOIN pg_index i ON i.indrelid = r.oid
    UNION ALL
    SELECT format('trigger %s %s', pg_get_triggerdef(t.oid), t.tgenabled)
    FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid WHERE NOT t.tgisinternal
    UNION ALL
    SELECT format('policy %s.%s %s %s using=%s check=%s', tablename, policyname, cmd, roles, qual, with_check)
    FROM pg_policies WHERE schemaname = 'olaclick'
    UNION ALL
    SELECT format('enum %s %s', t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder))
    FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
    WHERE t.typnamespace = 'olaclick'::regnamespace GROUP BY t.typname
    UNION ALL
    SELECT format('event trigger %s %s %s %s %s', evtname, evtevent, evtfoid::regproc, evttags, evtenabled)
    FROM pg_event_trigger
    UNION ALL
    SELECT 'config dump ' || string_agg(c::regclass::text, ',' ORDER BY c::regclass::text)
    FROM pg_extension, unnest(extconfig) c WHERE extname = 'olaclick'
    UNION ALL
    SELECT 'schema acl ' || nspacl::text FROM pg_namespace WHERE nspname = 'olaclick'
) s
WHERE line NOT LIKE 'member function tests.%' AND line <> 'member schema tests'
ORDER BY line;
