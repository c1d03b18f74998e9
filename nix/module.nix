# NixOS module: services.kiln. Renders kiln.yaml from `settings`, hands secrets to Kiln as
# systemd credentials, and runs `kiln serve` with the same unit settings as config/kiln.service.
#
#   services.kiln = {
#     enable = true;
#     settings = {
#       server.public-url = "https://ci.example.org";
#       forges.github = {
#         type = "github";
#         webhook-secret-files = [ "/run/credentials/kiln.service/github-webhook-secret" ];
#         token-file = "/run/credentials/kiln.service/github-token";
#       };
#       repositories = [ { forge = "github"; name = "octo/hello"; clone-url = "https://github.com/octo/hello.git"; } ];
#     };
#     credentials = {
#       github-webhook-secret = "/etc/kiln/secrets/github-webhook-secret";
#       github-token = "/etc/kiln/secrets/github-token";
#     };
#   };
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkEnableOption mkIf mkOption types literalExpression;
  cfg = config.services.kiln;
  yaml = pkgs.formats.yaml { };
  # Only the keys that are set reach kiln.yaml: Kiln's own defaults apply to the rest.
  prune = value:
    if builtins.isAttrs value then lib.filterAttrs (_: v: v != null) (lib.mapAttrs (_: prune) value)
    else if builtins.isList value then map prune value
    else value;
  configFile = yaml.generate "kiln.yaml" (prune cfg.settings);
  option = type: description: mkOption { type = types.nullOr type; default = null; inherit description; };
in
{
  options.services.kiln = {
    enable = mkEnableOption "Kiln, the CI bot and build service for Nix projects";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The kiln package.";
    };

    credentials = mkOption {
      type = types.attrsOf types.path;
      default = { };
      description = ''
        Secret files handed to Kiln as systemd credentials (LoadCredential): name = path. Kiln
        reads them at /run/credentials/kiln.service/NAME; refer to that path in `settings`.
        The files stay out of the Nix store.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the port of settings.server.listen in the firewall.";
    };

    settings = mkOption {
      description = "kiln.yaml, as the README's Server configuration describes it. Unset keys take Kiln's defaults.";
      default = { };
      type = types.submodule {
        freeformType = yaml.type;
        options = {
          # keys of server:
          server = {
            listen = mkOption { type = types.str; default = "127.0.0.1:8080"; description = "Address and port."; };
            public-url = option types.str "Base of the links in statuses and pages.";
            max-body-bytes = option types.ints.positive "Larger webhooks get 413.";
            max-concurrent-webhooks = option types.ints.positive "Webhook bodies read at once.";
            max-event-streams = option types.ints.positive "Event streams open at once.";
            admin-token-file = option types.str "A token with every scope (a credential path).";
            events-socket = option types.str "A Unix socket serving post-build events as Determinate Nixd does.";
            private = option types.bool "Pages, logs, the API, events and metrics need a read token.";
          };
          # keys of storage:
          storage = {
            data-dir = mkOption { type = types.str; default = "/var/lib/kiln"; description = "Database, logs, mirrors, work trees."; };
            max-log-bytes = option types.ints.positive "Cap on each job's log.";
            retention = option types.str "Builds older than this are removed (90d).";
            keep-outputs = option types.ints.unsigned "Successful builds of each branch whose outputs are kept as roots (3).";
            min-free = option types.str "Collect the store when less space than this is free (10GiB).";
            database = option types.str "A PostgreSQL database instead of SQLite: postgres://USER@HOST[:PORT]/DATABASE.";
            database-password-file = option types.str "The PostgreSQL password (a credential's path).";
            logs-dir = option types.str "Job logs, instead of data-dir/logs: a directory instances on one database share.";
          };
          # keys of nix:
          nix = {
            binary = mkOption { type = types.str; default = "${config.nix.package}/bin/nix"; description = "nix (nix-store beside it)."; };
            max-parallel-jobs = option types.ints.positive "Jobs running at once.";
            default-timeout = option types.str "Wall-clock limit of jobs that set none (30m).";
            max-timeout = option types.str "The most a job may ask for (1h).";
            default-max-silent = option types.str "Silence limit of jobs that set none (10m).";
            eval-timeout = option types.str "The longest one build's evaluation may take (10m).";
            eval-max-memory = option types.str "The most memory an evaluating nix may use (4GiB).";
            max-parallel-evals = option types.ints.positive "Evaluations running at once.";
            builders = option (types.listOf types.str) "nix remote builders.";
            options = option (types.attrsOf types.str) "Extra nix options (never sandbox or the evaluation's confinement).";
            cache = option (types.attrsOf yaml.type) "push-to, secret-key-file, required.";
            warm = option (types.listOf types.str) "Installables realised at start and daily.";
            allowed-read-only-paths = option (types.listOf types.str) "Host paths jobs may see read-only in the sandbox.";
            sandbox-shell = option types.str "The static shell jobs with provide-bin-sh get as /bin/sh.";
            ssh-options = option (types.listOf types.str) "Arguments nix gives ssh for remote builders (NIX_SSHOPTS), one word each.";
          };
          # end of keys
          forges = mkOption { type = types.attrsOf yaml.type; default = { }; description = "Forges, by name (the webhook URL's last part)."; };
          repositories = mkOption { type = types.listOf yaml.type; default = [ ]; description = "Repositories Kiln builds."; };
          build-service = mkOption { type = types.attrsOf yaml.type; default = { }; description = "Ad-hoc builds: git-hosts, templates-dir, secrets-dir."; };
          registries = mkOption { type = types.attrsOf yaml.type; default = { }; description = "Image registries, by name: host, auth-file, tls-verify, attempts, fallback."; };
          reconcile = mkOption { type = types.attrsOf yaml.type; default = { }; description = "interval: how often forges are asked for heads whose webhook never arrived (10m; off)."; };
        };
      };
    };
  };

  config = mkIf cfg.enable {
    # Kiln builds only with the sandbox on and without fallback; it refuses to start otherwise.
    nix.settings.sandbox = true;
    nix.settings.sandbox-fallback = false;

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall [
      (lib.toInt (lib.last (lib.splitString ":" cfg.settings.server.listen)))
    ];

    systemd.services.kiln = {
      description = "Kiln: CI and build service for Nix projects";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      path = [ config.nix.package pkgs.git ];
      serviceConfig = {
        ExecStart = "${cfg.package}/bin/kiln serve --config ${configFile}";
        # nix builds as the nixbld users inside its sandbox; without a daemon that needs root.
        User = "root";
        StateDirectory = "kiln";
        StateDirectoryMode = "0750";
        WorkingDirectory = "/var/lib/kiln";
        LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") cfg.credentials;
        Restart = "on-failure";
        RestartSec = 5;
        # SIGTERM to Kiln alone; what is left when the timeout ends (builders too) is killed.
        KillMode = "mixed";
        TimeoutStopSec = 90;
        ProtectHome = true;
        PrivateTmp = true;
        NoNewPrivileges = true;
        ProtectSystem = "full";
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        LimitNOFILE = 65536;
      };
    };
  };
}
