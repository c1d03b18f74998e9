import Foundation
import KilnPipeline

/// A flake whose derivations are busybox shell scripts, so that it builds without nixpkgs.
///
/// `bin/busybox` is a copy of the machine's static busybox; the flake refers to it as
/// `./bin`, which nix copies into the store, so builders run it inside the sandbox.
public struct TestFlake: Sendable {
    /// Derivation name → shell script (run by busybox sh; `$out` must be created to succeed).
    public var packages: [String: String]
    /// Attributes that throw at evaluation, with the message.
    public var evaluationErrors: [String: String] = [:]
    /// The system features (`requiredSystemFeatures`) some packages' derivations need, by name.
    public var features: [String: [String]] = [:]
    /// The packages some packages' derivations build on (their inputs), by name.
    public var dependencies: [String: [String]] = [:]

    /// Creates a flake description.
    public init(packages: [String: String], evaluationErrors: [String: String] = [:]) {
        self.packages = packages
        self.evaluationErrors = evaluationErrors
    }

    /// The machine's static busybox, which test derivations run as their builder.
    public static let busybox = "/bin/busybox"

    /// A script that prints `text` and creates `$out`.
    public static func succeeding(_ text: String) -> String { "echo \(text); $bb mkdir $out; echo \(text) > $out/result" }

    /// A script that writes a docker-archive tarball to `$out`, as `dockerTools.buildLayeredImage`
    /// does: one layer holding `/etc/kiln-hello.txt` with `text`, its config and manifest.
    public static func imageArchive(_ text: String, compressed: Bool = false) -> String {
        """
        set -eu
        $bb mkdir -p tools; for a in cat cut gzip ln mkdir mv printf sha256sum tar touch; do $bb ln -s $bb tools/$a; done
        PATH=$PWD/tools
        mkdir -p root/etc archive
        printf '%s\n' '\(text)' > root/etc/kiln-hello.txt
        touch -h -d '1970-01-01 00:00:01' root/etc/kiln-hello.txt root/etc
        (cd root && tar -c -f ../layer.tar etc)
        layer=$(sha256sum layer.tar | cut -d' ' -f1)
        printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' $layer > config.json
        config=$(sha256sum config.json | cut -d' ' -f1)
        mkdir archive/$layer; mv layer.tar archive/$layer/layer.tar; mv config.json archive/$config.json
        printf '[{"Config":"%s.json","RepoTags":null,"Layers":["%s/layer.tar"]}]' $config $layer > archive/manifest.json
        cd archive && \(compressed ? "tar -c -f - manifest.json $config.json $layer | gzip -c -n > $out" : "tar -c -f $out manifest.json $config.json $layer")
        """
    }

    /// A script that writes to `$out` an executable script which prints a docker-archive tarball,
    /// as `dockerTools.streamLayeredImage` does. Run, the script also tries to write
    /// `hostMarker` (which only a run on the host, outside the sandbox, could do).
    public static func imageStream(_ text: String, hostMarker: String) -> String {
        """
        { $bb printf '#!%s sh\nbb=%s\n' $bb $bb; $bb cat <<'KILN_STREAM_END'; } > $out
        set -eu
        (echo ran > '\(hostMarker)') 2>/dev/null || true
        work=$($bb mktemp -d); cd $work; out=$work/image.tar
        \(imageArchive(text))
        $bb cat $work/image.tar
        KILN_STREAM_END
        $bb chmod 0555 $out
        """
    }

    /// Writes `flake.nix` and `bin/busybox` into `directory`.
    public func write(to directory: String) throws {
        let bin = directory + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: bin + "/busybox") {
            try FileManager.default.copyItem(atPath: Self.busybox, toPath: bin + "/busybox")
        }
        var attributes = packages.sorted { $0.key < $1.key }.map { name, script in
            let needs = (features[name] ?? []).map(NixString.literal).joined(separator: " ")
            let inputs = (dependencies[name] ?? []).joined(separator: " ")
            return "      \(name) = mk \"\(name)\" \(NixString.literal(script)) [ \(needs) ] [ \(inputs) ];"
        }
        attributes += evaluationErrors.sorted { $0.key < $1.key }.map { name, message in
            "      \(name) = throw \(NixString.literal(message));"
        }
        let flake = """
            {
              outputs = { self }: let
                bb = "${./bin}/busybox";
                mk = name: script: features: inputs: derivation ({
                  inherit name;
                  system = "x86_64-linux";
                  builder = bb;
                  args = [ "sh" "-c" ("bb=" + bb + "; " + script) ];
                } // (if features == [ ] then { } else { requiredSystemFeatures = features; })
                  // (if inputs == [ ] then { } else { inherit inputs; }));
              in {
                packages.x86_64-linux = rec {
            \(attributes.joined(separator: "\n"))
                };
              };
            }

            """
        try flake.write(toFile: directory + "/flake.nix", atomically: true, encoding: .utf8)
    }
}
