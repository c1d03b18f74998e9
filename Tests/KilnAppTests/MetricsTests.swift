import Foundation
import KilnTesting
import Testing

/// `/metrics` after a real build: Prometheus text whose counters moved, with labels from bounded
/// sets only.
@Suite struct MetricsTests {
    /// Every metric line: name, labels, value.
    struct Sample: Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// Parses Prometheus' text format strictly enough to notice a malformed line.
    static func parse(_ text: String) throws -> [Sample] {
        var samples: [Sample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let (head, value) = try #require(line.lastIndex(of: " ").map { (line[..<$0], line[line.index(after: $0)...]) })
            var name = String(head)
            var labels: [String: String] = [:]
            if let open = head.firstIndex(of: "{") {
                #expect(head.hasSuffix("}"), "\(line)")
                name = String(head[..<open])
                let body = head[head.index(after: open)..<head.index(before: head.endIndex)]
                for pair in body.split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    let quoted = try #require(parts.count == 2 ? parts[1] : nil)
                    #expect(quoted.hasPrefix("\"") && quoted.hasSuffix("\""), "\(line)")
                    labels[String(parts[0])] = String(quoted.dropFirst().dropLast())
                }
            }
            #expect(name.range(of: "^[a-zA-Z_:][a-zA-Z0-9_:]*$", options: .regularExpression) != nil, "\(line)")
            samples.append(Sample(name: name, labels: labels, value: try #require(Double(value), "\(line)")))
        }
        return samples
    }

    /// The label values each label may take.
    static let bounded: [String: Set<String>] = [
        "forge": ["github", "gitlab", "bitbucket-cloud", "bitbucket-server", "gitea", "unknown"],
        "event": ["push", "tag_push", "pull_request", "pull_request_closed", "rerun", "approval", "other", "unknown"],
        "outcome": [
            "accepted", "duplicate", "ignored", "rejected", "unknown_forge", "unknown_repository", "succeeded", "failed", "errored",
            "cancelled", "skipped", "timed_out", "delivered", "recorded", "retried", "dropped", "pushed", "not_pushed", "ok",
        ],
        "system": ["host", "other", "x86_64-linux", "aarch64-linux", "i686-linux", "armv7l-linux", "riscv64-linux", "x86_64-darwin", "aarch64-darwin"],
        "how": ["built", "substituted", "cached"],
        "kind": ["builds", "jobs"],
    ]

    @Test(.timeLimit(.minutes(3))) func countersMoveAfterABuildAndLabelsStayBounded() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        // A new output every run: nix must build it here.
        try TestFlake(packages: ["ok": TestFlake.succeeding("fine-\(UUID().uuidString)"), "bad": "echo no; exit 1"]).write(to: world.repository.path)
        try world.repository.write(".kiln.yml", "jobs:\n  ok: {build: .#ok}\n  bad: {build: .#bad}\n")
        let sha = try world.repository.commit("two jobs")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }

        let before = try Self.parse(try await HTTPTestClient.send("GET", "\(kiln.url)/metrics").body)
        #expect(before.contains(Sample(name: "kiln_worker_slots", labels: [:], value: 2)))
        let accepted = try await kiln.push(repository: World.name, sha: sha, secret: World.secret)
        let buildID = try #require(accepted.json["build_id"] as? Int)
        _ = try await kiln.push(repository: World.name, sha: sha, secret: "wrong secret")
        try await eventually("the build to end", within: .seconds(120)) {
            (try? await kiln.build(buildID))?["state"] as? String == "failed"
        }
        try await eventually("every status to be posted", within: .seconds(60)) {
            ["kiln", "kiln/ok", "kiln/bad"].allSatisfy { world.github.states($0).count == 2 }
        }

        // The forge has each status before Kiln has its answer and counts it: read the metrics
        // once the six posts are counted.
        var answer = try await HTTPTestClient.send("GET", "\(kiln.url)/metrics")
        var samples: [Sample] = []
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            samples.first { $0.name == name && $0.labels == labels }?.value
        }
        try await eventually("six delivered statuses to be counted", within: .seconds(30)) {
            answer = try await HTTPTestClient.send("GET", "\(kiln.url)/metrics")
            samples = try Self.parse(answer.body)
            return (value("kiln_status_posts_total", ["forge": "github", "outcome": "delivered"]) ?? 0) >= 6
        }
        #expect(answer.status == 200 && answer.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        #expect(value("kiln_webhook_deliveries_total", ["forge": "github", "event": "push", "outcome": "accepted"]) == 1)
        #expect(value("kiln_webhook_deliveries_total", ["forge": "github", "event": "unknown", "outcome": "rejected"]) == 1)
        #expect(value("kiln_builds_total", ["outcome": "failed"]) == 1)
        #expect(value("kiln_jobs_total", ["outcome": "succeeded", "system": "host"]) == 1)
        #expect(value("kiln_jobs_total", ["outcome": "failed", "system": "host"]) == 1)
        #expect(value("kiln_job_duration_seconds_count") == 2)
        #expect(value("kiln_job_queue_wait_seconds_count") == 2)
        #expect(value("kiln_derivations_total", ["how": "built"]) == 1)
        #expect((value("kiln_status_posts_total", ["forge": "github", "outcome": "delivered"]) ?? 0) >= 6)
        #expect((value("kiln_output_bytes_count") ?? 0) == 1)
        #expect(value("kiln_queue_length", ["kind": "jobs"]) == 0 && value("kiln_jobs_running") == 0)
        // The outbox empties once the last status is posted.
        try await eventually("the outbox to be empty", within: .seconds(30)) {
            let text = (try? await HTTPTestClient.send("GET", "\(kiln.url)/metrics").body) ?? ""
            return (try? Self.parse(text))?.contains(Sample(name: "kiln_status_outbox_depth", labels: [:], value: 0)) == true
        }
        // No label names a repository, branch, commit or URL.
        for sample in samples {
            for (label, value) in sample.labels where label != "le" {
                #expect(Self.bounded[label]?.contains(value) == true, "\(sample.name){\(label)=\"\(value)\"}")
            }
        }
        #expect(!answer.body.contains(World.name) && !answer.body.contains(sha))
    }
}
