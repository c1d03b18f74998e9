import Foundation
import KilnStore
import ServiceLifecycle

/// The events socket's file: a stale one (from a killed Kiln) is removed before binding, one that
/// another process still serves is left alone with an error, and the file is removed at shutdown.
struct EventsSocketFile: Service {
    let path: String

    /// Makes `path` free to bind: removes a socket nobody listens on; refuses a file that is not
    /// a socket, and a socket another process serves.
    static func prepare(_ path: String) throws {
        // The file itself, not what a symbolic link there points at.
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return }
        guard attributes[.type] as? FileAttributeType == .typeSocket else {
            throw StoreError.unavailable(path: path, reason: "server.events-socket names a file that is not a socket; Kiln will not replace it")
        }
        if isServed(path) {
            throw StoreError.unavailable(
                path: path, reason: "another process serves server.events-socket; stop it, or give this Kiln another path")
        }
        unlink(path)
    }

    /// Whether a process accepts connections on the socket at `path`.
    static func isServed(_ path: String) -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
            buffer[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return connected == 0
    }

    func run() async throws {
        try? await gracefulShutdown()
        unlink(path)
    }
}
