import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import KilnCore
import NIOCore
import Synchronization

/// A Cachix-compatible cache on 127.0.0.1 that enforces the API the `cachix` client speaks,
/// strictly: the cache's name, `Authorization: Bearer`, JSON bodies, multipart uploads whose
/// parts match their MD5 and ETags, and narinfos whose file and NAR hashes, sizes and signature
/// match what was uploaded. It records what it stored and what it refused.
public final class FakeCachix: Sendable {
    /// A narinfo the cache stores (the client's `narInfoCreate`).
    public struct Stored: Sendable {
        public var narHash: String
        public var narSize: Int64
        public var references: [String]
        public var signature: String?
    }

    private struct Upload: Sendable {
        var uploadID: String
        var md5: [Int: String] = [:]
        var parts: [Int: [UInt8]] = [:]
        var etags: [Int: String] = [:]
    }

    private struct State: Sendable {
        var stored: [String: Stored] = [:]
        var uploads: [String: Upload] = [:]
        var refusals: [String] = []
        var uploadedNARs = 0
    }

    private let server: TestHTTPServer
    private let state = Mutex(State())
    /// The cache's name.
    public let name: String

    /// `http://127.0.0.1:PORT`.
    public var url: String { "http://127.0.0.1:\(server.port)" }
    /// Store hash → narinfo.
    public var stored: [String: Stored] { state.withLock { $0.stored } }
    /// Why requests were refused.
    public var refusals: [String] { state.withLock { $0.refusals } }
    /// NARs whose upload completed.
    public var uploadedNARs: Int { state.withLock { $0.uploadedNARs } }

    /// A cache `name` that takes `token`; with `publicKey` (32 bytes), every narinfo must be
    /// signed by its secret key.
    public init(name: String, token: String, publicKey: Data?) async throws {
        self.name = name
        let router = Router()
        let box = Box()
        router.on("/**", method: .post) { request, _ in try await box.cache!.handle(request, token: token, publicKey: publicKey) }
        router.on("/**", method: .put) { request, _ in try await box.cache!.handle(request, token: token, publicKey: publicKey) }
        server = try await TestHTTPServer.start(router: router)
        box.cache = self
    }

    /// Stops the server.
    public func stop() async { await server.stop() }

    private final class Box: @unchecked Sendable {
        var cache: FakeCachix?
    }

    private func refuse(_ status: HTTPResponse.Status, _ why: String) -> Response {
        state.withLock { $0.refusals.append(why) }
        return Response(status: status, body: .init(byteBuffer: ByteBuffer(string: why)))
    }

