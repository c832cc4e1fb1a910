-- pgturso SQL API: replicate tables and materialized views into Turso, schedule it with pg_cron,
-- and watch it in a status view. Internal state lives in schema pgturso; the user-facing functions
-- live in the extension's schema (the first schema of search_path at CREATE EXTENSION, usually
-- public). The URL and token always come from the user's turso_url() and turso_token() at run
-- time, so they never sit in cron.job, in a job's command or in pg_stat_activity.
--
-- Privileges: the user-facing functions are SECURITY DEFINER (owned by the superuser who created
-- the extension) with a fixed search_path, and EXECUTE on them is revoked from PUBLIC. A caller
-- needs neither REPLICATION nor any right on pgturso's state: each call checks that the session's
-- role may run it (EXECUTE on the function and SELECT on the table, or ownership of the
-- materialized view). So a role that runs replication cannot advance or drop a slot, edit the
-- bookkeeping, or read the token; it can only make pgturso replicate what it may read.

CREATE TABLE pgturso.replications (
    relid       oid PRIMARY KEY,    -- the relation (stable across renames)
    name        text NOT NULL,      -- its schema-qualified name at the last run
    kind        text NOT NULL CHECK (kind IN ('table', 'mv')),
    slot        text,               -- logical replication slot (tables only)
    synced      boolean NOT NULL DEFAULT false,  -- initial copy done
    copy_snapshot text,             -- the copy's snapshot, until a decoding call has gone past it
    schedule    text,
    cron_jobid  bigint,
    active      boolean NOT NULL DEFAULT false,
    last_run    timestamptz,
    last_status text,
    last_error  text,
    last_rows   bigint,
    url_fn      oid,                -- turso_url() and turso_token() as found when the replication
    token_fn    oid                 -- was created: later runs call these, whatever the search_path
);
REVOKE ALL ON pgturso.replications FROM PUBLIC;

-- URL and token from the functions turso_url() and turso_token() in the extension's schema, with
-- a clear error when they are missing. They are looked up only there (never through a caller's
-- search_path), must be owned by a superuser (pgturso calls them with the extension owner's
-- rights), and are recorded with the replication at its first run; a recorded function that was
-- dropped is looked up again.
CREATE FUNCTION pgturso._credentials(rel regclass DEFAULT NULL, OUT url text, OUT token text,
                                     OUT url_fn oid, OUT token_fn oid)
LANGUAGE plpgsql AS $$
DECLARE
    recorded_url oid;
    recorded_token oid;
BEGIN
    IF rel IS NOT NULL THEN
        SELECT r.url_fn, r.token_fn INTO recorded_url, recorded_token
          FROM pgturso.replications r WHERE r.relid = rel;
    END IF;
    SELECT * INTO url, token, url_fn, token_fn FROM pgturso._credentials_of(recorded_url, recorded_token);
END
$$;

-- The credential function to call: the recorded one if it still exists, else name() in the
-- extension's schema. It must be owned by a superuser: pgturso runs it with the extension owner's
-- rights, so a function another role may replace would run its code with those rights.
CREATE FUNCTION pgturso._credential_fn(recorded oid, name text, hint text) RETURNS oid
LANGUAGE plpgsql AS $$
DECLARE
    qualified text := format('%I.%I', '@extschema@', name);
    fn oid := (SELECT p.oid FROM pg_catalog.pg_proc p WHERE p.oid = recorded AND p.pronargs = 0);
    owner name;
BEGIN
    IF fn IS NULL THEN
        fn := to_regprocedure(qualified || '()');
    END IF;
    IF fn IS NULL THEN
        RAISE EXCEPTION 'function %() does not exist', qualified
            USING ERRCODE = 'undefined_function',
                  HINT = 'As a superuser, create it in schema ' || quote_ident('@extschema@') || ', ' || format(hint, qualified);
    END IF;
    SELECT r.rolname INTO owner FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
     WHERE p.oid = fn AND NOT r.rolsuper;
    IF owner IS NOT NULL THEN
        RAISE EXCEPTION '%() is owned by role "%", which is not a superuser', fn::regproc, owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('pgturso calls it with the extension owner''s rights, so only a superuser may own it: ALTER FUNCTION %s OWNER TO %I;',
                                fn::regprocedure, (SELECT r.rolname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_roles r ON r.oid = e.extowner WHERE e.extname = 'pgturso'));
    END IF;
    RETURN fn;
END
$$;

