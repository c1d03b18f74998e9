import Foundation

/// A second machine simulated on this one: Debian's OpenSSH server on 127.0.0.1 (its own host
/// key, one authorised client key) in front of a nix store of its own (a chroot store under the
/// test's directory) whose nix offers the system feature `feature`. nix reaches it as a remote
/// builder (`ssh-ng://`): the client runs `nix-daemon --stdio --store ROOT` there.
public final class RemoteBuilder: @unchecked Sendable {
    /// The system feature only this builder offers.
    public let feature: String
    /// The port sshd listens on.
    public let port: Int
    /// The remote machine's store root.
    public let storeRoot: String
    /// The client's private key (nix's builder line names it).
    public let clientKey: String
    /// `ssh-ng://root@127.0.0.1`: the machine as nix and the job's record name it.
    public let machine = "ssh-ng://root@127.0.0.1"
    private let directory: String
    private var pid: pid_t?

    /// Writes the keys and configuration under `directory`; `start()` starts sshd.
    public init(in directory: String, feature: String = "kiln-remote") throws {
        self.directory = directory
        self.feature = feature
        self.port = try NginxCache.freePort()
        storeRoot = directory + "/store"
        clientKey = directory + "/client"
        try FileManager.default.createDirectory(atPath: directory + "/nix", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: storeRoot, withIntermediateDirectories: true)
        for key in ["host", "client"] {
            _ = try runCommand("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test-\(key)", "-f", directory + "/" + key])
        }
        try FileManager.default.copyItem(atPath: clientKey + ".pub", toPath: directory + "/authorized_keys")
        // The remote machine's own nix configuration: the feature, the sandbox, no substituters.
        try """
            system-features = \(feature)
            sandbox = true
            sandbox-fallback = false
            build-users-group = nixbld
            substituters =
            """.write(toFile: directory + "/nix/nix.conf", atomically: true, encoding: .utf8)
        try """
            Port \(port)
            ListenAddress 127.0.0.1
            HostKey \(directory)/host
            AuthorizedKeysFile \(directory)/authorized_keys
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            PidFile none
            SetEnv PATH=/usr/sbin:/usr/bin:/sbin:/bin NIX_CONF_DIR=\(directory)/nix
            """.write(toFile: directory + "/sshd_config", atomically: true, encoding: .utf8)
    }

    /// A `nix.builders` entry for this machine: its store, the client key, one job at a time,
    /// the feature (with `mandatory`, only derivations that need it go there), and its host
    /// key, so that ssh checks whom it talks to without a known_hosts file.
    public func builderLine(mandatory: Bool = true) -> String {
        let hostKey = (try? String(contentsOfFile: directory + "/host.pub", encoding: .utf8)) ?? ""
        let encoded = Data(hostKey.utf8).base64EncodedString()
        return "\(machine)?remote-store=\(storeRoot) x86_64-linux \(clientKey) 1 1 \(feature) \(mandatory ? feature : "-") \(encoded)"
    }

    /// The ssh arguments nix needs to reach it (`nix.ssh-options`).
    public var sshOptions: [String] { ["-p", String(port), "-o", "ConnectTimeout=5"] }

    /// Starts sshd in the foreground and waits until it accepts connections.
    ///
    /// Not through Foundation's `Process`: sshd closes every descriptor it inherits, and
    /// Foundation takes the close of its watch socket for the child's exit and blocks in
    /// `waitpid` on it for good, which stops every other `Process` in the tests from ending.
    public func start() async throws {
        // sshd refuses to start without its privilege separation directory.
        try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let arguments = ["/usr/sbin/sshd", "-D", "-E", directory + "/sshd.log", "-f", directory + "/sshd_config"]
        var argv = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        // Nothing the test process has open reaches sshd (another test's pipe would never end).
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        Processes.closeInheritedDescriptors(&fileActions)
        var child: pid_t = 0
        let status = posix_spawn(&child, arguments[0], &fileActions, nil, &argv, environ)
        guard status == 0 else { throw CommandFailed(arguments: arguments, message: String(cString: strerror(status))) }
        pid = child
        try await eventually("sshd on port \(port) to accept connections", within: .seconds(20)) {
            let log = (try? String(contentsOfFile: self.directory + "/sshd.log", encoding: .utf8)) ?? ""
            return log.contains("Server listening on 127.0.0.1 port \(self.port)")
        }
    }

    /// Whether the remote store holds `path`.
    public func holds(_ path: String) -> Bool {
        FileManager.default.fileExists(atPath: storeRoot + path)
    }

    /// What sshd logged.
    public var log: String { (try? String(contentsOfFile: directory + "/sshd.log", encoding: .utf8)) ?? "" }

    /// Stops sshd (connections in progress end with it).
    public func stop() {
        guard let pid else { return }
        kill(pid, SIGTERM)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        self.pid = nil
    }

    deinit { stop() }
}
