import AsyncHTTPClient
import Crypto
import Foundation
import KilnCore
import NIOCore
import NIOHTTP1
import Subprocess

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// Pushing a job's outputs' closure to a Cachix cache as the `cachix` client does: ask which
/// store paths the cache lacks, then upload each as a zstd-compressed NAR in 32 MiB parts and
/// create its narinfo, signed with the job's key.
extension NixExecutor {
    func pushToCachix(_ push: CachixPush, _ paths: [String], _ session: inout NixSession, _ binaries: NixBinaries) async
        -> CachePushResult
    {
        do {
            let closure = try await CachixClosure.read(paths, nix: binaries.nix, arguments: commonArguments)
            let client = CachixClient(push: push)
            let missing = try await client.missing(closure.map(\.hash))
            session.log.note("\(push.display) lacks \(missing.count) of the \(closure.count) paths of the closure")
            for path in closure where missing.contains(path.hash) {
                let compressed = session.home + "/cachix-\(path.hash).nar.zst"
                defer { try? FileManager.default.removeItem(atPath: compressed) }
                try await dumpCompressed(path.path, to: compressed, binaries)
                try await client.upload(path, compressedFile: compressed)
                session.log.note("pushed \(path.path) to \(push.display)")
            }
            return .pushed(to: push.display, attempts: 1)
        } catch {
            let message = "\(error)"
            session.log.note("pushing to \(push.display) failed: \(message)")
            return .failed(message, attempts: 1)
        }
    }

    /// The NAR of `path`, zstd-compressed (level 2, as the cachix client does), in `file`. No
    /// shell: nix-store writes the NAR to a file, then zstd compresses it.
    private func dumpCompressed(_ path: String, to file: String, _ binaries: NixBinaries) async throws {
        let nar = file + ".nar"
        defer { try? FileManager.default.removeItem(atPath: nar) }
        let descriptor = try FileDescriptor.open(
            FilePath(nar), .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite])
        let dumped = try await Subprocess.run(
            .path(FilePath(binaries.nixStore)), arguments: Arguments(["--dump", path] + optionArguments),
            environment: ScrubbedEnvironment.subprocess(ScrubbedEnvironment.queryVariables),
            output: .fileDescriptor(descriptor, closeAfterSpawningProcess: true), error: .string(limit: 64 << 10))
        guard case .exited(0) = dumped.terminationStatus else {
            throw NixQueryError(message: "nix-store --dump \(path) failed: \(dumped.standardError)")
        }
        guard let zstd = ScrubbedEnvironment.systemPath.split(separator: ":").map({ "\($0)/zstd" })
            .first(where: FileManager.default.isExecutableFile(atPath:))
        else { throw NixQueryError(message: "zstd was not found; install it (Debian: apt-get install zstd)") }
        _ = try await NixBinaries.capture(zstd, ["-2", "-q", "-f", "-o", file, nar])
    }
}

/// One store path of a closure, as `nix path-info --json --recursive` describes it.
struct CachixClosure: Sendable {
    var path: String
    /// The 32 nix32 characters of its name.
    var hash: String
    /// What follows them (`hello-2.12`).
    var suffix: String
    /// `sha256:` and the nix32 hash of its NAR.
    var narHash: String
    var narSize: Int64
    /// Full paths, sorted.
    var references: [String]
    var deriver: String?

    static func read(_ paths: [String], nix: String, arguments: [String]) async throws -> [CachixClosure] {
        let text = try await NixBinaries.capture(nix, ["path-info", "--json", "--recursive"] + arguments + ["--"] + paths, outputLimit: 256 << 20)
        guard let entries = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]] else {
            throw NixQueryError(message: "nix path-info gave no closure")
        }
        return try entries.map { entry in
            guard let path = entry["path"] as? String, let hash = entry["narHash"] as? String,
                let size = (entry["narSize"] as? NSNumber)?.int64Value, let narHash = NixHash.sha256Nix32(hash)
            else { throw NixQueryError(message: "nix path-info described a path without its NAR hash and size") }
            let name = (path as NSString).lastPathComponent
            return CachixClosure(
                path: path, hash: String(name.prefix(32)), suffix: String(name.dropFirst(33)), narHash: "sha256:" + narHash,
                narSize: size, references: ((entry["references"] as? [String]) ?? []).sorted(), deriver: entry["deriver"] as? String)
        }
    }

    /// What the signature covers, as nix fingerprints a path.
    var fingerprint: String { "1;\(path);\(narHash);\(narSize);\(references.joined(separator: ","))" }
}

/// The Cachix API of one cache.
struct CachixClient: Sendable {
    let push: CachixPush
    static let partSize = 32 << 20

