import AsyncHTTPClient
import Foundation
import KilnCore
import KilnForges
import KilnGit
import KilnNix
import KilnStore
import Logging
import KilnPipeline
import NIOCore
import NIOHTTP1

/// `kiln doctor`: what Kiln needs, checked on this machine with this configuration, each check
/// with what to do when it fails. Reads only; it starts no build and posts no status.
public struct Doctor: Sendable {
    /// One check's outcome.
    public struct Check: Sendable, Hashable, Encodable {
        /// What was checked: `nix`, `database`, `forge github: octo/hello`, …
        public var name: String
        /// Whether it passed.
        public var ok: Bool
        /// What was found.
        public var detail: String
        /// What to do, when it failed.
        public var fix: String?
    }

    let configuration: KilnConfiguration

    /// A doctor for `configuration`.
    public init(_ configuration: KilnConfiguration) { self.configuration = configuration }

    /// Runs every check, in order.
    public func run() async -> [Check] {
        var checks: [Check] = []
        checks.append(await nix())
        checks.append(buildUsers())
        checks.append(flakeConfig())
        for path in [configuration.storage.dataDirectory, "/nix/store"] { checks.append(disk(path)) }
        checks.append(await database())
        checks += await forges()
        checks += await cloneURLs()
        if let cache = configuration.nix.settings.cache { checks += await binaryCache(cache) }
        if !configuration.registries.isEmpty { checks += await registries() }
        checks.append(await publicURL())
        return checks
    }

    private func nix() async -> Check {
        switch await NixExecutor(settings: configuration.nix.settings).readiness() {
        case .ready(let detail): return Check(name: "nix", ok: true, detail: detail)
        case .notReady(let reason):
            return Check(
                name: "nix", ok: false, detail: reason,
                fix: "install Debian's nix-bin (make deps does), run Kiln as root, and keep sandbox = true in nix.conf")
        }
    }

    private func buildUsers() -> Check {
        guard let group = getgrnam("nixbld") else {
            return Check(
                name: "build users", ok: false, detail: "there is no nixbld group",
                fix: "install nix-setup-systemd (make deps does): it creates the nixbld build users")
        }
        var count = 0
        while let member = group.pointee.gr_mem?[count], member.pointee != 0 { count += 1 }
        return count > 0
            ? Check(name: "build users", ok: true, detail: "\(count) build users in group nixbld")
            : Check(name: "build users", ok: false, detail: "group nixbld has no members", fix: "add nixbld1…nixbld32 to the group")
    }

    private func flakeConfig() -> Check {
        let conf = (try? String(contentsOfFile: "/etc/nix/nix.conf", encoding: .utf8)) ?? ""
        let accepting = conf.split(separator: "\n").contains {
            $0.replacingOccurrences(of: " ", with: "").lowercased() == "accept-flake-config=true"
        }
        return Check(
            name: "accept-flake-config", ok: true,
            detail: (accepting ? "nix.conf accepts flake configs; " : "nix.conf does not accept flake configs; ")
                + "Kiln passes accept-flake-config = false to every nix it runs, and nix.options cannot change that")
    }

    private func disk(_ path: String) -> Check {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else {
            return Check(name: "disk \(path)", ok: false, detail: "cannot read: \(String(cString: strerror(errno)))", fix: "create it, or fix storage.data-dir")
        }
        let free = Int(stats.f_bavail) * Int(stats.f_frsize)
        let inodes = stats.f_files > 0 ? Double(stats.f_favail) / Double(stats.f_files) : 1
        let detail = "\(ByteCount.format(free)) free, \(Int(inodes * 100))% of inodes free"
        guard free >= 2 << 30, inodes >= 0.02 else {
            return Check(name: "disk \(path)", ok: false, detail: detail, fix: "free space: `kiln gc`, `nix-collect-garbage`, or a larger disk")
        }
        return Check(name: "disk \(path)", ok: true, detail: detail)
    }

    private func database() async -> Check {
        if let location = configuration.storage.database {
            let name = location.display
            do {
                let (applied, missing) = try await SQLStore.migrations(location, logger: Logger(label: "kiln-doctor"))
                guard missing.isEmpty else {
                    return Check(
                        name: "database", ok: false, detail: "\(name) lacks \(missing.count) migrations (\(missing.joined(separator: ", ")))",
                        fix: "start kiln serve once: it migrates the database at start-up (back it up first: pg_dump)")
                }
                return Check(name: "database", ok: true, detail: "\(name): reachable, all \(applied.count) migrations applied")
            } catch {
                return Check(
                    name: "database", ok: false, detail: "\(error)",
                    fix: "check storage.database, the password file, and that the server lets Kiln's role in (pg_hba.conf)")
            }
        }
        let path = configuration.storage.dataDirectory + "/kiln.sqlite"
        guard FileManager.default.fileExists(atPath: path) else {
            return Check(name: "database", ok: true, detail: "\(path) does not exist yet; kiln serve creates it")
        }
        // Read only: the doctor never migrates a database a running Kiln may be using.
        do {
            guard FileManager.default.isWritableFile(atPath: path) else {
                return Check(name: "database", ok: false, detail: "\(path) is read-only", fix: "make the data directory writable by Kiln")
            }
            let (applied, missing) = try SQLStore.migrations(at: path)
            let size = ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? 0
            guard missing.isEmpty else {
                return Check(
                    name: "database", ok: false, detail: "\(path) lacks \(missing.count) migrations (\(missing.joined(separator: ", ")))",
                    fix: "start kiln serve once: it migrates the database at start-up (back it up first)")
            }
            return Check(
                name: "database", ok: true, detail: "\(path): writable, all \(applied.count) migrations applied, \(ByteCount.format(size))")
        } catch {
            return Check(name: "database", ok: false, detail: "\(error)", fix: "restore the database from a backup (see the README's Operations)")
        }
    }

