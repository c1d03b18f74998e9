{
  description = "Kiln: a self-hosted CI bot and build service for Nix projects";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAll (pkgs: rec {
        kiln = pkgs.callPackage ./nix/package.nix { };
        default = kiln;
      });

      nixosModules.kiln = { pkgs, ... }: {
        imports = [ ./nix/module.nix ];
        services.kiln.package = self.packages.${pkgs.stdenv.hostPlatform.system}.kiln;
      };
      nixosModules.default = self.nixosModules.kiln;
    };
}
