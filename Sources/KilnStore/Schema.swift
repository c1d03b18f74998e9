import GRDB

/// The database schema as named, append-only migrations. Never edit a shipped migration:
/// add a new one, so that every existing database upgrades the same way.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: repositories, deliveries, builds, jobs, status outbox") { db in
            try db.execute(
                sql: """
                    CREATE TABLE repositories (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        forge TEXT NOT NULL,
                        name TEXT NOT NULL COLLATE NOCASE,
                        UNIQUE (forge, name)
                    );
                    CREATE TABLE builds (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        repository_id INTEGER NOT NULL REFERENCES repositories(id),
                        forge TEXT NOT NULL,
                        repository TEXT NOT NULL,
                        sha TEXT NOT NULL,
                        ref TEXT NOT NULL,
                        state TEXT NOT NULL CHECK (state IN
                            ('queued','planning','running','succeeded','failed','errored','cancelled','skipped')),
                        summary TEXT NOT NULL,
                        diagnostics TEXT NOT NULL DEFAULT '[]',
                        created_at REAL NOT NULL,
                        started_at REAL,
                        finished_at REAL
                    );
                    CREATE INDEX builds_by_state ON builds(state, id);
                    CREATE TABLE deliveries (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        forge TEXT NOT NULL,
                        delivery_id TEXT NOT NULL,
                        build_id INTEGER NOT NULL REFERENCES builds(id),
                        received_at REAL NOT NULL,
                        UNIQUE (forge, delivery_id)
                    );
                    CREATE TABLE jobs (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        build_id INTEGER NOT NULL REFERENCES builds(id),
                        name TEXT NOT NULL,
                        installables TEXT NOT NULL,
                        needs TEXT NOT NULL,
                        timeout_seconds INTEGER NOT NULL CHECK (timeout_seconds > 0),
                        max_silent_seconds INTEGER NOT NULL CHECK (max_silent_seconds > 0),
                        state TEXT NOT NULL CHECK (state IN
                            ('queued','running','succeeded','failed','timed_out','cancelled','errored','skipped')),
                        summary TEXT NOT NULL,
                        exit_code INTEGER,
                        outputs TEXT NOT NULL DEFAULT '[]',
                        attempt INTEGER NOT NULL DEFAULT 0,
                        queued_at REAL NOT NULL,
                        started_at REAL,
                        finished_at REAL,
                        UNIQUE (build_id, name)
                    );
                    CREATE INDEX jobs_by_state ON jobs(state, id);
                    CREATE TABLE status_outbox (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        build_id INTEGER NOT NULL REFERENCES builds(id),
                        forge TEXT NOT NULL,
                        repository TEXT NOT NULL,
                        sha TEXT NOT NULL,
                        context TEXT NOT NULL,
                        state TEXT NOT NULL CHECK (state IN ('pending','succeeded','failed','cancelled','errored')),
                        description TEXT NOT NULL,
                        delivery TEXT NOT NULL CHECK (delivery IN
                            ('pending','delivered','recorded','superseded','dropped')),
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at REAL NOT NULL,
                        last_error TEXT,
                        created_at REAL NOT NULL,
                        delivered_at REAL
                    );
                    CREATE INDEX status_outbox_due ON status_outbox(delivery, next_attempt_at);
                    CREATE INDEX status_outbox_by_build ON status_outbox(build_id, id);
                    """)
        }
        migrator.registerMigration("v2: job targets, systems, accounting, cache; builds' previous commit") { db in
            try db.execute(
                sql: """
                    ALTER TABLE builds ADD COLUMN before_sha TEXT;
                    ALTER TABLE jobs ADD COLUMN target TEXT;
                    ALTER TABLE jobs ADD COLUMN system TEXT;
                    ALTER TABLE jobs ADD COLUMN allow_failure INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE jobs ADD COLUMN cache_push INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE jobs ADD COLUMN min_memory INTEGER;
                    ALTER TABLE jobs ADD COLUMN derivations TEXT NOT NULL DEFAULT '[]';
                    ALTER TABLE jobs ADD COLUMN cpu_seconds REAL;
                    ALTER TABLE jobs ADD COLUMN peak_memory_kb INTEGER;
                    ALTER TABLE jobs ADD COLUMN cache_summary TEXT;

                    -- SQLite cannot change a CHECK constraint: rebuild the outbox to allow 'skipped'.
                    CREATE TABLE status_outbox_v2 (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        build_id INTEGER NOT NULL REFERENCES builds(id),
                        forge TEXT NOT NULL,
                        repository TEXT NOT NULL,
                        sha TEXT NOT NULL,
                        context TEXT NOT NULL,
                        state TEXT NOT NULL CHECK (state IN
                            ('pending','succeeded','failed','cancelled','errored','skipped')),
                        description TEXT NOT NULL,
                        delivery TEXT NOT NULL CHECK (delivery IN
                            ('pending','delivered','recorded','superseded','dropped')),
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at REAL NOT NULL,
                        last_error TEXT,
                        created_at REAL NOT NULL,
                        delivered_at REAL
                    );
                    INSERT INTO status_outbox_v2 SELECT * FROM status_outbox;
                    DROP TABLE status_outbox;
                    ALTER TABLE status_outbox_v2 RENAME TO status_outbox;
                    CREATE INDEX status_outbox_due ON status_outbox(delivery, next_attempt_at);
                    CREATE INDEX status_outbox_by_build ON status_outbox(build_id, id);
                    """)
        }
        migrator.registerMigration("v3: pull requests, approvals, trust, tree keys; statuses' branch and details") { db in
            try db.execute(
                sql: """
                    -- SQLite cannot change a CHECK constraint: rebuild builds to allow 'awaiting_approval'.
                    CREATE TABLE builds_v3 (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        repository_id INTEGER NOT NULL REFERENCES repositories(id),
                        forge TEXT NOT NULL,
                        repository TEXT NOT NULL,
                        sha TEXT NOT NULL,
                        ref TEXT NOT NULL,
                        state TEXT NOT NULL CHECK (state IN
                            ('queued','planning','running','awaiting_approval','succeeded','failed','errored','cancelled','skipped')),
                        summary TEXT NOT NULL,
                        diagnostics TEXT NOT NULL DEFAULT '[]',
                        created_at REAL NOT NULL,
                        started_at REAL,
                        finished_at REAL,
                        before_sha TEXT,
                        pr_number INTEGER,
                        pr_head_branch TEXT,
                        pr_base_branch TEXT,
                        pr_is_fork INTEGER NOT NULL DEFAULT 0,
                        pr_head_repository TEXT,
                        trusted INTEGER NOT NULL DEFAULT 1,
                        built_sha TEXT,
                        tree_key TEXT,
                        reused_from INTEGER REFERENCES builds(id)
                    );
                    INSERT INTO builds_v3 (id, repository_id, forge, repository, sha, ref, state, summary, diagnostics,
                                           created_at, started_at, finished_at, before_sha)
                        SELECT id, repository_id, forge, repository, sha, ref, state, summary, diagnostics,
                               created_at, started_at, finished_at, before_sha FROM builds;
                    DROP TABLE builds;
                    ALTER TABLE builds_v3 RENAME TO builds;
                    CREATE INDEX builds_by_state ON builds(state, id);
                    CREATE INDEX builds_by_ref ON builds(repository_id, ref, id);
                    CREATE INDEX builds_by_pull_request ON builds(repository_id, pr_number, id);
                    CREATE INDEX builds_by_tree ON builds(repository_id, tree_key);
                    CREATE INDEX builds_by_sha ON builds(repository_id, sha);
                    CREATE TABLE approvals (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        repository_id INTEGER NOT NULL REFERENCES repositories(id),
                        pr_number INTEGER NOT NULL,
                        sha TEXT NOT NULL,
                        approved_by TEXT NOT NULL,
                        approved_at REAL NOT NULL,
                        UNIQUE (repository_id, pr_number, sha)
                    );
                    ALTER TABLE status_outbox ADD COLUMN branch TEXT;
                    ALTER TABLE status_outbox ADD COLUMN details TEXT;
                    """)
        }
        migrator.registerMigration("v4: re-runs") { db in
            // A re-run builds again: it must not reuse the result of an earlier build of the same tree.
            try db.execute(sql: "ALTER TABLE builds ADD COLUMN rerun_of INTEGER REFERENCES builds(id)")
        }
        migrator.registerMigration("v5: running statuses") { db in
            try db.execute(
                sql: """
                    -- SQLite cannot change a CHECK constraint: rebuild the outbox to allow 'running'.
                    CREATE TABLE status_outbox_v5 (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        build_id INTEGER NOT NULL REFERENCES builds(id),
                        forge TEXT NOT NULL,
                        repository TEXT NOT NULL,
                        sha TEXT NOT NULL,
                        context TEXT NOT NULL,
                        state TEXT NOT NULL CHECK (state IN
                            ('pending','running','succeeded','failed','cancelled','errored','skipped')),
                        description TEXT NOT NULL,
                        delivery TEXT NOT NULL CHECK (delivery IN
                            ('pending','delivered','recorded','superseded','dropped')),
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at REAL NOT NULL,
                        last_error TEXT,
                        created_at REAL NOT NULL,
                        delivered_at REAL,
                        branch TEXT,
                        details TEXT
                    );
                    INSERT INTO status_outbox_v5 (id, build_id, forge, repository, sha, context, state, description, delivery,
                                                  attempts, next_attempt_at, last_error, created_at, delivered_at, branch, details)
                        SELECT id, build_id, forge, repository, sha, context, state, description, delivery,
                               attempts, next_attempt_at, last_error, created_at, delivered_at, branch, details FROM status_outbox;
                    DROP TABLE status_outbox;
                    ALTER TABLE status_outbox_v5 RENAME TO status_outbox;
                    CREATE INDEX status_outbox_due ON status_outbox(delivery, next_attempt_at);
                    CREATE INDEX status_outbox_by_build ON status_outbox(build_id, id);
                    """)
        }
        migrator.registerMigration("v6: cancellations survive a restart; planning start for the watchdog") { db in
            // Set when a build is cancelled while jobs still run; crash recovery ends those jobs
            // as cancelled instead of queueing them again.
            try db.execute(sql: "ALTER TABLE builds ADD COLUMN cancel_reason TEXT")
            // When planning began, so that the watchdog can end a build whose planning hangs.
            try db.execute(sql: "ALTER TABLE builds ADD COLUMN planning_since REAL")
        }
        migrator.registerMigration("v7: which derivations a job built and which it waited for") { db in
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN built TEXT NOT NULL DEFAULT '[]'")
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN waited_for TEXT NOT NULL DEFAULT '[]'")
        }
        migrator.registerMigration("v8: the event log") { db in
            // AUTOINCREMENT: an id is never used twice, even after pruning, so a client resuming
            // from an old id can never be handed a different event under it.
            try db.execute(
                sql: """
                    CREATE TABLE events (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        type TEXT NOT NULL,
                        build_id INTEGER,
                        job_id INTEGER,
                        repository TEXT,
                        data TEXT NOT NULL,
                        created_at REAL NOT NULL
                    );
                    """)
            // No secondary index: every delivery writes an event, and streams read forward from
            // their position by id, the primary key.
        }
        migrator.registerMigration("v9: API tokens, as digests") { db in
            try db.execute(
                sql: """
                    CREATE TABLE api_tokens (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        name TEXT NOT NULL UNIQUE,
                        scope TEXT NOT NULL CHECK (scope IN ('read', 'control', 'admin')),
                        digest BLOB NOT NULL CHECK (length(digest) = 32),
                        created_at REAL NOT NULL,
                        revoked_at REAL
                    );
                    """)
        }
        migrator.registerMigration("v10: a build's commit title; listing builds by repository and ref") { db in
            try db.execute(sql: "ALTER TABLE builds ADD COLUMN title TEXT")
            try db.execute(sql: "CREATE INDEX builds_by_repository_ref ON builds (forge, repository, ref, id)")
        }
        migrator.registerMigration("v11: re-runs of only what failed") { db in
            try db.execute(sql: "ALTER TABLE builds ADD COLUMN rerun_failed_only INTEGER NOT NULL DEFAULT 0")
        }
        migrator.registerMigration("v12: images") { db in
            try db.execute(
                sql: """
                    ALTER TABLE jobs ADD COLUMN image TEXT;
                    ALTER TABLE jobs ADD COLUMN image_push TEXT;
                    """)
        }
        migrator.registerMigration("v13: cache activity") { db in
            try db.execute(
                sql: """
                    ALTER TABLE jobs ADD COLUMN substituted INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE jobs ADD COLUMN cache_pushed_bytes INTEGER;
                    CREATE INDEX jobs_finished_at ON jobs (finished_at);
                    """)
        }
        migrator.registerMigration("v14: build constraints") { db in
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN constraints TEXT")
        }
        migrator.registerMigration("v15: build records") { db in
            try db.execute(
                sql: """
                    ALTER TABLE jobs ADD COLUMN tags TEXT;
                    ALTER TABLE jobs ADD COLUMN peak_storage_kb INTEGER;
                    CREATE INDEX jobs_queued_at ON jobs (queued_at);
                    """)
        }
        migrator.registerMigration("v16: ad-hoc builds") { db in
            try db.execute(
                sql: """
                    ALTER TABLE builds ADD COLUMN ad_hoc TEXT;
                    ALTER TABLE builds ADD COLUMN service TEXT;
                    CREATE INDEX builds_service ON builds (service, id);
                    """)
        }
        migrator.registerMigration("v17: reconciled builds") { db in
            try db.execute(sql: "ALTER TABLE builds ADD COLUMN reconciled INTEGER NOT NULL DEFAULT 0")
        }
        migrator.registerMigration("v18: remote builders") { db in
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN machines TEXT NOT NULL DEFAULT '[]'")
        }
        for step in [PostgresSchema.leases, PostgresSchema.sparseIndexes, PostgresSchema.oneIndexByRef] {
            migrator.registerMigration(step.name) { db in
                for statement in step.statements { try db.execute(sql: statement) }
            }
        }
        migrator.registerMigration("v22: deliveries keyed by forge and delivery id alone") { db in
            // One B-tree instead of a table and its unique index: one page fewer at each intake
            // commit. Nothing refers to a delivery's row id.
            try db.execute(
                sql: """
                    CREATE TABLE deliveries_by_key (
                        forge TEXT NOT NULL,
                        delivery_id TEXT NOT NULL,
                        build_id INTEGER NOT NULL REFERENCES builds(id),
                        received_at REAL NOT NULL,
                        PRIMARY KEY (forge, delivery_id)
                    ) WITHOUT ROWID;
                    INSERT INTO deliveries_by_key (forge, delivery_id, build_id, received_at)
                        SELECT forge, delivery_id, build_id, received_at FROM deliveries;
                    DROP TABLE deliveries;
                    ALTER TABLE deliveries_by_key RENAME TO deliveries;
                    """)
        }
        return migrator
    }
}