    var base: String { "\(push.host)/api/v1/cache/\(push.cache)" }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private func send(_ method: HTTPMethod, _ url: String, json: Any? = nil) async throws -> (Int, ByteBuffer, HTTPHeaders) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(push.token.value)")
        request.headers.add(name: "User-Agent", value: "kiln")
        request.headers.add(name: "Accept", value: "application/json")
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json;charset=utf-8")
            request.body = .bytes(ByteBuffer(bytes: Array(try JSONSerialization.data(withJSONObject: json))))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(300))
        let body = try await response.body.collect(upTo: 16 << 20)
        let status = Int(response.status.code)
        if status == 401 || status == 403 {
            throw Failure(description: "the cache refused the token (HTTP \(status)); check the job's cachix apiKey")
        }
        if status == 404 { throw Failure(description: "\(push.display) does not exist (HTTP 404)") }
        guard (200..<300).contains(status) else {
            throw Failure(description: "\(method.rawValue) \(url.replacingOccurrences(of: push.host, with: "")) answered \(status): \(String(buffer: body).prefix(200))")
        }
        return (status, body, response.headers)
    }

    /// Those of `hashes` the cache does not have.
    func missing(_ hashes: [String]) async throws -> Set<String> {
        let (_, body, _) = try await send(.POST, "\(base)/narinfo", json: hashes)
        guard let missing = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String] else {
            throw Failure(description: "the cache's narinfo answer is not a list of hashes")
        }
        return Set(missing)
    }

    /// Uploads one path's compressed NAR in parts, then creates its narinfo.
    func upload(_ path: CachixClosure, compressedFile: String) async throws {
        let (_, created, _) = try await send(.POST, "\(base)/multipart-nar?compression=zst")
        guard let upload = try JSONSerialization.jsonObject(with: Data(created.readableBytesView)) as? [String: Any],
            let narID = upload["narId"] as? String, let uploadID = upload["uploadId"] as? String,
            let encodedUpload = uploadID.addingPercentEncoding(withAllowedCharacters: .alphanumerics)
        else { throw Failure(description: "the cache did not start an upload") }
        guard let handle = FileHandle(forReadingAtPath: compressedFile) else { throw Failure(description: "cannot read \(compressedFile)") }
        defer { try? handle.close() }
        var parts: [[String: Any]] = []
        var whole = SHA256()
        var size = 0
        var number = 1
        while let part = try handle.read(upToCount: Self.partSize), !part.isEmpty || number == 1 {
            whole.update(data: part)
            size += part.count
            let md5 = Data(Insecure.MD5.hash(data: part)).base64EncodedString()
            let (_, signed, _) = try await send(
                .POST, "\(base)/multipart-nar/\(narID)?uploadId=\(encodedUpload)&partNumber=\(number)", json: ["contentMD5": md5])
            guard let uploadURL = (try JSONSerialization.jsonObject(with: Data(signed.readableBytesView)) as? [String: Any])?["uploadUrl"] as? String else {
                throw Failure(description: "the cache gave no upload URL for part \(number)")
            }
            var put = HTTPClientRequest(url: uploadURL)
            put.method = .PUT
            put.headers.add(name: "Content-Type", value: "application/octet-stream")
            put.headers.add(name: "Content-MD5", value: md5)
            put.body = .bytes(ByteBuffer(bytes: Array(part)))
            let response = try await HTTPClient.shared.execute(put, timeout: .seconds(600))
            _ = try await response.body.collect(upTo: 1 << 20)
            guard (200..<300).contains(Int(response.status.code)), let etag = response.headers.first(name: "ETag") else {
                throw Failure(description: "uploading part \(number) answered \(response.status.code)")
            }
            parts.append(["partNumber": number, "eTag": etag])
            number += 1
            if part.count < Self.partSize { break }
        }
        var info: [String: Any] = [
            "cStoreHash": path.hash, "cStoreSuffix": path.suffix, "cNarHash": path.narHash, "cNarSize": path.narSize,
            "cFileHash": whole.finalize().map { String(format: "%02x", $0) }.joined(), "cFileSize": size,
            "cReferences": path.references.map { ($0 as NSString).lastPathComponent },
            "cDeriver": path.deriver.map { ($0 as NSString).lastPathComponent } ?? "unknown-deriver", "cSig": NSNull(),
        ]
        if let key = push.signingKey {
            guard let secret = Data(base64Encoded: key.value.trimmingCharacters(in: .whitespacesAndNewlines)), secret.count == 64 else {
                throw Failure(description: "the signing key is not base64 of a 64-byte ed25519 secret key")
            }
            let signer = try Curve25519.Signing.PrivateKey(rawRepresentation: secret.prefix(32))
            info["cSig"] = try signer.signature(for: Data(path.fingerprint.utf8)).base64EncodedString()
        }
        _ = try await send(
            .POST, "\(base)/multipart-nar/\(narID)/complete?uploadId=\(encodedUpload)", json: ["parts": parts, "narInfoCreate": info])
    }
}
