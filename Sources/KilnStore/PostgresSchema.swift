import Foundation

/// The PostgreSQL schema, as named, append-only migrations recorded in `kiln_migrations`.
///
/// The names are the SQLite schema's (`Schema.migrator`): both databases go through the same
/// list of steps. PostgreSQL starts at v18, one step that makes what SQLite's v1 to v18 made
/// (PostgreSQL can change constraints in place, so none of SQLite's table rebuilds is needed);
/// every later step is written once for each database under the same name. Types follow
/// SQLite's: BIGINT for integers and booleans (0 and 1), DOUBLE PRECISION for timestamps
/// (seconds since 1970), TEXT for JSON, BYTEA for digests. Repository names are unique as
/// written (SQLite compares them without case).
enum PostgresSchema {
    static let migrations: [(name: String, statements: [String])] = [
        (
            "v1-v18: repositories, builds, jobs, statuses, approvals, events, tokens, and everything up to remote builders",
            [
                """
                CREATE TABLE repositories (
                    id BIGSERIAL PRIMARY KEY,
                    forge TEXT NOT NULL,
                    name TEXT NOT NULL,
                    UNIQUE (forge, name)
                )
                """,
                """
                CREATE TABLE builds (
                    id BIGSERIAL PRIMARY KEY,
                    repository_id BIGINT NOT NULL REFERENCES repositories(id),
                    forge TEXT NOT NULL,
                    repository TEXT NOT NULL,
                    sha TEXT NOT NULL,
                    ref TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state IN
                        ('queued','planning','running','awaiting_approval','succeeded','failed','errored','cancelled','skipped')),
                    summary TEXT NOT NULL,
                    diagnostics TEXT NOT NULL DEFAULT '[]',
                    created_at DOUBLE PRECISION NOT NULL,
                    started_at DOUBLE PRECISION,
                    finished_at DOUBLE PRECISION,
                    before_sha TEXT,
                    pr_number BIGINT,
                    pr_head_branch TEXT,
                    pr_base_branch TEXT,
                    pr_is_fork BIGINT NOT NULL DEFAULT 0,
                    pr_head_repository TEXT,
                    trusted BIGINT NOT NULL DEFAULT 1,
                    built_sha TEXT,
                    tree_key TEXT,
                    reused_from BIGINT REFERENCES builds(id),
                    rerun_of BIGINT REFERENCES builds(id),
                    cancel_reason TEXT,
                    planning_since DOUBLE PRECISION,
                    title TEXT,
                    rerun_failed_only BIGINT NOT NULL DEFAULT 0,
                    ad_hoc TEXT,
                    service TEXT,
                    reconciled BIGINT NOT NULL DEFAULT 0
                )
                """,
                "CREATE INDEX builds_by_state ON builds(state, id)",
                "CREATE INDEX builds_by_ref ON builds(repository_id, ref, id)",
                "CREATE INDEX builds_by_pull_request ON builds(repository_id, pr_number, id)",
                "CREATE INDEX builds_by_tree ON builds(repository_id, tree_key)",
                "CREATE INDEX builds_by_sha ON builds(repository_id, sha)",
                "CREATE INDEX builds_by_repository_ref ON builds (forge, repository, ref, id)",
                "CREATE INDEX builds_service ON builds (service, id)",
                """
                CREATE TABLE deliveries (
                    id BIGSERIAL PRIMARY KEY,
                    forge TEXT NOT NULL,
                    delivery_id TEXT NOT NULL,
                    build_id BIGINT NOT NULL REFERENCES builds(id),
                    received_at DOUBLE PRECISION NOT NULL,
                    UNIQUE (forge, delivery_id)
                )
                """,
                """
                CREATE TABLE jobs (
                    id BIGSERIAL PRIMARY KEY,
                    build_id BIGINT NOT NULL REFERENCES builds(id),
                    name TEXT NOT NULL,
                    installables TEXT NOT NULL,
                    needs TEXT NOT NULL,
                    timeout_seconds BIGINT NOT NULL CHECK (timeout_seconds > 0),
                    max_silent_seconds BIGINT NOT NULL CHECK (max_silent_seconds > 0),
                    state TEXT NOT NULL CHECK (state IN
                        ('queued','running','succeeded','failed','timed_out','cancelled','errored','skipped')),
                    summary TEXT NOT NULL,
                    exit_code BIGINT,
                    outputs TEXT NOT NULL DEFAULT '[]',
                    attempt BIGINT NOT NULL DEFAULT 0,
                    queued_at DOUBLE PRECISION NOT NULL,
                    started_at DOUBLE PRECISION,
                    finished_at DOUBLE PRECISION,
                    target TEXT,
                    system TEXT,
                    allow_failure BIGINT NOT NULL DEFAULT 0,
                    cache_push BIGINT NOT NULL DEFAULT 0,
                    min_memory BIGINT,
                    derivations TEXT NOT NULL DEFAULT '[]',
                    cpu_seconds DOUBLE PRECISION,
                    peak_memory_kb BIGINT,
                    cache_summary TEXT,
                    built TEXT NOT NULL DEFAULT '[]',
                    waited_for TEXT NOT NULL DEFAULT '[]',
                    image TEXT,
                    image_push TEXT,
                    substituted BIGINT NOT NULL DEFAULT 0,
                    cache_pushed_bytes BIGINT,
                    constraints TEXT,
                    tags TEXT,
                    peak_storage_kb BIGINT,
                    machines TEXT NOT NULL DEFAULT '[]',
                    UNIQUE (build_id, name)
                )
                """,
                "CREATE INDEX jobs_by_state ON jobs(state, id)",
                "CREATE INDEX jobs_finished_at ON jobs (finished_at)",
                "CREATE INDEX jobs_queued_at ON jobs (queued_at)",
                """
                CREATE TABLE approvals (
                    id BIGSERIAL PRIMARY KEY,
                    repository_id BIGINT NOT NULL REFERENCES repositories(id),
                    pr_number BIGINT NOT NULL,
                    sha TEXT NOT NULL,
                    approved_by TEXT NOT NULL,
                    approved_at DOUBLE PRECISION NOT NULL,
                    UNIQUE (repository_id, pr_number, sha)
                )
                """,
                """
                CREATE TABLE status_outbox (
                    id BIGSERIAL PRIMARY KEY,
                    build_id BIGINT NOT NULL REFERENCES builds(id),
                    forge TEXT NOT NULL,
                    repository TEXT NOT NULL,
                    sha TEXT NOT NULL,
                    context TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state IN
                        ('pending','running','succeeded','failed','cancelled','errored','skipped')),
                    description TEXT NOT NULL,
                    delivery TEXT NOT NULL CHECK (delivery IN
                        ('pending','delivered','recorded','superseded','dropped')),
                    attempts BIGINT NOT NULL DEFAULT 0,
                    next_attempt_at DOUBLE PRECISION NOT NULL,
                    last_error TEXT,
                    created_at DOUBLE PRECISION NOT NULL,
                    delivered_at DOUBLE PRECISION,
                    branch TEXT,
                    details TEXT
                )
                """,
                "CREATE INDEX status_outbox_due ON status_outbox(delivery, next_attempt_at)",
                "CREATE INDEX status_outbox_by_build ON status_outbox(build_id, id)",
                // Ids are never used twice (a sequence), as SQLite's AUTOINCREMENT promises.
                """
                CREATE TABLE events (
                    id BIGSERIAL PRIMARY KEY,
                    type TEXT NOT NULL,
                    build_id BIGINT,
                    job_id BIGINT,
                    repository TEXT,
                    data TEXT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL
                )
                """,
                """
                CREATE TABLE api_tokens (
                    id BIGSERIAL PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    scope TEXT NOT NULL CHECK (scope IN ('read', 'control', 'admin')),
                    digest BYTEA NOT NULL CHECK (length(digest) = 32),
                    created_at DOUBLE PRECISION NOT NULL,
                    revoked_at DOUBLE PRECISION
                )
                """,
            ]
        ),
        leases,
        sparseIndexes,
        oneIndexByRef,
    ]