    private static func json(_ value: Any) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: value)) ?? Data()
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: Array(data))))
    }

    private func handle(_ request: Request, token: String, publicKey: Data?) async throws -> Response {
        var request = request
        let body = Array(buffer: try await request.collectBody(upTo: 256 << 20))
        let path = request.uri.path
        let query = request.uri.queryParameters
        // The presigned part uploads: no Authorization.
        if request.method == .put, path.hasPrefix("/upload/") {
            let parts = path.split(separator: "/")
            guard parts.count == 3, let number = Int(parts[2]) else { return refuse(.notFound, "PUT \(path)") }
            let narID = String(parts[1])
            guard request.headers[.contentType] == "application/octet-stream" else { return refuse(.badRequest, "PUT without application/octet-stream") }
            let md5 = Data(Insecure.MD5.hash(data: body)).base64EncodedString()
            return state.withLock { state -> Response in
                guard state.uploads[narID]?.md5[number] == md5, request.headers[HTTPField.Name("Content-MD5")!] == md5 else {
                    state.refusals.append("part \(number): Content-MD5 does not match")
                    return Response(status: .badRequest)
                }
                let etag = "\"etag-\(narID.prefix(8))-\(number)\""
                state.uploads[narID]?.parts[number] = body
                state.uploads[narID]?.etags[number] = etag
                return Response(status: .ok, headers: [.eTag: etag])
            }
        }
        let prefix = "/api/v1/cache/\(name)"
        guard path.hasPrefix("/api/v1/cache/") else { return refuse(.notFound, "\(request.method) \(path)") }
        guard path == prefix || path.hasPrefix(prefix + "/") else { return refuse(.notFound, "unknown cache in \(path)") }
        guard request.headers[.authorization] == "Bearer \(token)" else { return refuse(.unauthorized, "bad token on \(path)") }
        let rest = String(path.dropFirst(prefix.count))
        let isJSON = request.headers[.contentType]?.hasPrefix("application/json") == true
        switch rest {
        case "/narinfo":
            guard isJSON, let hashes = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String],
                hashes.allSatisfy({ $0.count == 32 && $0.allSatisfy(NixHash.alphabet.contains) })
            else { return refuse(.badRequest, "narinfo: not a JSON list of store hashes") }
            let stored = state.withLock { $0.stored }
            return Self.json(hashes.filter { stored[$0] == nil })
        case "/multipart-nar":
            guard ["zst", "xz"].contains(query.get("compression") ?? "") else { return refuse(.badRequest, "multipart-nar: compression must be zst or xz") }
            let narID = UUID().uuidString.lowercased()
            let uploadID = "upload-" + UUID().uuidString
            state.withLock { $0.uploads[narID] = Upload(uploadID: uploadID) }
            return Self.json(["narId": narID, "uploadId": uploadID])
        default:
            let parts = rest.split(separator: "/").map(String.init)
            guard parts.count >= 2, parts[0] == "multipart-nar", let upload = state.withLock({ $0.uploads[parts[1]] }),
                query.get("uploadId") == upload.uploadID
            else { return refuse(.badRequest, "\(rest): unknown upload") }
            let narID = parts[1]
            if parts.count == 2 {
                guard isJSON, let number = query.get("partNumber").flatMap(Int.init), number >= 1,
                    let md5 = ((try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any])?["contentMD5"] as? String
                else { return refuse(.badRequest, "part: needs partNumber and {contentMD5}") }
                state.withLock { $0.uploads[narID]?.md5[number] = md5 }
                return Self.json(["uploadUrl": "\(url)/upload/\(narID)/\(number)"])
            }
            guard parts.count == 3, parts[2] == "complete", isJSON,
                let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any],
                let listed = object["parts"] as? [[String: Any]], let info = object["narInfoCreate"] as? [String: Any]
            else { return refuse(.badRequest, "complete: needs {parts, narInfoCreate}") }
            return complete(narID, upload, listed, info, publicKey: publicKey)
        }
    }

    private func complete(_ narID: String, _ upload: Upload, _ listed: [[String: Any]], _ info: [String: Any], publicKey: Data?) -> Response {
        var joined: [UInt8] = []
        for (index, part) in listed.enumerated() {
            guard part["partNumber"] as? Int == index + 1, let etag = part["eTag"] as? String, upload.etags[index + 1] == etag,
                let bytes = upload.parts[index + 1]
            else { return refuse(.badRequest, "complete: parts are not 1…n with their ETags") }
            joined += bytes
        }
        guard let storeHash = info["cStoreHash"] as? String, storeHash.count == 32, let suffix = info["cStoreSuffix"] as? String,
            let narHash = info["cNarHash"] as? String, narHash.hasPrefix("sha256:"), let narSize = (info["cNarSize"] as? NSNumber)?.int64Value,
            narSize > 0, let fileHash = info["cFileHash"] as? String, let fileSize = (info["cFileSize"] as? NSNumber)?.intValue,
            let references = info["cReferences"] as? [String], info["cDeriver"] is String, info.keys.contains("cSig")
        else { return refuse(.badRequest, "complete: narInfoCreate lacks a field") }
        let fileDigest = SHA256.hash(data: joined).map { String(format: "%02x", $0) }.joined()
        guard fileDigest == fileHash, joined.count == fileSize else { return refuse(.badRequest, "complete: cFileHash or cFileSize is wrong") }
        guard let nar = Self.unzstd(joined), NixHash.nix32(Array(SHA256.hash(data: nar))) == narHash.dropFirst(7), nar.count == narSize else {
            return refuse(.badRequest, "complete: the NAR does not match cNarHash and cNarSize")
        }
        guard references.allSatisfy({ !$0.hasPrefix("/") }) else { return refuse(.badRequest, "complete: references must be basenames") }
        let signature = info["cSig"] as? String
        if let publicKey {
            let fingerprint = "1;/nix/store/\(storeHash)-\(suffix);\(narHash);\(narSize);"
                + references.map { "/nix/store/\($0)" }.joined(separator: ",")
            guard let signature, let bytes = Data(base64Encoded: signature),
                let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey),
                key.isValidSignature(bytes, for: Data(fingerprint.utf8))
            else { return refuse(.badRequest, "complete: cSig does not verify") }
        }
        state.withLock {
            $0.stored[storeHash] = Stored(narHash: narHash, narSize: narSize, references: references, signature: signature)
            $0.uploads[narID] = nil
            $0.uploadedNARs += 1
        }
        return Response(status: .ok)
    }

    /// zstd-decompressed `bytes`, by the zstd command.
    static func unzstd(_ bytes: [UInt8]) -> Data? {
        let file = NSTemporaryDirectory() + "/fake-cachix-" + UUID().uuidString + ".zst"
        defer { try? FileManager.default.removeItem(atPath: file) }
        guard FileManager.default.createFile(atPath: file, contents: Data(bytes)) else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/zstd")
        process.arguments = ["-d", "-q", "-c", file]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return process.terminationStatus == 0 ? data : nil
    }
}
