import Foundation
import KilnApp
import KilnCore
import KilnTesting
import Logging
import Testing

/// How `kiln serve` behaves when something around it is wrong.
@Suite struct OperationsTests {
    @Test(.timeLimit(.minutes(3))) func aSecondKilnOnTheSameDataDirectoryIsRefused() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        let first = try await KilnInstance.start(config: world.configPath)
        do {
            _ = try await KilnInstance.start(config: world.configPath)
            Issue.record("a second kiln started on the same data directory")
        } catch let error as DataDirectoryLock.Busy {
            #expect(error.message.hasPrefix("another kiln serve is using "))
            #expect(error.message.hasSuffix("stop it first, or give this one its own storage.data-dir"))
        }
        await first.stop()
        // Once the first has stopped, the directory is free again.
        let again = try await KilnInstance.start(config: world.configPath)
        await again.stop()
    }

    @Test(.timeLimit(.minutes(3))) func withoutAUsableNixKilnKeepsServingAndRecordsDeliveries() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8)
            .replacingOccurrences(of: "nix:\n", with: "nix:\n  binary: /nonexistent/nix\n")
        try config.write(toFile: world.configPath, atomically: true, encoding: .utf8)
        try world.repository.write(".kiln.yml", "jobs: {}\n")
        let sha = try world.repository.commit("nothing to build")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }
        try await eventually("/health to say why", within: .seconds(30)) {
            let health = try await HTTPTestClient.send("GET", "\(kiln.url)/health")
            return health.status == 503 && (health.json["nix"] as? String)?.contains("/nonexistent/nix is not an executable file") == true
        }
        let accepted = try await kiln.push(repository: World.name, sha: sha, secret: World.secret)
        #expect(accepted.status == 202)
        let buildID = try #require(accepted.json["build_id"] as? Int)
        #expect((try await kiln.build(buildID))["state"] as? String == "queued")
    }

    /// A sender that opens deliveries and sends their bodies slowly holds at most the configured
    /// number of slots; others are answered 503 at once, with Retry-After.
    @Test(.timeLimit(.minutes(2))) func webhookBodiesAreReadAFewAtATime() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8)
            .replacingOccurrences(of: "  max-body-bytes:", with: "  max-concurrent-webhooks: 1\n  max-body-bytes:")
        try config.write(toFile: world.configPath, atomically: true, encoding: .utf8)
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }
        // A delivery whose body never finishes arriving.
        func holdASlot() -> Int32 {
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(kiln.port).bigEndian
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            let head = "POST /webhooks/github HTTP/1.1\r\nHost: kiln\r\nContent-Length: 1000\r\nX-GitHub-Event: push\r\n\r\n{\"ref\":"
            _ = head.withCString { send(descriptor, $0, strlen($0), 0) }
            return descriptor
        }
        var descriptor = holdASlot()
        // A generous deadline: at the start of a full test run, dozens of servers start at once.
        try await eventually("a second delivery to be refused while the first holds the slot", within: .seconds(40)) {
            let answer = try await kiln.push(repository: World.name, sha: String(repeating: "a", count: 40), secret: World.secret)
            // The held delivery may have come second to a push and been refused itself: hold again.
            var reply = [UInt8](repeating: 0, count: 64)
            if recv(descriptor, &reply, reply.count, Int32(MSG_DONTWAIT)) > 0 {
                close(descriptor)
                descriptor = holdASlot()
            }
            return answer.status == 503 && answer.body.contains("max-concurrent-webhooks")
        }
        close(descriptor)
        // Once it is gone, deliveries are read again.
        try await eventually("the slot to be free again", within: .seconds(10)) {
            try await kiln.push(repository: World.name, sha: String(repeating: "a", count: 40), secret: World.secret).status != 503
        }
    }
}
