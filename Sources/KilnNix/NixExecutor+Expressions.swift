import Foundation
import KilnPipeline

/// The nix expressions of a shared evaluation, and how nix looks an installable's attribute up.
extension NixExecutor {
    /// The attribute paths nix tries for a flake installable's fragment, in order: for `.#hello`,
    /// `packages.<system>.hello`, `legacyPackages.<system>.hello`, then `hello`; for `.`,
    /// `packages.<system>.default` then `defaultPackage.<system>`.
    static func attributeCandidates(_ installable: String, system: String) -> [[String]] {
        let parts = installable.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)
        var fragment = parts.count == 2 ? String(parts[1]) : ""
        // An outputs suffix (`^out`) names outputs of the same derivation.
        if let caret = fragment.firstIndex(of: "^") { fragment = String(fragment[..<caret]) }
        fragment = fragment.removingPercentEncoding ?? fragment
        guard !fragment.isEmpty else { return [["packages", system, "default"], ["defaultPackage", system]] }
        let path = attributePath(fragment)
        return [["packages", system] + path, ["legacyPackages", system] + path, path]
    }

    /// `a."b.c".d` → `["a", "b.c", "d"]`, as nix splits an attribute path.
    static func attributePath(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var quoted = false
        for character in text {
            switch character {
            case "\"": quoted.toggle()
            case "." where !quoted:
                parts.append(current)
                current = ""
            default: current.append(character)
            }
        }
        parts.append(current)
        return parts
    }

    /// Finds each installable's attribute in the locked flake, as nix does, and answers its
    /// derivation. Everything the attributes share is evaluated once.
    static let flakeExpression = """
        let
          request = builtins.fromJSON @REQUEST@;
          flake = builtins.getFlake request.url;
          find = value: path:
            if path == [ ] then { found = true; inherit value; }
            else if builtins.isAttrs value && builtins.hasAttr (builtins.head path) value
            then find (builtins.getAttr (builtins.head path) value) (builtins.tail path)
            else { found = false; };
          first = candidates:
            if candidates == [ ] then throw "kiln: an installable names no attribute of the flake"
            else let hit = find flake (builtins.head candidates); in
              if hit.found then hit.value else first (builtins.tail candidates);
          derivation = value:
            if builtins.isAttrs value && (value.type or null) == "derivation" then value.drvPath
            else throw "kiln: an installable is not a derivation";
        in
        builtins.mapAttrs (name: installables: map (candidates: derivation (first candidates)) installables) request.jobs
        """

    /// Selects each job's attribute path in the file (calling functions with their defaults on
    /// the way, as `nix-instantiate -A` does) and collects its derivations as nix-instantiate
    /// does: a derivation; the derivations of a set, and of its sets that ask for it with
    /// `recurseForDerivations`; the derivations of a list.
    static let classicExpression = """
        { request }:
        let
          r = builtins.fromJSON request;
          call = value: if builtins.isFunction value then value { } else value;
          # Called once for every job: what the jobs share is evaluated once.
          root = call (import (./. + "/${r.file}"));
          select = v: name:
            if builtins.match "[0-9]+" name != null then
              (if builtins.isList v then builtins.elemAt v (builtins.fromJSON name)
               else throw "kiln: the selection path expects a list")
            else if builtins.isAttrs v then builtins.getAttr name v
            else throw "kiln: the selection path expects a set";
          walk = value: path:
            if path == [ ] then value
            else let next = select value (builtins.head path); in
              if builtins.tail path == [ ] then next else walk (call next) (builtins.tail path);
          isDerivation = v: builtins.isAttrs v && (v.type or null) == "derivation";
          collect = value:
            let v = call value; in
            if isDerivation v then [ v.drvPath ]
            else if builtins.isAttrs v then builtins.concatMap (name:
              let member = v.${name}; in
              if isDerivation member then [ member.drvPath ]
              else if builtins.isAttrs member && (member.recurseForDerivations or false) == true then collect member
              else [ ]) (builtins.filter (name: builtins.match "[A-Za-z_][A-Za-z0-9_+-]*" name != null) (builtins.attrNames v))
            else if builtins.isList v then builtins.concatMap (member: if isDerivation member then [ member.drvPath ] else collect member) v
            else throw "kiln: not a derivation, or a set or list of those";
        in
        builtins.mapAttrs (name: path: collect (walk root path)) r.jobs
        """
}