-- Calls the argument-less text function fn by its schema-qualified name.
CREATE FUNCTION pgturso._call_text(fn oid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    q text;
    out text;
BEGIN
    SELECT format('SELECT %I.%I()::text', n.nspname, p.proname) INTO STRICT q
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE p.oid = fn AND p.pronargs = 0;
    EXECUTE q INTO out;
    RETURN out;
END
$$;

-- Records the credential functions a replication's run used.
CREATE FUNCTION pgturso._pin_credentials(rel regclass, p_url_fn oid, p_token_fn oid) RETURNS void
LANGUAGE sql AS $$
    UPDATE pgturso.replications r SET url_fn = p_url_fn, token_fn = p_token_fn
     WHERE r.relid = rel AND (r.url_fn IS DISTINCT FROM p_url_fn OR r.token_fn IS DISTINCT FROM p_token_fn)
$$;

-- Raises unless the session's role may run entry (a user-facing function) on rel: EXECUTE on
-- entry, and SELECT on a table or ownership of a materialized view (what REFRESH needs). The
-- session's role, not current_user: inside these SECURITY DEFINER functions current_user is the
-- extension owner, and a scheduled job's session is the role that scheduled it.
CREATE FUNCTION pgturso._authorize(rel regclass, kind text, entry text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    who name := session_user;
    fn text := format('%I.%s', '@extschema@', entry);
BEGIN
    IF NOT has_function_privilege(who, fn, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %', fn
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('A superuser can allow it: GRANT EXECUTE ON FUNCTION %s TO %I;', fn, who);
    END IF;
    IF kind = 'table' AND NOT has_table_privilege(who, rel, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied to replicate table %', rel
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Role %I needs SELECT on it: GRANT SELECT ON %s TO %I;', who, rel, who);
    ELSIF kind = 'mv' AND NOT pg_has_role(who, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = rel), 'USAGE') THEN
        RAISE EXCEPTION 'permission denied to replicate materialized view %', rel
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Refreshing it needs its owner: ALTER MATERIALIZED VIEW %s OWNER TO %I;', rel, who);
    END IF;
END
$$;

CREATE FUNCTION pgturso._qualified(rel regclass) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('%I.%I', n.nspname, c.relname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = rel
$$;

-- The slot through which the SQL API replicates tables into one Turso database: one per pair of
-- credential functions (which name the database), shared by every table replicated there, so
-- that the database's WAL is decoded once for all of them.
CREATE FUNCTION pgturso._target_slot(p_url_fn oid, p_token_fn oid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('pgturso_%s_%s_%s', d.oid, p_url_fn, p_token_fn) FROM pg_database d WHERE d.datname = current_database()
$$;

-- Waits until this transaction is the only one using slot `slot` (the calls and scheduled runs
-- of the tables replicated into one Turso database share its slot), at most a minute.
CREATE FUNCTION pgturso._lock_slot(slot text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
    WHILE NOT pg_try_advisory_xact_lock(x'70677474'::int, hashtext(slot)) LOOP
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'another call has been replicating into the same Turso database (slot %) for over a minute', slot
                USING ERRCODE = 'lock_not_available',
                      HINT = 'The tables replicated into one Turso database share a slot, decoded by one call at a time: retry once it has finished (see pg_stat_activity).';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;

-- How long a group of source transactions stays open in one Turso transaction (plugin option
-- group_max_ms): the setting pgturso.group_max_ms (ALTER SYSTEM, ALTER DATABASE … SET, or for
-- the SQL API the session), 200 by default.
CREATE FUNCTION pgturso._group_max_ms() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('pgturso.group_max_ms', true), ''), '200')
$$;

-- After a decoding call: when slot `slot`'s restart point trails its confirmed position by more
-- than 256 kB, a record of the running transactions goes into the WAL (as the background writer
-- writes every 15 s), so that the next call can start decoding from there instead of reading
-- that WAL again (see src/decoding/slot.rs). After a call that replicated nothing, at most once a
-- second per session: while a long transaction keeps the restart point where it is, each record
-- would otherwise be new WAL for the next call to read, and so on.
CREATE FUNCTION pgturso._keep_restart_close(slot text, replicated boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    last float8 := nullif(current_setting('pgturso.restart_record_at', true), '')::float8;
    now_s float8 := extract(epoch FROM clock_timestamp());
BEGIN
    IF (replicated OR last IS NULL OR now_s - last >= 1)
       AND EXISTS (SELECT 1 FROM pg_replication_slots s
                    WHERE s.slot_name = _keep_restart_close.slot
                      AND pg_wal_lsn_diff(s.confirmed_flush_lsn, s.restart_lsn) > 256 * 1024) THEN
        PERFORM pgturso._log_running_transactions();
        PERFORM set_config('pgturso.restart_record_at', now_s::text, false);
    END IF;
END
$$;

-- Replicates what the tables copied through slot `slot` have pending, in as few Turso
-- transactions as the request limits allow (group commit: every source transaction whole, in
-- commit order, each group with the progress row of its last one), then advances the slot past
-- everything it has read. Returns the source transactions replicated. The caller holds
-- _lock_slot(slot).
CREATE FUNCTION pgturso._decode_tables(slot text, url text, token text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    oids text := (SELECT string_agg(r.relid::text, ',' ORDER BY r.relid) FROM pgturso.replications r
                   WHERE r.slot = _decode_tables.slot AND r.kind = 'table' AND r.synced);
    snaps jsonb := (SELECT jsonb_object_agg(r.relid::text, r.copy_snapshot) FROM pgturso.replications r
                     WHERE r.slot = _decode_tables.slot AND r.kind = 'table' AND r.synced
                       AND r.copy_snapshot IS NOT NULL);
    flushed pg_lsn := pg_current_wal_flush_lsn();
    n bigint;
    last pg_lsn;
BEGIN
    IF oids IS NULL THEN
        RETURN 0;
    END IF;
    -- Peeked, not consumed: the last group reaches Turso when the call ends, and only then may
    -- the slot move past it.
    PERFORM pgturso._arm_group_commit(slot);
    SELECT count(*), max(x.lsn) INTO n, last
      FROM pg_logical_slot_peek_changes(slot, NULL, NULL, 'url', url, 'auth', token, 'table_oid', oids,
                                        'group_commit', 'on', 'group_max_ms', pgturso._group_max_ms(),
                                        'skip_snapshots', coalesce(snaps, '{}')::text) x;
    PERFORM pg_replication_slot_advance(slot, greatest(flushed, coalesce(last, flushed)));
    PERFORM pgturso._keep_restart_close(slot, n > 0);
    -- The call read every transaction the copies' snapshots could contain.
    UPDATE pgturso.replications r SET copy_snapshot = NULL
     WHERE r.slot = _decode_tables.slot AND r.copy_snapshot IS NOT NULL;
    RETURN n;
END
$$;

CREATE FUNCTION pgturso._require_kind(rel regclass, kind text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE k "char" := (SELECT relkind FROM pg_class WHERE oid = rel);
BEGIN
    IF kind = 'table' AND k NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', rel
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Use turso_replicate_mv() / turso_schedule_mv_replication() for materialized views.';
    ELSIF kind = 'mv' AND k <> 'm' THEN
        RAISE EXCEPTION '"%" is not a materialized view', rel
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Use turso_replicate_table() / turso_schedule_table_replication() for tables.';
    END IF;
END
$$;

CREATE FUNCTION pgturso._record(rel regclass, kind text, rows bigint) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO pgturso.replications AS r (name, relid, kind, slot, synced, last_run, last_status, last_error, last_rows)
    VALUES (pgturso._qualified(rel), rel, kind, NULL, true, now(), 'ok', NULL, rows)
    ON CONFLICT (relid) DO UPDATE
        SET name = excluded.name, synced = true, last_run = now(), last_status = 'ok', last_error = NULL,
            last_rows = excluded.last_rows
$$;

-- Waits until every transaction older than this one (xid mine, assigned for this) has ended.
-- Each evaluation of the condition takes a new snapshot, whose xmin leaves out this backend's
-- own transaction. Interruptible.
CREATE FUNCTION pgturso._wait_for_older(mine xid8) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WHILE pg_snapshot_xmin(pg_current_snapshot()) < mine LOOP
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;

-- Replicates the pending changes of one table now, with those of every other table replicated
-- into the same Turso database: they share one slot (see _target_slot), decoded once for all.
-- The first call for a table copies the rows that already exist (initial sync), consistent with
-- the slot, and creates the slot if this is the database's first table. Returns the number of
-- source transactions replicated (plus, on the first call, the rows copied).
CREATE FUNCTION @extschema@.turso_replicate_table(tbl regclass) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
    r pgturso.replications;
    tslot text;
    have_slot boolean;
    fresh boolean := false;
    other text;
    snap text;
    n bigint := 0;
BEGIN
    PERFORM pgturso._require_kind(tbl, 'table');
    PERFORM pgturso._authorize(tbl, 'table', 'turso_replicate_table(regclass)');
    SELECT * INTO c FROM pgturso._credentials(tbl);
    tslot := pgturso._target_slot(c.url_fn, c.token_fn);
    PERFORM pgturso._lock_slot(tslot);
    have_slot := EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = tslot);
    SELECT * INTO r FROM pgturso.replications x WHERE x.relid = tbl;
    -- Copied through this slot already (a table whose credential functions changed goes to
    -- another Turso database: it is copied there).
    IF NOT (coalesce(r.synced, false) AND r.slot IS NOT DISTINCT FROM tslot AND have_slot) THEN
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'the initial copy of "%" needs READ COMMITTED', tbl
                USING ERRCODE = 'invalid_transaction_state',
                      HINT = 'Call it outside a REPEATABLE READ or SERIALIZABLE transaction: the copy must see every row committed before the table''s slot was created.';
        END IF;
        -- One slot routes each change to one Turso table: a partition and a partitioned table
        -- above it cannot both be replicated into one Turso database.
        SELECT x.name INTO other FROM pgturso.replications x
         WHERE x.slot = tslot AND x.synced AND x.relid <> tbl
           AND EXISTS (SELECT 1 FROM pg_class k WHERE k.oid = x.relid)
           AND (x.relid IN (SELECT a.relid FROM pg_partition_ancestors(tbl) a)
                OR tbl IN (SELECT a.relid FROM pg_partition_ancestors(x.relid::regclass) a))
         LIMIT 1;
        IF other IS NOT NULL THEN
            RAISE EXCEPTION 'cannot replicate "%": "%", a partition or partitioned table of it, is replicated into the same Turso database', tbl, other
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Replicate either the partitioned table (it includes its partitions'' rows) or its partitions, or give one of them other credential functions.';
        END IF;
        -- A slot that no copied table uses is left from a call that failed: made anew, so that
        -- the copy resets the progress it may have left in Turso. Creating a slot must come
        -- before any write in this transaction.
        IF NOT have_slot OR NOT EXISTS (SELECT 1 FROM pgturso.replications x
                                         WHERE x.slot = tslot AND x.synced AND x.relid <> tbl) THEN
            IF have_slot THEN
                PERFORM pg_drop_replication_slot(tslot);
            END IF;
            PERFORM pgturso._create_slot(tslot);
            fresh := true;
        END IF;
        -- A transaction whose commit record precedes the slot's consistent point is not decoded,
        -- and while it is still in the ProcArray (waiting for a synchronous standby, say) a
        -- snapshot taken now would not see it either (nor list it: its xid can be past the
        -- snapshot's xmax). Every transaction running now is older than an xid taken now: wait
        -- until they have all ended, so the copy's snapshot sees every one that committed.
        PERFORM pgturso._wait_for_older(pg_current_xact_id());
        -- The copy's snapshot is taken after the slot's consistent point, so every transaction is
        -- in the copy or decoded later; the decoding skips those the copy's snapshot saw.
        SELECT s.rows, s.snapshot INTO n, snap
          FROM pgturso._sync_rows(tbl, c.url, c.token, true, NULL, format('SELECT * FROM %s', tbl::text),
                                  CASE WHEN fresh THEN tslot END) s;
        IF fresh THEN
            -- The tables an earlier slot of this name had copied are copied again by their next call.
            UPDATE pgturso.replications x SET synced = false, copy_snapshot = NULL
             WHERE x.slot = tslot AND x.relid <> tbl;
        END IF;
        INSERT INTO pgturso.replications AS x (name, relid, kind, slot, synced, copy_snapshot)
        VALUES (pgturso._qualified(tbl), tbl, 'table', tslot, true, snap)
        ON CONFLICT (relid) DO UPDATE SET synced = true, copy_snapshot = excluded.copy_snapshot, slot = excluded.slot;
        -- The slot this table had before (other credentials, or an older pgturso's slot per
        -- table): dropped once nothing uses it.
        PERFORM pgturso._drop_unused_slot(r.slot);
    END IF;
    n := n + pgturso._decode_tables(tslot, c.url, c.token);
    PERFORM pgturso._record(tbl, 'table', n);
    PERFORM pgturso._pin_credentials(tbl, c.url_fn, c.token_fn);
    RETURN n;
END
$$;

-- Drops slot `slot` if it is the SQL API's, no replication uses it and no process does.
CREATE FUNCTION pgturso._drop_unused_slot(slot text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF slot IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pgturso.replications x WHERE x.slot = _drop_unused_slot.slot)
       AND NOT EXISTS (SELECT 1 FROM pgturso.publications x WHERE x.slot = _drop_unused_slot.slot)
       AND EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = _drop_unused_slot.slot AND NOT s.active
                      AND s.database = current_database()) THEN
        PERFORM pg_drop_replication_slot(slot);
    END IF;
END
$$;

CREATE FUNCTION pgturso._mv_key(mv regclass) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(quote_ident(a.attname) ORDER BY k.ord)
    FROM (SELECT i.indkey FROM pg_index i
          WHERE i.indrelid = mv AND i.indisunique AND i.indisvalid
            AND i.indpred IS NULL AND i.indexprs IS NULL
          ORDER BY i.indexrelid LIMIT 1) i,
         unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = mv AND a.attnum = k.attnum
$$;

-- The difference between a materialized view and its shadow (what Turso has), into the temporary
-- tables pgturso_mv_deletes (rows to delete by key) and pgturso_mv_upserts (rows to upsert).
-- Computed before any request to Turso, so no Turso stream waits on it. Keys and rows are
-- compared as text, which hashes (IS NOT DISTINCT FROM does not: a nested loop, quadratic in the
-- view's rows), and whole-row references ("alias.*") keep a column named like an alias from
-- capturing them. Rows with a NULL in the key are not identified by it (a unique index lets such
-- keys repeat): when the rows sharing such a key change at all, every Turso row with that key is
-- deleted (NULL-safe, IS) and the view's rows with it inserted again.
CREATE FUNCTION pgturso._mv_diff(mv regclass, shadow text, key text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kn text := format('ROW(%s)::text', (SELECT string_agg('pgturso_new.' || k, ', ') FROM unnest(key) k));
    ko text := format('ROW(%s)::text', (SELECT string_agg('pgturso_old.' || k, ', ') FROM unnest(key) k));
    nulln text := (SELECT string_agg('pgturso_new.' || k || ' IS NULL', ' OR ') FROM unnest(key) k);
    nullo text := (SELECT string_agg('pgturso_old.' || k || ' IS NULL', ' OR ') FROM unnest(key) k);
    same_key text := (SELECT string_agg(format('pgturso_new.%1$s = pgturso_old.%1$s', k), ' AND ') FROM unnest(key) k);
    groups text;
BEGIN
    IF to_regclass('pg_temp.pgturso_mv_deletes') IS NOT NULL THEN
        DROP TABLE pg_temp.pgturso_mv_deletes;
    END IF;
    IF to_regclass('pg_temp.pgturso_mv_upserts') IS NOT NULL THEN
        DROP TABLE pg_temp.pgturso_mv_upserts;
    END IF;
    -- The NULL-keyed groups whose rows changed.
    groups := format(
        'SELECT kt FROM (SELECT %1$s AS kt, string_agg((pgturso_new.*)::text, '','' ORDER BY (pgturso_new.*)::text) AS a FROM %3$s pgturso_new WHERE %5$s GROUP BY 1) n '
        'FULL JOIN (SELECT %2$s AS kt, string_agg((pgturso_old.*)::text, '','' ORDER BY (pgturso_old.*)::text) AS a FROM %4$s pgturso_old WHERE %6$s GROUP BY 1) o '
        'USING (kt) WHERE n.a IS DISTINCT FROM o.a',
        kn, ko, mv::text, shadow, nulln, nullo);
    EXECUTE format('CREATE TEMP TABLE pgturso_mv_groups AS %s', groups);
    EXECUTE format(
        'CREATE TEMP TABLE pgturso_mv_deletes AS '
        'SELECT pgturso_old.* FROM %1$s pgturso_old WHERE NOT (%4$s) AND NOT EXISTS (SELECT 1 FROM %2$s pgturso_new WHERE %3$s) '
        'UNION ALL SELECT DISTINCT ON (%5$s) pgturso_old.* FROM %1$s pgturso_old WHERE (%4$s) AND %5$s IN (SELECT kt FROM pg_temp.pgturso_mv_groups)',
        shadow, mv::text, same_key, nullo, ko);
    EXECUTE format(
        'CREATE TEMP TABLE pgturso_mv_upserts AS '
        'SELECT pgturso_new.* FROM %1$s pgturso_new WHERE NOT (%4$s) AND NOT EXISTS (SELECT 1 FROM %2$s pgturso_old WHERE (pgturso_old.*)::text = (pgturso_new.*)::text) '
        'UNION ALL SELECT pgturso_new.* FROM %1$s pgturso_new WHERE (%4$s) AND %3$s IN (SELECT kt FROM pg_temp.pgturso_mv_groups)',
        mv::text, shadow, kn, nulln);
    DROP TABLE pg_temp.pgturso_mv_groups;
END
$$;

-- Refreshes a materialized view, then makes its Turso table equal to it in one Turso transaction.
-- With a unique index: REFRESH ... CONCURRENTLY, and only the difference against the last
-- replicated contents (kept in a shadow table) travels. Without: the Turso table is replaced.
-- Returns the number of rows sent.
CREATE FUNCTION @extschema@.turso_replicate_mv(mv regclass) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
    key text[] := pgturso._mv_key(mv);
    shadow text := format('pgturso.%I', 'shadow_' || mv::oid);
    synced boolean;
    n bigint;
BEGIN
    PERFORM pgturso._require_kind(mv, 'mv');
    PERFORM pgturso._authorize(mv, 'mv', 'turso_replicate_mv(regclass)');
    SELECT * INTO c FROM pgturso._credentials(mv);
    IF key IS NOT NULL AND (SELECT relispopulated FROM pg_class WHERE oid = mv) THEN
        EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %s', mv::text);
    ELSE
        EXECUTE format('REFRESH MATERIALIZED VIEW %s', mv::text);
    END IF;
    SELECT r.synced INTO synced FROM pgturso.replications r WHERE r.relid = mv;
    IF key IS NULL THEN
        SELECT s.rows INTO n FROM pgturso._sync_rows(mv, c.url, c.token, true, NULL, format('SELECT * FROM %s', mv::text)) s;
    ELSIF NOT coalesce(synced, false) OR to_regclass(shadow) IS NULL THEN
        IF to_regclass(shadow) IS NOT NULL THEN
            EXECUTE format('DROP TABLE %s', shadow);
        END IF;
        EXECUTE format('CREATE TABLE %s AS SELECT * FROM %s WITH NO DATA', shadow, mv::text);
        SELECT s.rows INTO n FROM pgturso._sync_rows(mv, c.url, c.token, true, NULL, format('SELECT * FROM %s', mv::text)) s;
        EXECUTE format('INSERT INTO %s SELECT * FROM %s', shadow, mv::text);
    ELSE
        PERFORM pgturso._mv_diff(mv, shadow, key);
        SELECT s.rows INTO n FROM pgturso._sync_rows(mv, c.url, c.token, false,
            'SELECT * FROM pg_temp.pgturso_mv_deletes', 'SELECT * FROM pg_temp.pgturso_mv_upserts') s;
        -- The shadow takes the same difference: the rows of every key deleted or upserted go,
        -- the upserted rows come (as Turso did).
        EXECUTE format(
            'DELETE FROM %1$s pgturso_old WHERE %2$s IN (SELECT %2$s FROM pg_temp.pgturso_mv_deletes pgturso_old UNION ALL SELECT %2$s FROM pg_temp.pgturso_mv_upserts pgturso_old)',
            shadow, format('ROW(%s)::text', (SELECT string_agg('pgturso_old.' || k, ', ') FROM unnest(key) k)));
        EXECUTE format('INSERT INTO %s SELECT * FROM pg_temp.pgturso_mv_upserts', shadow);
        DROP TABLE pg_temp.pgturso_mv_deletes, pg_temp.pgturso_mv_upserts;
    END IF;
    PERFORM pgturso._record(mv, 'mv', n);
    PERFORM pgturso._pin_credentials(mv, c.url_fn, c.token_fn);
    RETURN n;
END
$$;

-- '<n> seconds' (1 to 59) -> n; a cron expression -> NULL.
CREATE FUNCTION pgturso._seconds(schedule text) RETURNS int
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE m text[] := regexp_match(schedule, '^\s*(\d+)\s*(s|sec|secs|second|seconds)\s*$', 'i');
BEGIN
    IF m IS NULL THEN
        RETURN NULL;
    END IF;
    IF m[1]::int NOT BETWEEN 1 AND 59 THEN
        RAISE EXCEPTION 'invalid schedule "%"', schedule
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 1 to 59 seconds, e.g. ''5 seconds'', or a cron expression, e.g. ''*/5 * * * *''.';
    END IF;
    RETURN m[1]::int;
END
$$;

-- Creates pgturso's logical slot `slot`. On PostgreSQL 17 and later it is a failover slot: a
-- physical standby with sync_replication_slots = on keeps a copy in step, so after a switchover
-- the promoted standby replicates on from where the old primary was, losing nothing.
CREATE FUNCTION pgturso._create_slot(slot text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Through Rust, which puts the resource owner back afterwards (see src/decoding/slot.rs):
    -- called here directly, the slot's creation could fail depending on concurrent DDL.
    -- Failover slots on PostgreSQL 17 and later.
    PERFORM pgturso._create_logical_slot(slot, true);
END
$$;

-- Raises unless pg_cron can be used from this database (no writes: safe before creating a slot).
CREATE FUNCTION pgturso._cron_check() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    IF current_setting('shared_preload_libraries') !~ '(^|[\s,])pg_cron($|[\s,])' THEN
        RAISE EXCEPTION 'pg_cron is not available'
            USING ERRCODE = 'feature_not_supported',
                  HINT = format('Scheduling needs pg_cron: install it (Debian and PGDG: postgresql-%s-cron), set shared_preload_libraries = ''pg_cron'' and cron.database_name, restart PostgreSQL. Without pg_cron, call turso_replicate_table() / turso_replicate_mv() yourself.',
                                current_setting('server_version_num')::int / 10000);
    END IF;
    IF current_database() <> current_setting('cron.database_name', true) THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'feature_not_supported',
                  HINT = format('Run the scheduling functions in database "%s" (cron.database_name), or set cron.database_name to this database.', current_setting('cron.database_name', true));
    END IF;
END
$$;

-- pg_cron's version, creating its extension here (the cron database) when missing.
CREATE FUNCTION pgturso._require_cron() RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgturso._cron_check();
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        CREATE EXTENSION pg_cron;
    END IF;
    RETURN (SELECT extversion FROM pg_extension WHERE extname = 'pg_cron');
END
$$;

-- One scheduled run: replicates, and records the outcome instead of failing the job. The job runs
-- as the role that scheduled it, which must still be allowed to replicate the relation.
CREATE FUNCTION pgturso._run(p_relid oid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE r pgturso.replications;
BEGIN
    SELECT * INTO r FROM pgturso.replications WHERE relid = p_relid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no replication of relation %', p_relid;
    END IF;
    -- Outside the handler below: a role that may not run it gets the error, the bookkeeping stays.
    IF r.kind = 'table' THEN
        PERFORM pgturso._authorize(r.relid::regclass, r.kind, 'turso_replicate_table(regclass)');
    ELSE
        PERFORM pgturso._authorize(r.relid::regclass, r.kind, 'turso_replicate_mv(regclass)');
    END IF;
    BEGIN
        IF r.kind = 'table' THEN
            PERFORM @extschema@.turso_replicate_table(r.relid::regclass);
        ELSE
            PERFORM @extschema@.turso_replicate_mv(r.relid::regclass);
        END IF;
        RETURN true;
    EXCEPTION WHEN OTHERS THEN
        UPDATE pgturso.replications
           SET last_run = now(), last_status = 'error', last_error = SQLERRM
         WHERE relid = p_relid;
        RETURN false;
    END;
END
$$;

-- Runs a replication every p_seconds within one minute (for pg_cron before 1.5, whose
-- schedules have a one-minute resolution); started by a job that runs every minute.
CREATE PROCEDURE pgturso._run_every(p_relid oid, p_seconds int)
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    tick int := 0;
BEGIN
    LOOP
        PERFORM pgturso._run(p_relid);
        COMMIT;
        tick := tick + 1;
        EXIT WHEN tick * p_seconds >= 60;
        PERFORM pg_sleep(greatest(0, extract(epoch FROM
            started + make_interval(secs => tick * p_seconds) - clock_timestamp())));
    END LOOP;
END
$$;

CREATE FUNCTION pgturso._schedule(rel regclass, kind text, schedule text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    rep_name text := pgturso._qualified(rel);
    secs int := pgturso._seconds(schedule);
    r pgturso.replications;
    cron_version text;
    cron_schedule text;
    command text;
    jobid bigint;
BEGIN
    PERFORM pgturso._require_kind(rel, kind);
    PERFORM pgturso._authorize(rel, kind, format('turso_schedule_%s_replication(regclass, text)', kind));
    PERFORM pgturso._credentials(rel);
    SELECT * INTO r FROM pgturso.replications p WHERE p.relid = rel;
    IF FOUND AND r.active AND r.schedule = schedule AND r.cron_jobid IS NOT NULL THEN
        RETURN r.cron_jobid;   -- already scheduled: no second slot, no second job
    END IF;
    PERFORM pgturso._cron_check();   -- before anything is created
    -- First run now: creates the slot (before any write) and does the initial sync.
    IF kind = 'table' THEN
        PERFORM @extschema@.turso_replicate_table(rel);
    ELSE
        PERFORM @extschema@.turso_replicate_mv(rel);
    END IF;
    cron_version := pgturso._require_cron();
    IF secs IS NULL THEN
        cron_schedule := schedule;
        command := format('SELECT pgturso._run(%s)', rel::oid);
    ELSIF string_to_array(split_part(cron_version, '-', 1), '.')::int[] >= ARRAY[1, 5] THEN
        cron_schedule := format('%s seconds', secs);
        command := format('SELECT pgturso._run(%s)', rel::oid);
    ELSE
        cron_schedule := '* * * * *';
        command := format('CALL pgturso._run_every(%s, %s)', rel::oid, secs);
    END IF;
    -- The job runs as the session's role (not as the extension owner this function runs as).
    EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, $4, $5)' INTO jobid
        USING 'pgturso:' || rep_name, cron_schedule, command, current_database(), session_user::text;
    UPDATE pgturso.replications p
       SET schedule = _schedule.schedule, cron_jobid = jobid, active = true
     WHERE p.relid = rel;
    RETURN jobid;
END
$$;

-- Creates what is needed (slot, Turso table, initial copy) and a pg_cron job; returns the job id.
-- schedule: a cron expression ('*/5 * * * *') or '<n> seconds' (1 to 59).
CREATE FUNCTION @extschema@.turso_schedule_table_replication(tbl regclass, schedule text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT pgturso._schedule(tbl, 'table', schedule) $$;

CREATE FUNCTION @extschema@.turso_schedule_mv_replication(mv regclass, schedule text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT pgturso._schedule(mv, 'mv', schedule) $$;

-- Removes the job of a replication; with drop_slot, also its state (a later call copies the
-- table again) and, with the last table replicated into its Turso database, the slot. The name is
-- resolved here, in the caller's search_path; the work is done by pgturso._unschedule.
CREATE FUNCTION @extschema@.turso_unschedule(name text, drop_slot boolean DEFAULT false) RETURNS boolean
LANGUAGE sql AS $$ SELECT pgturso._unschedule(name, to_regclass(name), drop_slot) $$;

CREATE FUNCTION pgturso._unschedule(name text, rel regclass, drop_slot boolean) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pgturso.replications;
BEGIN
    SELECT * INTO r FROM pgturso.replications p
     WHERE p.name = _unschedule.name OR (rel IS NOT NULL AND p.relid = rel);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no replication named "%"', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See the replications in turso_replication_status.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = r.relid) THEN
        PERFORM pgturso._authorize(r.relid::regclass, r.kind, 'turso_unschedule(text, boolean)');
    ELSIF NOT (SELECT a.rolsuper FROM pg_catalog.pg_roles a WHERE a.rolname = session_user) THEN
        RAISE EXCEPTION 'permission denied to remove the replication of "%"', r.name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The relation no longer exists, so no privilege on it can be checked: a superuser can remove its replication.';
    END IF;
    IF r.cron_jobid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        EXECUTE 'SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobid = $1' USING r.cron_jobid;
    END IF;
    IF drop_slot THEN
        IF to_regclass(format('pgturso.%I', 'shadow_' || r.relid)) IS NOT NULL THEN
            EXECUTE format('DROP TABLE pgturso.%I', 'shadow_' || r.relid);
        END IF;
        DELETE FROM pgturso.replications p WHERE p.relid = r.relid;
        -- The slot is its Turso database's: it goes with the last table replicated there.
        IF r.slot IS NOT NULL THEN
            PERFORM pgturso._lock_slot(r.slot);
            PERFORM pgturso._drop_unused_slot(r.slot);
        END IF;
    ELSE
        UPDATE pgturso.replications p SET active = false, cron_jobid = NULL, schedule = NULL
         WHERE p.relid = r.relid;
    END IF;
    RETURN true;
END
$$;

-- Continuous replication of a publication by a background worker (turso_start / turso_stop).
CREATE TABLE pgturso.publications (
    id          serial PRIMARY KEY,
    pubname     name NOT NULL UNIQUE,
    slot        text NOT NULL,
    owner       name NOT NULL,       -- the role that started it: its rights are checked at every step
    url_fn      oid NOT NULL,
    token_fn    oid NOT NULL,
    copy_snapshots text,             -- {relid: snapshot} of the initial copies, until decoding passed them
    copied      text[] NOT NULL DEFAULT '{}', -- memberships (see _publication_tables) as of the last step, all copied
    enabled     boolean NOT NULL DEFAULT true,
    state       text NOT NULL DEFAULT 'starting'
                CHECK (state IN ('starting', 'streaming', 'waiting for Turso', 'error', 'stopped')),
    pid         int,
    started_at  timestamptz,
    txns        bigint NOT NULL DEFAULT 0,   -- source transactions replicated
    rows        bigint NOT NULL DEFAULT 0,   -- their row changes (rows of table rewrites included)
    -- When the worker first saw WAL it had not replicated yet (NULL: caught up): no change still
    -- pending was committed before it, so now() minus it bounds the lag from above.
    pending_since timestamptz,
    last_applied_at timestamptz,
    last_error  text,
    last_error_at timestamptz
);
REVOKE ALL ON pgturso.publications FROM PUBLIC;

-- The process ids of the workers of publication replication id (one, or none; briefly two while
-- one restarts).
CREATE FUNCTION pgturso._workers(id int) RETURNS SETOF int
LANGUAGE sql STABLE AS $$
    SELECT a.pid FROM pg_catalog.pg_stat_activity a
     WHERE a.backend_type = 'pgturso publication' AND a.application_name = 'pgturso publication ' || id
$$;

-- Raises unless the session's role may start or stop the replication of publication pub: EXECUTE
-- on entry and ownership of the publication.
CREATE FUNCTION pgturso._authorize_publication(who name, pub oid, entry text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    fn text := format('%I.%s', '@extschema@', entry);
    p pg_publication;
BEGIN
    SELECT * INTO p FROM pg_publication WHERE oid = pub;
    IF NOT has_function_privilege(who, fn, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %', fn
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('A superuser can allow it: GRANT EXECUTE ON FUNCTION %s TO %I;', fn, who);
    END IF;
    IF NOT pg_has_role(who, p.pubowner, 'USAGE') THEN
        RAISE EXCEPTION 'must be the owner of publication % to replicate it', p.pubname
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('ALTER PUBLICATION %I OWNER TO %I;', p.pubname, who);
    END IF;
END
$$;

-- Starts replicating publication pub into Turso: its slot, the initial copy of every table in it
-- (each copy consistent with the slot), then a background worker that streams its changes. The
-- URL and token come from turso_url() and turso_token(), or from the functions named (owned by a
-- superuser, as those). Starting a stopped replication resumes it where it stopped. Returns the
-- worker's process id.
-- The tables a publication publishes (the partitioned table itself when it publishes through the
-- partition root), as pg_publication_tables lists them, each with its membership: the table and
-- the catalog row that puts it in the publication (its or an ancestor's pg_publication_rel, its
-- schema's pg_publication_namespace; 0 for FOR ALL TABLES). A table that leaves the publication
-- and comes back has another membership, even if no step saw it out.
CREATE FUNCTION pgturso._publication_tables(publication name, OUT rel regclass, OUT member text)
RETURNS SETOF record
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.rel, t.rel::oid || ':' || coalesce(
               (SELECT max(pr.oid) FROM pg_publication_rel pr
                 WHERE pr.prpubid = p.oid
                   AND (pr.prrelid = t.rel OR pr.prrelid IN (SELECT a.relid FROM pg_partition_ancestors(t.rel) a))),
               (SELECT max(pn.oid) FROM pg_publication_namespace pn, pg_class k
                 WHERE pn.pnpubid = p.oid AND k.oid = t.rel AND pn.pnnspid = k.relnamespace),
               0)
      FROM pg_publication p,
           LATERAL (SELECT DISTINCT format('%I.%I', pt.schemaname, pt.tablename)::regclass AS rel
                      FROM pg_publication_tables pt
                     WHERE pt.pubname = p.pubname AND pt.schemaname <> 'pgturso') t
     WHERE p.pubname = publication
     ORDER BY 1
$$;

-- The pg_publication_rel row through which publication `publication` holds `rel`: its own, or
-- that of the nearest partition ancestor the publication names, as decoding takes it (none for
-- a schema or all-tables membership).
CREATE FUNCTION pgturso._membership(rel regclass, publication name) RETURNS pg_publication_rel
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pr.*
      FROM pg_publication p
      JOIN pg_publication_rel pr ON pr.prpubid = p.oid
      LEFT JOIN (SELECT a.relid, row_number() OVER () AS n FROM pg_partition_ancestors(rel) a) anc
             ON anc.relid = pr.prrelid
     WHERE p.pubname = publication AND (pr.prrelid = rel OR anc.n IS NOT NULL)
     ORDER BY CASE WHEN pr.prrelid = rel THEN 0 ELSE anc.n END
     LIMIT 1
$$;

-- The column list publication `publication` has for `rel`, as column names (NULL: every column).
CREATE FUNCTION pgturso._copy_columns(rel regclass, publication name) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
             WHERE a.attrelid = m.prrelid AND a.attnum = ANY (m.prattrs::int2[]))
      FROM pgturso._membership(rel, publication) m
     WHERE m.prattrs IS NOT NULL
$$;

-- The query of a publication table's initial copy: its own rows, or a partitioned table's (its
-- partitions' rows, when published through the root); only the columns of the publication's
-- column list, in the table's order, and the rows of its row filter.
CREATE FUNCTION pgturso._copy_query(rel regclass, publication name DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format(CASE WHEN (SELECT relkind FROM pg_class WHERE oid = rel) = 'p'
                       THEN 'SELECT %s FROM %s%s' ELSE 'SELECT %s FROM ONLY %s%s' END,
                  coalesce((SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                              FROM pg_attribute a
                             WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
                               AND a.attname::text = ANY (pgturso._copy_columns(rel, publication))),
                           '*'),
                  rel,
                  coalesce((SELECT ' WHERE ' || pg_get_expr(m.prqual, m.prrelid)
                              FROM pgturso._membership(rel, publication) m
                             WHERE m.prqual IS NOT NULL), ''))
$$;

CREATE FUNCTION @extschema@.turso_start(publication text, url_fn regprocedure DEFAULT NULL,
                                        token_fn regprocedure DEFAULT NULL) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p pg_publication;
    r pgturso.publications;
    slot text;
    c record;
    t record;
    snaps jsonb := '{}';
    first boolean := true;
    snap text;
    members text[];
BEGIN
    SELECT * INTO p FROM pg_publication WHERE pubname = publication;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'publication "%" does not exist', publication
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it first, e.g. CREATE PUBLICATION %I FOR TABLE accounts, orders;', publication);
    END IF;
    PERFORM pgturso._authorize_publication(session_user, p.oid, 'turso_start(text, regprocedure, regprocedure)');
    SELECT * INTO r FROM pgturso.publications x WHERE x.pubname = publication;
    IF FOUND THEN
        IF r.enabled AND EXISTS (SELECT 1 FROM pgturso._workers(r.id)) THEN
            RETURN (SELECT min(w) FROM pgturso._workers(r.id) w);   -- running already
        END IF;
        UPDATE pgturso.publications x SET enabled = true, state = 'starting', owner = session_user
         WHERE x.id = r.id;
    ELSE
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'the initial copy of publication "%" needs READ COMMITTED', publication
                USING ERRCODE = 'invalid_transaction_state',
                      HINT = 'Call it outside a REPEATABLE READ or SERIALIZABLE transaction: each table''s copy must see every row committed before the slot was created.';
        END IF;
        -- Functions named by the caller must be ones the caller may call: pgturso calls them
        -- with the owner's rights, and their results could show in errors.
        IF (url_fn IS NOT NULL AND NOT has_function_privilege(session_user, url_fn, 'EXECUTE'))
           OR (token_fn IS NOT NULL AND NOT has_function_privilege(session_user, token_fn, 'EXECUTE')) THEN
            RAISE EXCEPTION 'permission denied for the credential functions named'
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Name only functions you may execute (GRANT EXECUTE ON FUNCTION … TO you), or leave them out for turso_url() and turso_token().';
        END IF;
        -- The credentials first (no write yet: creating the slot must come before any).
        SELECT * INTO c FROM pgturso._credentials_of(url_fn, token_fn);
        slot := format('pgturso_pub_%s_%s', (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()), p.oid);
        IF EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = slot) THEN
            PERFORM pg_drop_replication_slot(slot);
        END IF;
        PERFORM pgturso._create_slot(slot);
        -- As for a table's initial copy: every transaction running now has ended before a copy
        -- is taken, so each copy's snapshot sees every one that committed; decoding skips, per
        -- table, the transactions its copy saw.
        PERFORM pgturso._wait_for_older(pg_current_xact_id());
        -- The memberships copied are the ones recorded: one read (a table that joins meanwhile
        -- is copied by the worker's first step).
        members := ARRAY(SELECT x.member FROM pgturso._publication_tables(publication) x);
        FOR t IN SELECT split_part(m, ':', 1)::oid::regclass AS rel, n FROM unnest(members) WITH ORDINALITY x(m, n) LOOP
            SELECT s.snapshot INTO snap
              FROM pgturso._sync_rows(t.rel, c.url, c.token, true, NULL, pgturso._copy_query(t.rel, p.pubname),
                                      CASE WHEN first THEN slot END,
                                      pgturso._copy_columns(t.rel, p.pubname),
                                      ARRAY[p.oid::int8, t.n, cardinality(members)]) s;
            first := false;
            snaps := snaps || jsonb_build_object(t.rel::oid::text, snap);
        END LOOP;
        INSERT INTO pgturso.publications (pubname, slot, owner, url_fn, token_fn, copy_snapshots, copied)
        VALUES (publication, slot, session_user, c.url_fn, c.token_fn, CASE WHEN snaps <> '{}' THEN snaps::text END,
                members)
        RETURNING * INTO r;
    END IF;
    r.pid := pgturso._launch(r.id, pg_current_xact_id()::text::bigint);
    UPDATE pgturso.publications x SET pid = r.pid, started_at = now() WHERE x.id = r.id;
    RETURN r.pid;
END
$$;

-- The credentials from the functions named, or turso_url() / turso_token() of the extension's
-- schema (see _credentials).
CREATE FUNCTION pgturso._credentials_of(p_url_fn oid, p_token_fn oid, OUT url text, OUT token text,
                                        OUT url_fn oid, OUT token_fn oid)
LANGUAGE plpgsql AS $$
BEGIN
    url_fn := pgturso._credential_fn(p_url_fn, 'turso_url',
        'returning your Turso database URL: CREATE FUNCTION %s() RETURNS text LANGUAGE sql AS $f$ SELECT ''http://127.0.0.1:8080/'' $f$;');
    token_fn := pgturso._credential_fn(p_token_fn, 'turso_token',
        'returning your Turso token (an empty string for a server without auth), readable only by superusers: CREATE FUNCTION %s() RETURNS text LANGUAGE sql AS $f$ SELECT token FROM public.turso_secret $f$; REVOKE ALL ON FUNCTION %1$s() FROM PUBLIC;');
    url := pgturso._call_text(url_fn);
    token := coalesce(pgturso._call_text(token_fn), '');
    IF url IS NULL OR url = '' THEN
        RAISE EXCEPTION '%() returned no URL', url_fn::regproc
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Make it return the Turso database URL, e.g. http://127.0.0.1:8080/.';
    END IF;
END
$$;

-- One step of a publication's worker: replicates what is pending (at most max_txns transactions)
-- and records the outcome. Returns the transactions replicated, -1 after an error and -3 while
-- Turso is unreachable or busy (both recorded in the row), -2 when the replication is stopped or
-- gone (the worker then exits).
CREATE FUNCTION pgturso._publication_step(p_id int, max_txns int) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pgturso.publications;
    c record;
    t record;
    n bigint;
    last pg_lsn;
    flushed pg_lsn;
    snap text;
    waited boolean := false;
    waiting boolean;
    tables text[];
    nrows bigint;
BEGIN
    SELECT * INTO r FROM pgturso.publications x WHERE x.id = p_id;
    IF NOT FOUND OR NOT r.enabled THEN
        RETURN -2;
    END IF;
    IF r.pid IS DISTINCT FROM pg_backend_pid() THEN
        UPDATE pgturso.publications x SET pid = pg_backend_pid() WHERE x.id = p_id;
    END IF;
    -- Nothing written since the slot's position: nothing to decode (and no decoding context,
    -- whose creation PostgreSQL logs).
    IF r.copy_snapshots IS NULL AND r.state = 'streaming'
       AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s
                        WHERE s.slot_name = r.slot AND s.confirmed_flush_lsn < pg_current_wal_flush_lsn()) THEN
        RETURN 0;
    END IF;
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = r.pubname) THEN
            RAISE EXCEPTION 'publication "%" does not exist', r.pubname
                USING HINT = 'It was dropped: SELECT turso_stop(name, drop => true) removes its replication.';
        END IF;
        PERFORM pgturso._authorize_publication(r.owner, (SELECT oid FROM pg_publication WHERE pubname = r.pubname),
                                               'turso_start(text, regprocedure, regprocedure)');
        SELECT * INTO c FROM pgturso._credentials_of(r.url_fn, r.token_fn);
        -- A table added to the publication since the last step is copied first, as turso_start
        -- copies (its copy's snapshot sees every transaction that has ended; decoding skips, for
        -- that table, what the copy saw). A table that left the publication and comes back is
        -- copied again: its changes meanwhile were not replicated.
        -- The memberships are read once: a table that joins while this step runs is copied by
        -- the next one, never recorded as copied without its copy.
        tables := ARRAY(SELECT x.member FROM pgturso._publication_tables(r.pubname) x);
        FOR t IN SELECT x.rel, row_number() OVER () AS n, count(*) OVER () AS total
                   FROM (SELECT split_part(m, ':', 1)::oid::regclass AS rel FROM unnest(tables) m
                          WHERE NOT (m = ANY (r.copied))) x LOOP
            IF NOT waited THEN
                PERFORM pgturso._wait_for_older(pg_current_xact_id());
                waited := true;
            END IF;
            SELECT s.snapshot INTO snap
              FROM pgturso._sync_rows(t.rel, c.url, c.token, true, NULL, pgturso._copy_query(t.rel, r.pubname),
                                      NULL, pgturso._copy_columns(t.rel, r.pubname),
                                      ARRAY[(SELECT oid FROM pg_publication WHERE pubname = r.pubname)::int8,
                                            t.n, t.total]) s;
            r.copy_snapshots := (coalesce(r.copy_snapshots, '{}')::jsonb
                                 || jsonb_build_object(t.rel::oid::text, snap))::text;
        END LOOP;
        -- Group commit: the call holds every transaction it decodes in one Turso transaction,
        -- committed when the call ends; only then is the slot advanced, past what it decoded
        -- (everything up to the WAL flushed before it, unless it stopped at max_txns).
        flushed := pg_current_wal_flush_lsn();
        -- PostgreSQL logs every decoding context it creates (two LOG lines each, twice a step),
        -- whatever log_min_messages short of FATAL says: a worker stepping every few
        -- milliseconds under load would fill the server log. For the rest of this step only; a
        -- failure rolls it back with this block, so its WARNING below is logged.
        PERFORM set_config('log_min_messages', 'fatal', true);
        -- Each line: 'COMMIT <lsn>: <n> change(s)[, <m> rows rewritten]'.
        SELECT count(*), max(x.lsn), coalesce(sum(substring(x.data FROM ': ([0-9]+) change')::bigint), 0)
          INTO n, last, nrows
          FROM pg_logical_slot_peek_changes(r.slot, NULL, max_txns,
                  'url', c.url, 'auth', c.token, 'publication_names', quote_ident(r.pubname),
                  'group_commit', 'on', 'group_max_ms', pgturso._group_max_ms(),
                  'skip_snapshots', coalesce(r.copy_snapshots, '{}')) x;
        PERFORM pg_replication_slot_advance(r.slot,
            CASE WHEN n < max_txns THEN greatest(flushed, coalesce(last, flushed)) ELSE last END);
        PERFORM pgturso._keep_restart_close(r.slot, n > 0);
        UPDATE pgturso.publications x
           SET state = 'streaming', txns = x.txns + n, rows = x.rows + nrows,
               -- Caught up with the WAL flushed at the start: what came since was committed
               -- after the step began. Stopped at max_txns: still behind since then.
               pending_since = CASE WHEN n >= max_txns THEN coalesce(x.pending_since, now())
                                    WHEN pg_current_wal_flush_lsn() > flushed THEN now() END,
               last_applied_at = CASE WHEN n > 0 THEN now() ELSE x.last_applied_at END,
               -- A call that stopped short of max_txns reached the end of the WAL, past every copy.
               copy_snapshots = CASE WHEN n < max_txns THEN NULL ELSE r.copy_snapshots END,
               copied = tables,
               url_fn = c.url_fn, token_fn = c.token_fn
         WHERE x.id = p_id
           AND (x.state <> 'streaming' OR n > 0 OR r.copy_snapshots IS NOT NULL
                OR x.pending_since IS NOT NULL
                OR x.copied IS DISTINCT FROM tables
                OR x.url_fn <> c.url_fn OR x.token_fn <> c.token_fn);
        RETURN n;
    EXCEPTION WHEN OTHERS THEN
        -- Turso unreachable, failing (HTTP 5xx, a broken stream) or busy: nothing for the
        -- operator to mend here, the worker retries soon (-3). Anything else is an error (-1).
        waiting := SQLSTATE LIKE '08%' OR SQLSTATE = '55P03';
        -- Behind since this step began at the latest: the lag grows until a step succeeds.
        UPDATE pgturso.publications x
           SET state = CASE WHEN waiting THEN 'waiting for Turso' ELSE 'error' END,
               last_error = SQLERRM, last_error_at = now(),
               pending_since = coalesce(x.pending_since, now())
         WHERE x.id = p_id;
        RAISE WARNING 'pgturso: replicating publication "%" failed, retrying: %', r.pubname, SQLERRM;
        RETURN CASE WHEN waiting THEN -3 ELSE -1 END;
    END;
END
$$;

-- Stops the worker of publication pub's replication; with drop, also removes its slot and
-- state (a later turso_start copies every table anew). Waits until the worker is gone.
CREATE FUNCTION @extschema@.turso_stop(publication text, "drop" boolean DEFAULT false) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pgturso.publications;
    pub oid := (SELECT oid FROM pg_publication WHERE pubname = publication);
    deadline timestamptz := clock_timestamp() + interval '30 seconds';
    signaled int[] := '{}';
    worker int;
BEGIN
    SELECT * INTO r FROM pgturso.publications x WHERE x.pubname = publication;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no replication of publication "%"', publication
            USING ERRCODE = 'undefined_object',
                  HINT = 'See the replications in turso_replication_status.';
    END IF;
    IF pub IS NOT NULL THEN
        PERFORM pgturso._authorize_publication(session_user, pub, 'turso_stop(text, boolean)');
    ELSIF NOT (SELECT a.rolsuper FROM pg_roles a WHERE a.rolname = session_user) THEN
        RAISE EXCEPTION 'permission denied to stop the replication of publication "%"', publication
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The publication no longer exists, so its ownership cannot be checked: a superuser can stop its replication.';
    END IF;
    -- The worker reads enabled in its own transactions: it may restart (5 s after being
    -- terminated) before this one commits, so it is terminated until it is gone and the slot free.
    UPDATE pgturso.publications x SET enabled = false, state = 'stopped', pid = NULL WHERE x.id = r.id;
    LOOP
        -- By name, and by the process id turso_start recorded (a worker names itself only once
        -- it has connected); each once (one that is exiting is no backend any more, and
        -- pg_terminate_backend would warn about it).
        FOR worker IN SELECT a.pid FROM pg_stat_activity a
                  WHERE a.backend_type = 'pgturso publication' AND NOT a.pid = ANY (signaled)
                    AND (a.pid = r.pid OR a.pid IN (SELECT x FROM pgturso._workers(r.id) x)) LOOP
            PERFORM pg_terminate_backend(worker);
            signaled := signaled || worker;
        END LOOP;
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                               WHERE a.backend_type = 'pgturso publication'
                                 AND (a.pid = r.pid OR a.pid IN (SELECT w FROM pgturso._workers(r.id) w)))
              AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = r.slot AND s.active);
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'the worker of publication "%" did not stop within 30 seconds', publication
                USING ERRCODE = 'object_in_use';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    IF "drop" THEN
        IF EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = r.slot) THEN
            PERFORM pg_drop_replication_slot(r.slot);
        END IF;
        DELETE FROM pgturso.publications x WHERE x.id = r.id;
    END IF;
    RETURN true;
END
$$;

-- Every replication (tables and views by the SQL API, publications by their workers): its slot,
-- schedule, position, lag, retained WAL and last run (for a publication: last applied
-- transaction, state, transactions replicated in last_rows, and in the last columns the lag in
-- seconds, transactions and rows replicated and when the last error happened).
CREATE VIEW @extschema@.turso_replication_status AS
SELECT coalesce(pgturso._qualified(r.relid::regclass), r.name) AS name,
       r.kind,
       r.slot,
       r.schedule,
       r.active,
       s.confirmed_flush_lsn AS confirmed_lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint AS lag_bytes,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint AS retained_wal_bytes,
       r.last_run,
       r.last_status,
       r.last_error,
       r.last_rows,
       NULL::double precision AS lag_seconds,
       NULL::bigint AS transactions,
       NULL::bigint AS rows,
       NULL::timestamptz AS last_error_at,
       NULL::text AS copying,
       NULL::bigint AS copy_rows,
       NULL::bigint AS copy_rows_estimate,
       NULL::int AS copy_table_no,
       NULL::int AS copy_tables
FROM pgturso.replications r
LEFT JOIN pg_replication_slots s ON s.slot_name = r.slot
UNION ALL
SELECT p.pubname::text,
       'publication',
       p.slot,
       NULL,
       p.enabled AND EXISTS (SELECT 1 FROM pgturso._workers(p.id)),
       s.confirmed_flush_lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint,
       p.last_applied_at,
       CASE WHEN cp.relid IS NOT NULL THEN 'copying' ELSE p.state END,
       p.last_error,
       p.txns,
       -- Behind with no pending_since: WAL since the worker last looked (at most 50 ms ago while
       -- it runs; unknown when it does not).
       CASE WHEN s.confirmed_flush_lsn >= pg_current_wal_flush_lsn() THEN 0
            WHEN p.pending_since IS NOT NULL
            THEN extract(epoch FROM clock_timestamp() - p.pending_since)::double precision
            WHEN EXISTS (SELECT 1 FROM pgturso._workers(p.id)) THEN 0 END,
       p.txns,
       p.rows,
       p.last_error_at,
       -- A table its worker copies now (one joining the publication): the rows sent so far,
       -- PostgreSQL's estimate, the table's number of those being copied (see
       -- src/decoding/progress.rs; the figures are visible to roles that may see the worker's
       -- statistics, like pg_stat_progress_copy's).
       pgturso._qualified(cp.relid::regclass),
       cp.param3,
       nullif(cp.param11, -1),
       cp.param13::int,
       cp.param14::int
FROM pgturso.publications p
LEFT JOIN pg_replication_slots s ON s.slot_name = p.slot
LEFT JOIN LATERAL (SELECT g.relid, g.param3, g.param11, g.param13, g.param14
                     FROM pg_stat_get_progress_info('COPY') g
                    WHERE g.param5 = 2 AND g.param12 = (SELECT pub.oid FROM pg_publication pub WHERE pub.pubname = p.pubname)
                      AND g.datid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                    LIMIT 1) cp ON true
UNION ALL
-- A first turso_start still copying: its replication is written when it commits, its copies are
-- in PostgreSQL's progress reports already.
SELECT pub.pubname::text,
       'publication',
       format('pgturso_pub_%s_%s', g.datid, pub.oid),
       NULL,
       false,
       NULL, NULL, NULL, NULL,
       'copying',
       NULL, NULL, NULL, NULL, NULL, NULL,
       pgturso._qualified(g.relid::regclass),
       g.param3,
       nullif(g.param11, -1),
       g.param13::int,
       g.param14::int
FROM pg_stat_get_progress_info('COPY') g
JOIN pg_publication pub ON pub.oid = g.param12::oid
WHERE g.param5 = 2 AND g.datid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
  AND NOT EXISTS (SELECT 1 FROM pgturso.publications p WHERE p.pubname = pub.pubname);

-- Nothing here is callable by PUBLIC but what checks its caller itself: the user-facing functions
-- are granted by an administrator (see the README's Least privilege), the scheduled jobs call
-- pgturso._run / _run_every, and turso_unschedule calls pgturso._unschedule. (Functions in a view
-- run with the querying role's rights, hence _qualified.)
REVOKE ALL ON ALL ROUTINES IN SCHEMA pgturso FROM PUBLIC;
GRANT USAGE ON SCHEMA pgturso TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgturso._run(oid), pgturso._unschedule(text, regclass, boolean) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgturso._qualified(regclass), pgturso._workers(int) TO PUBLIC;   -- used by turso_replication_status
GRANT EXECUTE ON PROCEDURE pgturso._run_every(oid, int) TO PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.turso_replicate_table(regclass), @extschema@.turso_replicate_mv(regclass),
    @extschema@.turso_schedule_table_replication(regclass, text),
    @extschema@.turso_schedule_mv_replication(regclass, text),
    @extschema@.turso_unschedule(text, boolean),
    @extschema@.turso_start(text, regprocedure, regprocedure), @extschema@.turso_stop(text, boolean) FROM PUBLIC;

-- Announces each dropped table in the WAL (a transactional logical message, prefix 'pgturso'),
-- so that decoding with option drop_tables drops its Turso table too. Never makes a DROP fail:
-- any problem here is a WARNING.
CREATE FUNCTION pgturso._announce_drops() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    o record;
    db oid := (SELECT oid FROM pg_database WHERE datname = current_database());
BEGIN
    IF current_setting('wal_level') <> 'logical' THEN
        RETURN;
    END IF;
    FOR o IN SELECT d.objid FROM pg_event_trigger_dropped_objects() d
              WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0
                AND d.object_type = 'table' AND NOT d.is_temporary LOOP
        BEGIN
            PERFORM pg_logical_emit_message(true, 'pgturso', json_build_object('drop', db || '.' || o.objid)::text);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pgturso could not announce the drop of table %: %', o.objid, SQLERRM;
        END;
    END LOOP;
END
$$;
CREATE EVENT TRIGGER pgturso_announce_drops ON sql_drop EXECUTE FUNCTION pgturso._announce_drops();
