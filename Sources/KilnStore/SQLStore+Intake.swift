import Foundation
import KilnCore
import KilnPipeline

/// Intake's writes: a batch of deliveries (`GroupCommit`'s) in one statement per table, not
/// four statements for each delivery. On PostgreSQL every statement is a round trip.
extension SQLStore {
    /// Most rows in one statement. Longer batches are written in chunks of powers of two up to
    /// this, so that they take a handful of distinct statements, each prepared once per connection.
    static let rowsPerStatement = 64

    /// Records each delivery of `batch` with its queued build and the build's event, in the open
    /// transaction `db`; idempotent on the delivery id, also within the batch (a delivery named
    /// twice gets the first one's build, not new). The answers are in `batch`'s order.
    static func insert(_ batch: [(delivery: NewDelivery, now: Date)], _ db: any SQLConnection) throws
        -> [(buildID: BuildID, isNew: Bool)]
    {
        var builds = try recordedBuilds(batch.map(\.delivery), db)
        // The first of each delivery id not yet recorded makes a build.
        var claimed = Set<DeliveryKey>()
        let makers = batch.indices.filter { index in
            let key = DeliveryKey(batch[index].delivery)
            return builds[key] == nil && claimed.insert(key).inserted
        }
        let ids = try reserveBuildIDs(makers.count, db)
        var isNew = Array(repeating: false, count: batch.count)
        for (index, id) in zip(makers, ids) {
            builds[DeliveryKey(batch[index].delivery)] = id
            isNew[index] = true
        }
        let new = zip(makers, ids).map { (delivery: batch[$0].delivery, now: batch[$0].now, build: $1) }
        try insertRows(
            "builds (id, repository_id, forge, repository, sha, ref, before_sha, state, summary, created_at, pr_number, "
                + "pr_head_branch, pr_base_branch, pr_is_fork, pr_head_repository, ad_hoc, service, reconciled)", new, db
        ) { row in
            let delivery = row.delivery
            return [
                row.build, delivery.repositoryID, delivery.forge, delivery.repository, delivery.sha, delivery.ref.fullName,
                delivery.before, BuildState.queued.rawValue, BuildStateMachine.acceptedSummary, row.now.timeIntervalSince1970,
                delivery.pullRequest?.number, delivery.pullRequest?.headBranch, delivery.pullRequest?.baseBranch,
                delivery.pullRequest?.isFork ?? false, delivery.pullRequest?.headRepository, delivery.adHoc.map(Rows.encode),
                delivery.service, delivery.reconciled,
            ]
        }
        try insertRows("deliveries (forge, delivery_id, build_id, received_at)", new, db) { row in
            [row.delivery.forge, row.delivery.deliveryID, row.build, row.now.timeIntervalSince1970]
        }
        // Each build's event in the same transaction: the build and its announcement are one commit.
        try insertRows("events (type, build_id, job_id, repository, data, created_at)", new, db) { row in
            let event = BuildEvents.queued(row.build, row.delivery)
            return [event.type, row.build, nil, event.repository, event.data, row.now.timeIntervalSince1970]
        }
        if !new.isEmpty { db.announceWork() }
        return batch.indices.map { (builds[DeliveryKey(batch[$0].delivery)]!, isNew[$0]) }
    }

    /// A delivery's identity: its forge and the forge's id for it.
    private struct DeliveryKey: Hashable {
        var forge: String
        var id: String

        init(_ delivery: NewDelivery) {
            forge = delivery.forge
            id = delivery.deliveryID
        }

        init(forge: String, id: String) {
            self.forge = forge
            self.id = id
        }
    }

    /// The builds already recorded for the ids of `deliveries`.
    private static func recordedBuilds(_ deliveries: [NewDelivery], _ db: any SQLConnection) throws -> [DeliveryKey: BuildID] {
        var builds: [DeliveryKey: BuildID] = [:]
        for (forge, ofForge) in Dictionary(grouping: deliveries, by: \.forge) {
            let ids = Array(Set(ofForge.map(\.deliveryID)))
            var start = 0
            for count in chunkSizes(ids.count) {
                let chunk = ids[start..<start + count]
                start += count
                let rows = try db.rows(
                    "SELECT delivery_id, build_id FROM deliveries WHERE forge = ? AND delivery_id IN (\(placeholders(count)))",
                    [forge] + chunk.map { $0 })
                for row in rows { builds[DeliveryKey(forge: forge, id: row["delivery_id"])] = row["build_id"] }
            }
        }
        return builds
    }

    /// `count` new build ids, ascending.
    private static func reserveBuildIDs(_ count: Int, _ db: any SQLConnection) throws -> [BuildID] {
        guard count > 0 else { return [] }
        switch db.dialect {
        case .sqlite:
            // Past every id ever used (AUTOINCREMENT's rule); writing them moves sqlite_sequence on.
            let last = try db.value(BuildID.self, """
                SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'builds'), 0),
                           COALESCE((SELECT MAX(id) FROM builds), 0))
                """) ?? 0
            return (1...count).map { last + BuildID($0) }
        case .postgres:
            return try db.rows("SELECT nextval('builds_id_seq') AS id FROM generate_series(1, ?)", [count])
                .map { row -> BuildID in row["id"] }.sorted()
        }
    }

    /// Inserts a row into `table` (its name and columns) for each of `rows`, with `values`.
    private static func insertRows<Row>(
        _ table: String, _ rows: [Row], _ db: any SQLConnection, _ values: (Row) -> [(any SQLBindable)?]
    ) throws {
        var start = 0
        for count in chunkSizes(rows.count) {
            let arguments = rows[start..<start + count].flatMap(values)
            start += count
            let row = "(" + placeholders(arguments.count / count) + ")"
            try db.execute("INSERT INTO \(table) VALUES " + Array(repeating: row, count: count).joined(separator: ", "), arguments)
        }
    }

    /// `count` as a sum of powers of two, largest first, none above `rowsPerStatement`.
    static func chunkSizes(_ count: Int) -> [Int] {
        var sizes: [Int] = []
        var left = count
        while left > 0 {
            var size = rowsPerStatement
            while size > left { size /= 2 }
            sizes.append(size)
            left -= size
        }
        return sizes
    }

    private static func placeholders(_ count: Int) -> String { Array(repeating: "?", count: count).joined(separator: ", ") }
}
