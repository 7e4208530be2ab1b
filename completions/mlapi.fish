# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mlapi_global_optspecs
    string join \n config= db= redis= output= q/quiet h/help V/version
end

function __fish_mlapi_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mlapi_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mlapi_using_subcommand
    set -l cmd (__fish_mlapi_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mlapi -n "__fish_mlapi_needs_command" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_needs_command" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_needs_command" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_needs_command" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_needs_command" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mlapi -n "__fish_mlapi_needs_command" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_needs_command" -f -a "serve" -d 'Run the HTTP daemon until SIGTERM or SIGINT (SIGHUP reloads the config)'
complete -c mlapi -n "__fish_mlapi_needs_command" -f -a "config" -d 'Inspect the configuration'
complete -c mlapi -n "__fish_mlapi_needs_command" -f -a "user" -d 'Manage accounts'
complete -c mlapi -n "__fish_mlapi_needs_command" -f -a "key" -d 'Manage API keys'
complete -c mlapi -n "__fish_mlapi_needs_command" -f -a "cache" -d 'Flush the prediction cache, or show its counters'
complete -c mlapi -n "__fish_mlapi_needs_command" -f -a "ratelimit" -d 'Rate-limit tiers and usage'
complete -c mlapi -n "__fish_mlapi_needs_command" -f -a "version" -d 'Manage API version deprecation'
complete -c mlapi -n "__fish_mlapi_needs_command" -f -a "job" -d 'Batch jobs: list, show, cancel, purge'
complete -c mlapi -n "__fish_mlapi_needs_command" -f -a "upstream" -d 'The model servers behind upstream models, as each running daemon sees them'
complete -c mlapi -n "__fish_mlapi_needs_command" -f -a "audit" -d 'Show the security event log, newest first'
complete -c mlapi -n "__fish_mlapi_needs_command" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -l bind -d 'Address to listen on; overrides server.bind (default 127.0.0.1:8000)' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -f -a "show" -d 'Print the effective configuration (file, environment and flags applied; secrets redacted)'
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -f -a "add" -d 'Create an account. The password comes from a hidden prompt on a terminal, or from stdin with --password-stdin'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -f -a "list" -d 'List accounts'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -f -a "show" -d 'Show one account'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -f -a "disable" -d 'Disable an account: its tokens and keys stop working within a second'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -f -a "enable" -d 'Re-enable a disabled account'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -f -a "set-role" -d 'Change an account\'s role (its live tokens lose scopes the new role lacks)'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and not __fish_seen_subcommand_from add list show disable enable set-role passwd" -f -a "passwd" -d 'Set a new password; ends all of the account\'s sessions'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from add" -l email -d 'The account\'s email address (unique)' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from add" -l role -d 'admin, manager or user' -r -f -a "user\t''
manager\t''
admin\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from add" -l tier -d 'Rate-limit tier (default: auth.default_tier)' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from add" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from add" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from add" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from add" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from add" -l password-stdin -d 'Read the password from stdin (one line) instead of prompting'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from list" -l limit -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from list" -l offset -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from list" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from list" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from list" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from list" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from show" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from show" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from show" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from show" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from disable" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from disable" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from disable" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from disable" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from disable" -l yes -d 'Do not ask for confirmation'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from disable" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from disable" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from enable" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from enable" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from enable" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from enable" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from enable" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from enable" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from set-role" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from set-role" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from set-role" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from set-role" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from set-role" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from set-role" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from set-role" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from passwd" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from passwd" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from passwd" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from passwd" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from passwd" -l password-stdin -d 'Read the password from stdin (one line) instead of prompting'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from passwd" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from passwd" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand user; and __fish_seen_subcommand_from passwd" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and not __fish_seen_subcommand_from create list rotate revoke" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and not __fish_seen_subcommand_from create list rotate revoke" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and not __fish_seen_subcommand_from create list rotate revoke" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and not __fish_seen_subcommand_from create list rotate revoke" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and not __fish_seen_subcommand_from create list rotate revoke" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and not __fish_seen_subcommand_from create list rotate revoke" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and not __fish_seen_subcommand_from create list rotate revoke" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and not __fish_seen_subcommand_from create list rotate revoke" -f -a "create" -d 'Create an API key for a user. The key is printed once; only a digest is stored'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and not __fish_seen_subcommand_from create list rotate revoke" -f -a "list" -d 'List keys (prefix, name, scopes, created, expires, last used, requests). Never the secret'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and not __fish_seen_subcommand_from create list rotate revoke" -f -a "rotate" -d 'Replace a key with a new one (printed once); the old one works for the grace period'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and not __fish_seen_subcommand_from create list rotate revoke" -f -a "revoke" -d 'Revoke a key: refused by running daemons within a second'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from create" -l user -d 'Owner (username or id)' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from create" -l name -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from create" -l scopes -d 'Comma-separated scopes (default: all of the owner\'s role scopes)' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from create" -l expires -d 'Lifetime, e.g. 90d or 12h (default: no expiry)' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from create" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from create" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from create" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from create" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from create" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from list" -l user -d 'Only this user\'s keys' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from list" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from list" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from list" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from list" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from rotate" -l grace -d 'How long the old key keeps working, e.g. 24h (default 0: stops at once)' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from rotate" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from rotate" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from rotate" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from rotate" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from rotate" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from rotate" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from rotate" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from revoke" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from revoke" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from revoke" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from revoke" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from revoke" -l yes -d 'Do not ask for confirmation'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from revoke" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand key; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and not __fish_seen_subcommand_from flush stats warm" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and not __fish_seen_subcommand_from flush stats warm" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and not __fish_seen_subcommand_from flush stats warm" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and not __fish_seen_subcommand_from flush stats warm" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and not __fish_seen_subcommand_from flush stats warm" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and not __fish_seen_subcommand_from flush stats warm" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and not __fish_seen_subcommand_from flush stats warm" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and not __fish_seen_subcommand_from flush stats warm" -f -a "flush" -d 'Drop cached predictions: in Redis (keys under the prefix only) and in every running daemon, within a second'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and not __fish_seen_subcommand_from flush stats warm" -f -a "stats" -d 'Entries, hits, misses and hit rate, per running daemon and in Redis'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and not __fish_seen_subcommand_from flush stats warm" -f -a "warm" -d 'Fill the cache for feature rows ahead of traffic: the rows run as a batch job, whose results become the entries `/api/v1/predict` and `/api/v2/predict` (without explanation) read for those rows'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from flush" -l model -d 'Only this model\'s predictions' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from flush" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from flush" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from flush" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from flush" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from flush" -l yes -d 'Do not ask for confirmation on a terminal'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from flush" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from flush" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from flush" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from stats" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from stats" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from stats" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from stats" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from stats" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from stats" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from stats" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from warm" -l model -d 'The model (default: the default model)' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from warm" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from warm" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from warm" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from warm" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from warm" -l wait -d 'Wait until a running daemon has finished the job'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from warm" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from warm" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand cache; and __fish_seen_subcommand_from warm" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and not __fish_seen_subcommand_from set-tier tiers show" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and not __fish_seen_subcommand_from set-tier tiers show" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and not __fish_seen_subcommand_from set-tier tiers show" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and not __fish_seen_subcommand_from set-tier tiers show" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and not __fish_seen_subcommand_from set-tier tiers show" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and not __fish_seen_subcommand_from set-tier tiers show" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and not __fish_seen_subcommand_from set-tier tiers show" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and not __fish_seen_subcommand_from set-tier tiers show" -f -a "set-tier" -d 'Put a user on a tier; running daemons apply it within a second'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and not __fish_seen_subcommand_from set-tier tiers show" -f -a "tiers" -d 'List the tiers and their limits'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and not __fish_seen_subcommand_from set-tier tiers show" -f -a "show" -d 'A user\'s current usage per window: from Redis when configured, else from each running daemon on this machine (each keeps its own)'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from set-tier" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from set-tier" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from set-tier" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from set-tier" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from set-tier" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from set-tier" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from set-tier" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from tiers" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from tiers" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from tiers" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from tiers" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from tiers" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from tiers" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from tiers" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from show" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from show" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from show" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from show" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand ratelimit; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and not __fish_seen_subcommand_from deprecate undeprecate list" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and not __fish_seen_subcommand_from deprecate undeprecate list" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and not __fish_seen_subcommand_from deprecate undeprecate list" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and not __fish_seen_subcommand_from deprecate undeprecate list" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and not __fish_seen_subcommand_from deprecate undeprecate list" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and not __fish_seen_subcommand_from deprecate undeprecate list" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and not __fish_seen_subcommand_from deprecate undeprecate list" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and not __fish_seen_subcommand_from deprecate undeprecate list" -f -a "deprecate" -d 'Deprecate an API version: its responses get Deprecation, Sunset and Link headers; after the sunset it answers 410'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and not __fish_seen_subcommand_from deprecate undeprecate list" -f -a "undeprecate" -d 'Make a deprecated (or retired) version current again'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and not __fish_seen_subcommand_from deprecate undeprecate list" -f -a "list" -d 'List versions: status, deprecated at, sunset, successor'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from deprecate" -l sunset -d 'The sunset: a date (2027-06-30, midnight UTC) or an RFC 3339 instant' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from deprecate" -l successor -d 'The version clients should move to' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from deprecate" -l link -d 'A page explaining the deprecation (sent as Link rel="deprecation")' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from deprecate" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from deprecate" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from deprecate" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from deprecate" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from deprecate" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from deprecate" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from deprecate" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from undeprecate" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from undeprecate" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from undeprecate" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from undeprecate" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from undeprecate" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from undeprecate" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from undeprecate" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from list" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from list" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from list" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from list" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand version; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and not __fish_seen_subcommand_from list show cancel purge" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and not __fish_seen_subcommand_from list show cancel purge" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and not __fish_seen_subcommand_from list show cancel purge" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and not __fish_seen_subcommand_from list show cancel purge" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and not __fish_seen_subcommand_from list show cancel purge" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and not __fish_seen_subcommand_from list show cancel purge" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and not __fish_seen_subcommand_from list show cancel purge" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and not __fish_seen_subcommand_from list show cancel purge" -f -a "list" -d 'List jobs, newest first'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and not __fish_seen_subcommand_from list show cancel purge" -f -a "show" -d 'One job: status, progress, times, error'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and not __fish_seen_subcommand_from list show cancel purge" -f -a "cancel" -d 'Cancel a queued or running job (a running one stops at its next chunk)'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and not __fish_seen_subcommand_from list show cancel purge" -f -a "purge" -d 'Delete finished jobs (and their results) older than a period'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from list" -l user -d 'Only this user\'s jobs (username or id)' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from list" -l status -d 'Only jobs in this status: queued, running, succeeded, failed or cancelled' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from list" -l limit -d 'At most this many' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from list" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from list" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from list" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from list" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from show" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from show" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from show" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from show" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from cancel" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from cancel" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from cancel" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from cancel" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from cancel" -l yes -d 'Do not ask for confirmation'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from cancel" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from cancel" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from cancel" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from purge" -l older-than -d 'e.g. 7d or 12h: jobs that finished longer ago than this' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from purge" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from purge" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from purge" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from purge" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from purge" -l yes -d 'Do not ask for confirmation'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from purge" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from purge" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand job; and __fish_seen_subcommand_from purge" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and not __fish_seen_subcommand_from status" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and not __fish_seen_subcommand_from status" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and not __fish_seen_subcommand_from status" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and not __fish_seen_subcommand_from status" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and not __fish_seen_subcommand_from status" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and not __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and not __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and not __fish_seen_subcommand_from status" -f -a "status" -d 'Each upstream endpoint of each running daemon: health, breaker state, requests in flight, requests, failures, p50/p99 latency'
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and __fish_seen_subcommand_from status" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and __fish_seen_subcommand_from status" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and __fish_seen_subcommand_from status" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and __fish_seen_subcommand_from status" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand upstream; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand audit" -l since -d 'Only events in this last period (30m, 24h, 7d) or since an RFC 3339 instant' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand audit" -l user -d 'Only events where this username (or cli:<os user>) is the actor or the target' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand audit" -l action -d 'Only this action (e.g. authn_login_fail)' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand audit" -l limit -d 'At most this many events (newest first)' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand audit" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand audit" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand audit" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand audit" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand audit" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand audit" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand audit" -s V -l version -d 'Print version'
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -s V -l version -d 'Print version'
