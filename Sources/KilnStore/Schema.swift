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
        return migrator
    }
}