    /// Who holds a planning build, a running job or a status being posted, and until when:
    /// the same statements on both databases.
    static let leases: (name: String, statements: [String]) = (
        "v19: leases",
        [
            "ALTER TABLE builds ADD COLUMN owner TEXT",
            "ALTER TABLE builds ADD COLUMN lease_until DOUBLE PRECISION",
            "ALTER TABLE jobs ADD COLUMN owner TEXT",
            "ALTER TABLE jobs ADD COLUMN lease_until DOUBLE PRECISION",
            "ALTER TABLE status_outbox ADD COLUMN owner TEXT",
            "ALTER TABLE status_outbox ADD COLUMN lease_until DOUBLE PRECISION",
            "CREATE INDEX status_outbox_by_context ON status_outbox(sha, context)",
        ]
    )

    /// Indexes over only the builds that have the column: most builds have no pull request,
    /// tree key (until planned) or service, and every index an insert touches is one more page
    /// written at each intake commit. A query that compares the column uses them all the same.
    static let sparseIndexes: (name: String, statements: [String]) = (
        "v20: indexes over only the builds that have a pull request, tree key or service",
        [
            "DROP INDEX builds_by_pull_request",
            "CREATE INDEX builds_by_pull_request ON builds(repository_id, pr_number, id) WHERE pr_number IS NOT NULL",
            "DROP INDEX builds_by_tree",
            "CREATE INDEX builds_by_tree ON builds(repository_id, tree_key) WHERE tree_key IS NOT NULL",
            "DROP INDEX builds_service",
            "CREATE INDEX builds_service ON builds(service, id) WHERE service IS NOT NULL",
        ]
    )

    /// Builds are listed by repository through `builds_by_ref` (the repository's id, found by
    /// its forge and name), so the index by forge and repository name, one more page at each
    /// intake commit, goes.
    static let oneIndexByRef: (name: String, statements: [String]) = (
        "v21: builds listed by repository id", ["DROP INDEX builds_by_repository_ref"]
    )
}
