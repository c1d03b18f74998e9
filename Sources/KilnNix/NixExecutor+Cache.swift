import Foundation
import KilnCore
import KilnPipeline

/// Pushing a job's outputs to the binary cache.
extension NixExecutor {
    /// Signs the outputs' closure and copies it to the cache, retrying with backoff.
    func pushToCache(_ paths: [String], _ session: inout NixSession, _ binaries: NixBinaries) async -> CachePushResult {
        guard let cache = settings.cache else { return .notPushed("this server has no nix.cache") }
        guard !paths.isEmpty else { return .notPushed("nothing was built") }
        var lastError = ""
        for attempt in 1...3 {
            if attempt > 1 {
                let delay = Duration.seconds(1 << (attempt - 2))
                session.log.note("retrying the binary cache push in \(HumanDuration.format(delay))")
                try? await Task.sleep(for: delay)
            }
            let log = session.log
            // nix names the store URL in its messages: the log gets it without credentials.
            let raw = { @Sendable (line: ArraySlice<UInt8>) in
                log.write(Array(cache.redacting(String(decoding: line, as: UTF8.self)).utf8) + [0x0A])
            }
            do {
                session.log.note("signing and pushing \(paths.count) path\(paths.count == 1 ? "" : "s") to \(cache.displayURL)")
                let signed = try await session.process(
                    binaries.nix, ["store", "sign", "--key-file", cache.secretKeyFile, "--recursive"] + commonArguments + ["--"] + paths,
                    killGrace: settings.killGrace, confined: false, errorLine: raw)
                guard signed.exitCode == 0, signed.stopCause == nil else {
                    lastError = "signing failed: " + NixMessages.lastError(signed.errorTail)
                    continue
                }
                let copied = try await session.process(
                    binaries.nix, ["copy", "--to", cache.pushTo] + commonArguments + ["--"] + paths,
                    killGrace: settings.killGrace, confined: false, errorLine: raw)
                guard copied.exitCode == 0, copied.stopCause == nil else {
                    lastError = NixMessages.lastError(copied.errorTail)
                    continue
                }
                return .pushed(to: cache.displayURL, attempts: attempt)
            } catch {
                lastError = "\(error)"
            }
        }
        lastError = cache.redacting(lastError)
        session.log.note("binary cache push failed: \(lastError)")
        return .failed(lastError, attempts: 3)
    }

    /// The NAR bytes of the closure of `paths`, each path once; nil when nix could not say.
    func closureBytes(_ paths: [String], _ binaries: NixBinaries) async -> Int64? {
        guard !paths.isEmpty,
            let info = try? await NixBinaries.capture(binaries.nix, ["path-info", "--json", "--recursive"] + commonArguments + ["--"] + paths),
            let entries = (try? JSONSerialization.jsonObject(with: Data(info.utf8))) as? [[String: Any]]
        else { return nil }
        return entries.reduce(0) { $0 + ((($1["narSize"] as? NSNumber)?.int64Value) ?? 0) }
    }
}
