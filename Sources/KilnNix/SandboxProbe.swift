import Foundation

/// A test build that proves the sandbox, rather than reading nix's settings: its builder tries to
/// read a file Kiln has just written outside the store and to reach a port Kiln listens on at
/// 127.0.0.1. A sandboxed builder can do neither (its loopback is its own). This also catches a
/// nix daemon that ignores an untrusted client's `--option sandbox true`.
struct SandboxProbe {
    var binaries: NixBinaries
    /// Kiln's `--option` arguments, the enforced sandbox settings among them.
    var options: [String]
    /// Where the probe's files are written (and removed again).
    var scratch: String
    /// The static busybox the builder runs.
    var busybox = "/bin/busybox"

    private static let readMarker = "kiln-probe: read the host file"
    private static let networkMarker = "kiln-probe: reached the host network"

    /// Why builds are not confined, or nil when the probe build could do neither.
    func problem() async -> String? {
        guard let busyboxPath = [busybox, "/usr/bin/busybox"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            return "the sandbox check needs a static busybox at \(busybox) (Debian: apt-get install busybox-static)"
        }
        let directory = scratch + "/kiln-sandbox-probe-" + UUID().uuidString.lowercased()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let listener: LoopbackListener
        do {
            // busybox picks its applet by its file name, so it keeps its name in a directory.
            try FileManager.default.createDirectory(atPath: directory + "/bin", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: busyboxPath, toPath: directory + "/bin/busybox")
            try Data(UUID().uuidString.utf8).write(to: URL(fileURLWithPath: directory + "/canary"))
            // Readable by anyone, so only the sandbox (not file permissions) can keep a builder from it.
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: directory + "/canary")
            try Data(Self.expression.utf8).write(to: URL(fileURLWithPath: directory + "/probe.nix"))
            listener = try LoopbackListener()
        } catch {
            return "could not prepare the sandbox check in \(scratch): \(error)"
        }
        defer { listener.close() }
        // A private home: nix writes its caches there (never /homeless-shelter, whose existence
        // makes an unsandboxed nix refuse to build).
        let environment: [String: String]
        do {
            environment = ScrubbedEnvironment.variables(home: try ScrubbedEnvironment.makeHome(under: directory))
        } catch {
            return "could not prepare the sandbox check in \(scratch): \(error)"
        }
        do {
            let derivation = try await NixBinaries.capture(
                binaries.nixInstantiate,
                ["./probe.nix", "--argstr", "canary", directory + "/canary", "--argstr", "port", String(listener.port),
                 "--argstr", "nonce", UUID().uuidString, "-I", directory] + options,
                environment: environment, workingDirectory: directory
            ).trimmingCharacters(in: .whitespacesAndNewlines)
            _ = try await NixBinaries.capture(binaries.nixStore, ["--realise", derivation] + options, environment: environment)
            return nil
        } catch {
            let message = "\(error)"
            if message.contains(Self.readMarker) {
                return "builds are not sandboxed: a test build read \(directory)/canary on the host. Kiln builds only in nix's sandbox (sandbox = true; a nix daemon must trust Kiln's user for Kiln's settings to apply)"
            }
            if message.contains(Self.networkMarker) {
                return "builds are not sandboxed: a test build reached 127.0.0.1:\(listener.port) on the host. Kiln builds only in nix's sandbox (sandbox = true; a nix daemon must trust Kiln's user for Kiln's settings to apply)"
            }
            return "the sandbox check's test build failed: \(message)"
        }
    }

    /// The probe derivation; the nonce makes every probe a fresh build.
    static let expression = """
        { canary, port, nonce }:
        derivation {
          name = "kiln-sandbox-probe";
          system = builtins.currentSystem;
          builder = "${./bin}/busybox";
          inherit canary port nonce;
          args = [ "sh" "-c" ''
            bb=${./bin}/busybox
            if $bb cat "$canary" >/dev/null 2>&1; then echo "\(readMarker)" >&2; exit 1; fi
            if $bb nc -w 2 127.0.0.1 "$port" </dev/null >/dev/null 2>&1; then echo "\(networkMarker)" >&2; exit 1; fi
            $bb mkdir "$out"
          '' ];
        }
        """
}

/// A TCP socket listening on 127.0.0.1 on a port of the kernel's choice; nothing is accepted.
final class LoopbackListener {
    private let descriptor: Int32
    /// The port it listens on.
    let port: UInt16

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw NixQueryError(message: "socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(descriptor, socketAddress, length) == 0 && listen(descriptor, 8) == 0
                    && getsockname(descriptor, socketAddress, &length) == 0
            }
        }
        guard bound else {
            Glibc.close(descriptor)
            throw NixQueryError(message: "could not listen on 127.0.0.1: errno \(errno)")
        }
        self.descriptor = descriptor
        port = UInt16(bigEndian: address.sin_port)
    }

    func close() { Glibc.close(descriptor) }
}
