# The kiln package, built with SwiftPM. Its Swift dependencies must be vendored for the
# sandbox: run `swiftpm2nix` (nixpkgs) in the repository to write nix/swiftpm2nix/, then build.
# Kiln needs Swift 6.1 or newer (swift-tools-version 6.1); pass a newer `swift` if nixpkgs'
# is older.
{ lib, stdenv, swift, swiftpm, swiftpm2nix, libgit2, sqlite, pkg-config, makeWrapper, git }:
let
  generated = swiftpm2nix.helpers ./swiftpm2nix;
in
stdenv.mkDerivation {
  pname = "kiln";
  version = "0.1.0";
  src = lib.cleanSource ../.;
  nativeBuildInputs = [ swift swiftpm pkg-config makeWrapper ];
  buildInputs = [ libgit2 sqlite ];
  configurePhase = generated.configure;
  swiftpmFlags = [ "--product" "kiln" ];
  installPhase = ''
    install -Dm755 "$(swiftpmBinPath)/kiln" $out/bin/kiln
    wrapProgram $out/bin/kiln --prefix PATH : ${lib.makeBinPath [ git ]}
  '';
  meta = {
    description = "CI bot and build service for Nix projects";
    mainProgram = "kiln";
    platforms = lib.platforms.linux;
  };
}
