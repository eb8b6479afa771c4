# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_airlock_global_optspecs
    string join \n q/quiet json h/help V/version
end

function __fish_airlock_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_airlock_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_airlock_using_subcommand
    set -l cmd (__fish_airlock_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c airlock -n "__fish_airlock_needs_command" -s q -l quiet -d 'Hide progress bars and summaries (errors are still printed)'
complete -c airlock -n "__fish_airlock_needs_command" -l json -d 'Print a machine-readable JSON report on stdout'
complete -c airlock -n "__fish_airlock_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_needs_command" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "keygen" -d 'Generate a signing key pair (minisign format)'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "pack" -d 'Pack sources into a new signed bundle'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "inspect" -d 'Show what a bundle holds, for review before import'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "verify" -d 'Check signatures and every hash of a bundle, writing nothing'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "import" -d 'Verify a bundle, then import its content'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "sign" -d 'Add a countersignature to a bundle that verifies (the two-person rule)'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "repair" -d 'Rebuild a bundle\'s missing or damaged volumes from its parity volumes'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "audit" -d 'Check the audit log\'s hash chain'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c airlock -n "__fish_airlock_using_subcommand keygen" -l out -d 'Path of the secret key to write; the public key goes to PATH.pub' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand keygen" -l unencrypted -d 'Do not protect the secret key with a passphrase'
complete -c airlock -n "__fish_airlock_using_subcommand keygen" -s q -l quiet -d 'Hide progress bars and summaries (errors are still printed)'
complete -c airlock -n "__fish_airlock_using_subcommand keygen" -l json -d 'Print a machine-readable JSON report on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand keygen" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l spec -d 'A TOML spec file listing sources and options (see schemas/pack-spec.schema.json)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l out -d 'Directory to write the bundle into' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l key -d 'Secret key to sign with (repeat for several signatures)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l channel -d 'Release channel [default: default]' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l sequence -d 'Sequence number within the channel; with --base, above every base\'s [default: the current Unix time in seconds, but above the last this machine used for the channel (recorded in STATE/pack/sequences.json) and above every base\'s]' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l base -d 'Make a delta bundle: blobs this previous bundle of the channel holds (a bundle or volume directory, or its manifest.json with manifest.json.minisig beside it; checked against --trust/--policy, no chunk read) are listed as external, not carried (repeatable; replaces the spec\'s `bases`)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l trust -d 'Trusted public key: any one of them suffices, for any channel (repeatable; a .pub file or the RW... key itself)' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l policy -d 'Trust policy file (TOML: named keys, per-channel signers and thresholds; see docs/POLICY.md) [default: /etc/airlock/trust.toml if it exists and no --trust is given]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l expires -d 'Validity, e.g. 30d, 12h, or `never` [default: 30d]' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l chunk-size -d 'Largest chunk file, e.g. 700MiB, 4GiB, 25GB [default: 2GiB, fits FAT32]' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l volume-size -d 'Spread the bundle over volumes of at most SIZE each (OUT/vol-001/, vol-002/, ...): a size used exactly, e.g. 64GB, 4GiB, or a medium: cd700, dvd, dvd-dl, bd25, bd50, bd100 (its exact capacity less 1% for the filesystem) [default: one directory]' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l parity -d 'Add N parity volumes (Reed-Solomon): any N lost or damaged data volumes can be rebuilt (needs --volume-size; at most 998) [default: 0]' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l platform -d 'Carry only this platform of multi-platform images, e.g. linux/amd64 (repeatable) [default: all platforms, the index byte for byte]' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l include -d 'Hugging Face sources: carry only files matching this glob (repeatable; as huggingface_hub\'s allow_patterns, e.g. \'*.safetensors\', \'tokenizer/\')' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l exclude -d 'Hugging Face sources: leave out files matching this glob (repeatable)' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l max-download -d 'Most a URL download without a declared size (#size=N, size = N) may fetch, e.g. 500MiB [default: 16GiB]' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l min-speed -d 'Abort a download slower than this many bytes per second over --min-speed-time, e.g. 1KiB; 0 turns the check off (as curl\'s --speed-limit) [default: 1KiB]' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l min-speed-time -d 'The period of --min-speed, in seconds or e.g. 2m (as curl\'s --speed-time) [default: 60]' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l creds -d 'Registry credentials USER:PASSWORD [env: AIRLOCK_CREDS] [default: from $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, $DOCKER_CONFIG/config.json, ~/.docker/config.json]' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l ca-cert -d 'Trust this CA certificate (PEM) for registries, besides the system roots (repeatable)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l insecure-registry -d 'Allow plain HTTP to this registry HOST[:PORT] (repeatable; loopback hosts always may)' -r
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l all-platforms -d 'Carry every platform of multi-platform images (the default; excludes --platform)'
complete -c airlock -n "__fish_airlock_using_subcommand pack" -s q -l quiet -d 'Hide progress bars and summaries (errors are still printed)'
complete -c airlock -n "__fish_airlock_using_subcommand pack" -l json -d 'Print a machine-readable JSON report on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand pack" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand inspect" -l trust -d 'Trusted public key: any one of them suffices, for any channel (repeatable; a .pub file or the RW... key itself)' -r
complete -c airlock -n "__fish_airlock_using_subcommand inspect" -l policy -d 'Trust policy file (TOML: named keys, per-channel signers and thresholds; see docs/POLICY.md) [default: /etc/airlock/trust.toml if it exists and no --trust is given]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand inspect" -l files -d 'Also list every file and blob of every artifact: path, size in bytes and SHA-256 (and, spread over volumes, the volume(s) its bytes lie on)'
complete -c airlock -n "__fish_airlock_using_subcommand inspect" -s q -l quiet -d 'Hide progress bars and summaries (errors are still printed)'
complete -c airlock -n "__fish_airlock_using_subcommand inspect" -l json -d 'Print a machine-readable JSON report on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand verify" -l trust -d 'Trusted public key: any one of them suffices, for any channel (repeatable; a .pub file or the RW... key itself)' -r
complete -c airlock -n "__fish_airlock_using_subcommand verify" -l policy -d 'Trust policy file (TOML: named keys, per-channel signers and thresholds; see docs/POLICY.md) [default: /etc/airlock/trust.toml if it exists and no --trust is given]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand verify" -l state -d 'State directory: the highest sequence accepted per channel, and the audit log [env: AIRLOCK_STATE] [default: $XDG_STATE_HOME/airlock, else /var/lib/airlock as root, else ~/.local/state/airlock]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand verify" -l audit-log -d 'Audit log (hash-chained JSON lines) [env: AIRLOCK_AUDIT_LOG] [default: STATE/audit.jsonl]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand verify" -s q -l quiet -d 'Hide progress bars and summaries (errors are still printed)'
complete -c airlock -n "__fish_airlock_using_subcommand verify" -l json -d 'Print a machine-readable JSON report on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand verify" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand import" -l media -d 'Import a bundle over several volumes from one drive: the volume at MOUNTPOINT first (any of them), then, on a terminal, a prompt for each further volume needed, inserted at the same MOUNTPOINT. Without a terminal (or with --json) it never prompts: the volumes needed must all be given' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand import" -l trust -d 'Trusted public key: any one of them suffices, for any channel (repeatable; a .pub file or the RW... key itself)' -r
complete -c airlock -n "__fish_airlock_using_subcommand import" -l policy -d 'Trust policy file (TOML: named keys, per-channel signers and thresholds; see docs/POLICY.md) [default: /etc/airlock/trust.toml if it exists and no --trust is given]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand import" -l files -d 'Materialise file and directory artifacts (and images, if no image target is given) under DEST' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand import" -l registry -d 'Push images to this registry, under an optional repository prefix' -r
complete -c airlock -n "__fish_airlock_using_subcommand import" -l oci-layout -d 'Write images into this OCI image layout (created or merged; ref names are the source references)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand import" -l hf-cache -d 'Put Hugging Face repos into a huggingface_hub cache: --hf-cache for the default one, --hf-cache=DIR for another (with `=`: a word after a space is never taken as DIR) [default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand import" -l ollama-models -d 'Put Ollama models into an Ollama store: --ollama-models for the default one, --ollama-models=DIR for another (with `=`: a word after a space is never taken as DIR) [default: $OLLAMA_MODELS, else ~/.ollama/models]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand import" -l models-dir -d 'Put models as plain directories here (DIR/ORG/NAME for Hugging Face repos, DIR/ollama/HOST/NAMESPACE/MODEL/TAG for Ollama models), for servers that take a path' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand import" -l only -d 'Import only the artifacts with this name, as `inspect` shows it (repeatable; globs `*`, `?`, `[...]`); the others\' chunks are not read, and they need no target' -r
complete -c airlock -n "__fish_airlock_using_subcommand import" -l skip -d 'Leave out the artifacts with this name (repeatable; globs as for --only)' -r
complete -c airlock -n "__fish_airlock_using_subcommand import" -l creds -d 'Registry credentials USER:PASSWORD [env: AIRLOCK_CREDS] [default: from $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, $DOCKER_CONFIG/config.json, ~/.docker/config.json]' -r
complete -c airlock -n "__fish_airlock_using_subcommand import" -l ca-cert -d 'Trust this CA certificate (PEM) for registries, besides the system roots (repeatable)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand import" -l insecure-registry -d 'Allow plain HTTP to this registry HOST[:PORT] (repeatable; loopback hosts always may)' -r
complete -c airlock -n "__fish_airlock_using_subcommand import" -l state -d 'State directory: the highest sequence accepted per channel, and the audit log [env: AIRLOCK_STATE] [default: $XDG_STATE_HOME/airlock, else /var/lib/airlock as root, else ~/.local/state/airlock]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand import" -l audit-log -d 'Audit log (hash-chained JSON lines) [env: AIRLOCK_AUDIT_LOG] [default: STATE/audit.jsonl]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand import" -l strip-host -d 'Drop the source registry host from target repository names'
complete -c airlock -n "__fish_airlock_using_subcommand import" -l hf-no-symlinks -d 'In the Hugging Face cache, write snapshot files as real files, not symlinks into blobs/ (for filesystems or policies without symlinks) [default: on if HF_HUB_DISABLE_SYMLINKS]'
complete -c airlock -n "__fish_airlock_using_subcommand import" -l dry-run -d 'Verify and print the plan, write nothing'
complete -c airlock -n "__fish_airlock_using_subcommand import" -l allow-rollback -d 'Import even if the channel already accepted a higher sequence (or another bundle at this sequence): for recovery only; recorded in the audit log'
complete -c airlock -n "__fish_airlock_using_subcommand import" -s q -l quiet -d 'Hide progress bars and summaries (errors are still printed)'
complete -c airlock -n "__fish_airlock_using_subcommand import" -l json -d 'Print a machine-readable JSON report on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand import" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand sign" -l key -d 'Secret key to countersign with' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand sign" -l trust -d 'Trusted public key: any one of them suffices, for any channel (repeatable; a .pub file or the RW... key itself)' -r
complete -c airlock -n "__fish_airlock_using_subcommand sign" -l policy -d 'Trust policy file (TOML: named keys, per-channel signers and thresholds; see docs/POLICY.md) [default: /etc/airlock/trust.toml if it exists and no --trust is given]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand sign" -s q -l quiet -d 'Hide progress bars and summaries (errors are still printed)'
complete -c airlock -n "__fish_airlock_using_subcommand sign" -l json -d 'Print a machine-readable JSON report on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand sign" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand repair" -l out -d 'Where to write the repaired volumes (a new or empty directory)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand repair" -l trust -d 'Trusted public key: any one of them suffices, for any channel (repeatable; a .pub file or the RW... key itself)' -r
complete -c airlock -n "__fish_airlock_using_subcommand repair" -l policy -d 'Trust policy file (TOML: named keys, per-channel signers and thresholds; see docs/POLICY.md) [default: /etc/airlock/trust.toml if it exists and no --trust is given]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand repair" -s q -l quiet -d 'Hide progress bars and summaries (errors are still printed)'
complete -c airlock -n "__fish_airlock_using_subcommand repair" -l json -d 'Print a machine-readable JSON report on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand repair" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and not __fish_seen_subcommand_from verify show help" -s q -l quiet -d 'Hide progress bars and summaries (errors are still printed)'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and not __fish_seen_subcommand_from verify show help" -l json -d 'Print a machine-readable JSON report on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and not __fish_seen_subcommand_from verify show help" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and not __fish_seen_subcommand_from verify show help" -f -a "verify" -d 'Check that no record was edited, deleted, reordered or inserted'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and not __fish_seen_subcommand_from verify show help" -f -a "show" -d 'Show the decisions as a table: time, operator, bundle, channel, sequence, outcome, reason'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and not __fish_seen_subcommand_from verify show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from verify" -l state -d 'State directory: the highest sequence accepted per channel, and the audit log [env: AIRLOCK_STATE] [default: $XDG_STATE_HOME/airlock, else /var/lib/airlock as root, else ~/.local/state/airlock]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from verify" -l audit-log -d 'Audit log (hash-chained JSON lines) [env: AIRLOCK_AUDIT_LOG] [default: STATE/audit.jsonl]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from verify" -l expect-head -d 'The head hash printed by an earlier `audit verify` and kept elsewhere: some record (with --expect-records: record N) must still hash to it, so a rewritten tail is caught' -r
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from verify" -l expect-records -d 'The record count printed with that head: the log must still hold at least N records, so records cut off its end are caught' -r
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from verify" -s q -l quiet -d 'Hide progress bars and summaries (errors are still printed)'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from verify" -l json -d 'Print a machine-readable JSON report on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from show" -l state -d 'State directory: the highest sequence accepted per channel, and the audit log [env: AIRLOCK_STATE] [default: $XDG_STATE_HOME/airlock, else /var/lib/airlock as root, else ~/.local/state/airlock]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from show" -l audit-log -d 'Audit log (hash-chained JSON lines) [env: AIRLOCK_AUDIT_LOG] [default: STATE/audit.jsonl]' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from show" -l since -d 'Only decisions made at or after TIME: RFC 3339 (2026-12-01T08:00:00Z) or a duration before now (24h, 7d, 30min)' -r
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from show" -l channel -d 'Only decisions about bundles of channel NAME (as the verified manifest named it)' -r
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Hide progress bars and summaries (errors are still printed)'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from show" -l json -d 'Print a machine-readable JSON report on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check that no record was edited, deleted, reordered or inserted'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show the decisions as a table: time, operator, bundle, channel, sequence, outcome, reason'
complete -c airlock -n "__fish_airlock_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c airlock -n "__fish_airlock_using_subcommand completions" -s q -l quiet -d 'Hide progress bars and summaries (errors are still printed)'
complete -c airlock -n "__fish_airlock_using_subcommand completions" -l json -d 'Print a machine-readable JSON report on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand completions" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from keygen pack inspect verify import sign repair audit completions help" -f -a "keygen" -d 'Generate a signing key pair (minisign format)'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from keygen pack inspect verify import sign repair audit completions help" -f -a "pack" -d 'Pack sources into a new signed bundle'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from keygen pack inspect verify import sign repair audit completions help" -f -a "inspect" -d 'Show what a bundle holds, for review before import'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from keygen pack inspect verify import sign repair audit completions help" -f -a "verify" -d 'Check signatures and every hash of a bundle, writing nothing'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from keygen pack inspect verify import sign repair audit completions help" -f -a "import" -d 'Verify a bundle, then import its content'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from keygen pack inspect verify import sign repair audit completions help" -f -a "sign" -d 'Add a countersignature to a bundle that verifies (the two-person rule)'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from keygen pack inspect verify import sign repair audit completions help" -f -a "repair" -d 'Rebuild a bundle\'s missing or damaged volumes from its parity volumes'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from keygen pack inspect verify import sign repair audit completions help" -f -a "audit" -d 'Check the audit log\'s hash chain'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from keygen pack inspect verify import sign repair audit completions help" -f -a "completions" -d 'Print shell completions'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from keygen pack inspect verify import sign repair audit completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c airlock -n "__fish_airlock_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "verify" -d 'Check that no record was edited, deleted, reordered or inserted'
complete -c airlock -n "__fish_airlock_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "show" -d 'Show the decisions as a table: time, operator, bundle, channel, sequence, outcome, reason'