    func forges() async -> [Check] {
        var checks: [Check] = []
        for forge in configuration.forges {
            let (adapter, _) = KilnServer.makeForge(forge)
            for repository in configuration.repositories where repository.forge == forge.name {
                let name = "forge \(forge.name): \(repository.name)"
                if forge.statusAPI == .none, forge.settings.token == nil {
                    checks.append(Check(name: name, ok: true, detail: "not checked: no credentials (status-api: none)"))
                    continue
                }
                do {
                    try await adapter.checkAccess(to: repository.name)
                    checks.append(Check(name: name, ok: true, detail: "\(forge.settings.apiURL) answers for \(repository.name) with Kiln's credentials"))
                } catch {
                    checks.append(
                        Check(
                            name: name, ok: false, detail: "\(error)",
                            fix: "check forges.\(forge.name)'s token-file (or GitHub App) and that it can read \(repository.name)"))
                }
            }
        }
        return checks
    }

    private func cloneURLs() async -> [Check] {
        let mirrors = GitMirrors(root: configuration.storage.dataDirectory + "/mirrors")
        var checks: [Check] = []
        for (index, configured) in configuration.repositories.enumerated() {
            guard let forge = configuration.forges.first(where: { $0.name == configured.forge }) else { continue }
            let credentials = KilnServer.makeForge(forge).1
            let repository = KilnCore.Repository(
                id: RepositoryID(index + 1), name: configured.name, cloneURL: configured.cloneURL, credentials: credentials)
            let name = "clone \(configured.name)"
            do {
                let refs = try await mirrors.listRefs(repository)
                checks.append(Check(name: name, ok: true, detail: "\(GitMirrors.redacted(configured.cloneURL)) lists \(refs) refs"))
            } catch {
                checks.append(
                    Check(name: name, ok: false, detail: error.message, fix: "check repositories[\(index)].clone-url and the forge's token"))
            }
        }
        return checks
    }

    private func binaryCache(_ cache: CacheSettings) async -> [Check] {
        var checks: [Check] = []
        let key = (try? String(contentsOfFile: cache.secretKeyFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let key, let colon = key.firstIndex(of: ":"), Data(base64Encoded: String(key[key.index(after: colon)...])) != nil {
            checks.append(Check(name: "cache signing key", ok: true, detail: "\(cache.secretKeyFile): key \(key[..<colon])"))
        } else {
            checks.append(
                Check(
                    name: "cache signing key", ok: false, detail: "\(cache.secretKeyFile) is missing or not NAME:BASE64",
                    fix: "nix key generate-secret --key-name NAME > \(cache.secretKeyFile)"))
        }
        if cache.pushTo.hasPrefix("file://") {
            let directory = String(cache.pushTo.dropFirst(7).split(separator: "?").first ?? "")
            let writable = FileManager.default.isWritableFile(atPath: directory)
            checks.append(
                Check(
                    name: "cache", ok: writable, detail: writable ? "\(directory) is writable" : "\(directory) is not writable",
                    fix: writable ? nil : "create \(directory), writable by Kiln"))
        } else if cache.pushTo.hasPrefix("http://") || cache.pushTo.hasPrefix("https://") {
            let base = String(cache.pushTo.split(separator: "?").first ?? "")
            checks.append(await reachable("cache", base + "/nix-cache-info", shown: cache.displayURL, fix: "check nix.cache.push-to"))
        }
        return checks
    }

    /// skopeo, which pushes images, and each registry's API.
    private func registries() async -> [Check] {
        var checks: [Check] = []
        if let skopeo = NixExecutor.findSkopeo() {
            checks.append(Check(name: "skopeo", ok: true, detail: "\(skopeo) pushes images"))
        } else {
            checks.append(Check(name: "skopeo", ok: false, detail: "skopeo was not found; jobs with an image cannot push it", fix: "apt-get install skopeo"))
        }
        for registry in configuration.registries {
            let scheme = registry.tlsVerify ? "https" : "http"
            checks.append(
                await reachable(
                    "registry \(registry.name)", "\(scheme)://\(registry.host)/v2/", shown: "\(scheme)://\(registry.host)",
                    fix: "check registries.\(registry.name).host and tls-verify"))
        }
        return checks
    }

    private func publicURL() async -> Check {
        await reachable(
            "public URL", configuration.server.publicURL + "/health", shown: configuration.server.publicURL,
            fix: "start kiln serve, and check server.public-url: forges and browsers follow its links")
    }

    /// Whether `url` answers at all (any HTTP status counts) from this machine.
    private func reachable(_ name: String, _ url: String, shown: String, fix: String) async -> Check {
        do {
            var request = HTTPClientRequest(url: url)
            request.method = .GET
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            _ = try? await response.body.collect(upTo: 1 << 20)
            return Check(name: name, ok: true, detail: "\(shown) answers (HTTP \(response.status.code))")
        } catch {
            return Check(name: name, ok: false, detail: "\(shown) is not reachable from this machine: \(error)", fix: fix)
        }
    }
}
