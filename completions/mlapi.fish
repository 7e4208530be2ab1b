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
complete -c mlapi -n "__fish_mlapi_needs_command" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -l bind -d 'Address to listen on; overrides server.bind (default 127.0.0.1:8000)' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand serve" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and not __fish_seen_subcommand_from show" -f -a "show" -d 'Print the effective configuration (file, environment and flags applied; secrets redacted)'
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand config; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -l config -d 'Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir)' -r -F
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -l db -d 'SQLite database file; overrides database.path' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -l redis -d 'Redis URL (redis://host:port, unix:///path.sock); overrides redis.url' -r
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -l output -d 'Output for people (table) or scripts (json: one document on stdout)' -r -f -a "table\t''
json\t''"
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -s q -l quiet -d 'Print only the essential value (or nothing) on success'
complete -c mlapi -n "__fish_mlapi_using_subcommand completions" -s h -l help -d 'Print help'
