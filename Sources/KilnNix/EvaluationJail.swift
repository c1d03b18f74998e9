import Foundation
import Subprocess

/// The world a nix evaluation sees: a bubblewrap mount namespace holding the nix store, the
/// job's work tree, a private home, nix's own configuration and the system's programs, with its
/// own process namespace and a fresh `/proc`. Kiln's data directory, its secret files and every
/// other process stay out of sight, so neither `restrict-eval` gaps nor a flake input that names
/// a local path (`path:/etc/…`, which nix fetches even in pure mode) can read them.
///
/// Builds are not started here: evaluation runs with import-from-derivation off, and
/// `nix-store --realise` runs outside, where nix's own sandbox confines each builder.
struct EvaluationJail: Sendable {
    /// `bwrap`.
    var bubblewrap: String

    /// Read-only system paths an evaluation may need (programs, libraries, nix's settings, name
    /// resolution and certificates for fetching flake inputs). Only those that exist are bound.
    static let readOnlyPaths = [
        "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc/nix", "/etc/passwd", "/etc/group", "/etc/hosts",
        "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/localtime",
    ]

    /// bubblewrap from the fixed system path, or a message that says how to install it.
    static func resolve() -> Result<EvaluationJail, NixQueryError> {
        for directory in ScrubbedEnvironment.systemPath.split(separator: ":") {
            let candidate = "\(directory)/bwrap"
            if FileManager.default.isExecutableFile(atPath: candidate) { return .success(EvaluationJail(bubblewrap: candidate)) }
        }
        return .failure(NixQueryError(message:
            "bubblewrap (bwrap) was not found in \(ScrubbedEnvironment.systemPath); Kiln evaluates only inside it (Debian: apt-get install bubblewrap)"))
    }

    /// The command line that runs `executable` with `arguments` inside the jail, in `workspace`.
    /// `nixDirectories` are the directories of the nix binaries (bound read-only when outside
    /// the system paths); `environment` is all the jailed process gets.
    func command(
        _ executable: String, _ arguments: [String], workspace: String, home: String, nixDirectories: [String],
        environment: [String: String]
    ) -> [String] {
        var argv = [bubblewrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        // As root (a single-user store) nix needs its capabilities to write the store.
        if geteuid() == 0 { argv += ["--cap-add", "ALL"] }
        for path in Self.readOnlyPaths + nixDirectories where FileManager.default.fileExists(atPath: path) {
            argv += ["--ro-bind", path, path]
        }
        argv += ["--bind", "/nix", "/nix", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        argv += ["--bind", workspace, workspace, "--bind", home, home, "--chdir", workspace, "--clearenv"]
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) { argv += ["--setenv", name, value] }
        return argv + ["--", executable] + arguments
    }
}

/// The environment of every nix process Kiln starts: a fixed `PATH`, a private home with its
/// `XDG_*` directories, and nothing of Kiln's own environment (tokens, `SSH_AUTH_SOCK`, cloud
/// credentials, `NIX_PATH`, which would widen what a restricted evaluation may read).
enum ScrubbedEnvironment {
    /// The only `PATH` nix sees.
    static let systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// The variables of a short query (`--version`, `show-config`, `path-info --json`) that
    /// reads no repository: the fixed `PATH` and a home nix cannot write to.
    static let queryVariables = ["PATH": systemPath, "HOME": "/homeless-shelter", "LANG": "C.UTF-8"]

    /// The variables for a private home at `home`.
    static func variables(home: String) -> [String: String] {
        [
            "PATH": systemPath, "HOME": home, "TMPDIR": home + "/tmp", "XDG_CACHE_HOME": home + "/cache",
            "XDG_CONFIG_HOME": home + "/config", "XDG_DATA_HOME": home + "/data", "XDG_STATE_HOME": home + "/state",
            "XDG_RUNTIME_DIR": home + "/runtime", "LANG": "C.UTF-8",
        ]
    }

    /// `variables` as swift-subprocess takes them: the whole environment, nothing inherited.
    static func subprocess(_ variables: [String: String]) -> Environment {
        .custom(Dictionary(uniqueKeysWithValues: variables.map { (Environment.Key(stringLiteral: $0.key), $0.value) }))
    }

    /// Creates a private home (and its directories) under `parent`; the caller removes it.
    static func makeHome(under parent: String) throws -> String {
        let home = parent + "/kiln-nix-home-" + UUID().uuidString.lowercased()
        for directory in ["", "/tmp", "/cache", "/config", "/data", "/state", "/runtime"] {
            try FileManager.default.createDirectory(
                atPath: home + directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        return home
    }
}
