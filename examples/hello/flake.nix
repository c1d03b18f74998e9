# An example flake that builds without nixpkgs: every derivation runs a static busybox
# (bin/busybox, copied in by scripts/make-example) as its builder, inside the Nix sandbox.
{
  outputs = { self }:
    let
      bb = "${./bin}/busybox";
      script = name: text: derivation {
        inherit name;
        system = "x86_64-linux";
        builder = bb;
        args = [ "sh" "-c" ("bb=${bb}; " + text) ];
      };
    in {
      packages.x86_64-linux = {
        hello = script "hello" ''
          echo "Hello from a sandboxed build"
          $bb mkdir -p $out/share
          echo "hello, kiln" > $out/share/greeting
        '';
        count = script "count" ''
          for i in 1 2 3 4 5; do echo "step $i of 5"; $bb sleep 1; done
          $bb mkdir $out
        '';
      };
    };
}
