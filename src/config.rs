//! Configuration: what a node is told, and where each setting came from.
//!
//! Every setting is a flag, a `STORGO_*` environment variable and a key of the TOML file
//! (`--config FILE`, else `config.toml` in the platform's config dir), in that order of
//! strength: flags > environment > file > defaults. This module owns the schema (the flag
//! structs below: a key is a flag's long name, its variable is the flag's `env`), the file
//! (read, checked, and handed to the parser as the variables it stands for, unless the real
//! environment sets them), `storgo config show` and `init`, and the typed configuration the
//! node is built from ([`NodeConfig`]). It must not start anything.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches};
use libp2p::Multiaddr;

use crate::network::NetworkConfig;
use crate::node::ReplicationConfig;

/// Errors of configuration, each naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: not TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: unknown key {key:?} (known keys: {known})")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("config {path}: {key} = {value}: {reason}")]
    InvalidValue {
        path: PathBuf,
        key: String,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{path} already exists (give --force to replace it)")]
    Exists { path: PathBuf },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Network flags shared by `node` and `fetch`.
#[derive(Debug, Clone, Args)]
pub struct NetArgs {
    /// Listen on this multiaddr (repeatable; port 0 picks a free port).
    #[arg(long, env = "STORGO_LISTEN", value_delimiter = ',', value_name = "MULTIADDR", value_parser = parse_multiaddr)]
    pub listen: Vec<Multiaddr>,
    /// Join the network through this peer (repeatable), e.g. /ip4/1.2.3.4/tcp/4815/p2p/12D3…
    #[arg(long, env = "STORGO_BOOTSTRAP", value_delimiter = ',', value_name = "MULTIADDR", value_parser = parse_multiaddr)]
    pub bootstrap: Vec<Multiaddr>,
    /// Do not discover or announce on the LAN with mDNS.
    #[arg(long, env = "STORGO_NO_MDNS")]
    pub no_mdns: bool,
    /// Join a private network: only nodes holding this key connect (IPFS swarm.key format;
    /// `storgo keygen swarm` makes one). TCP only: QUIC is off in a private network.
    #[arg(long, env = "STORGO_SWARM_KEY", value_name = "FILE")]
    pub swarm_key: Option<PathBuf>,
    /// Only this peer may connect (repeatable; `@FILE` reads one PeerId per line).
    #[arg(
        long,
        env = "STORGO_ALLOW_PEER",
        value_delimiter = ',',
        value_name = "PEERID"
    )]
    pub allow_peer: Vec<String>,
    /// Never connect with this peer (repeatable; `@FILE` reads one PeerId per line).
    #[arg(
        long,
        env = "STORGO_DENY_PEER",
        value_delimiter = ',',
        value_name = "PEERID"
    )]
    pub deny_peer: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub net: NetArgs,
    /// How long provider records that peers announce are kept here (e.g. 24h).
    #[arg(
        long,
        env = "STORGO_PROVIDER_TTL",
        default_value = "24h",
        value_name = "DURATION"
    )]
    pub provider_ttl: humantime::Duration,
    /// How often everything held is re-announced in one batched sweep, jittered by ±10%
    /// (keep well under the peers' TTL; 0s: only `storgo repair`).
    #[arg(
        long,
        env = "STORGO_REPUBLISH_INTERVAL",
        default_value = "6h",
        value_name = "DURATION"
    )]
    pub republish_interval: humantime::Duration,
    /// How often followed collections are looked up in the DHT for versions missed while
    /// offline or out of gossip's reach (new versions are normally pushed at once; e.g. 5m).
    #[arg(
        long,
        env = "STORGO_COLLECTION_REFRESH",
        default_value = "5m",
        value_name = "DURATION"
    )]
    pub collection_refresh: humantime::Duration,
    /// Copies the network keeps of each item added here (besides this node's pin).
    #[arg(long, env = "STORGO_REPLICATION", default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16))]
    pub replication: u8,
    /// Time between repair rounds, jittered by ±25% (e.g. 30s, 10m; 0s: only `storgo repair`).
    #[arg(
        long,
        env = "STORGO_REPAIR_INTERVAL",
        default_value = "30m",
        value_name = "DURATION"
    )]
    pub repair_interval: humantime::Duration,
    /// How long a replica held here is kept once no pinner renews it (e.g. 30d, 720h): the
    /// item's pinners renew it every repair round; after the last unpins, holders let it go.
    #[arg(
        long,
        env = "STORGO_REPLICA_LEASE",
        default_value = "30days",
        value_name = "DURATION"
    )]
    pub replica_lease: humantime::Duration,
    /// Bytes per second the background scrub re-reads replicas at (e.g. 4MiB; 0: off).
    #[arg(long, env = "STORGO_SCRUB_RATE", default_value = "4MiB", value_name = "SIZE", value_parser = parse_size)]
    pub scrub_rate: u64,
    /// Start as a new node (new PeerId) when this data dir's identity file was lost.
    #[arg(long)]
    pub new_identity: bool,
    /// Where the API and web page listen. Off this machine's loopback, every request needs
    /// the token and routes that name paths on this disk are refused. Default 127.0.0.1:4816
    /// (a free port, with a warning, when that is taken).
    #[arg(long, env = "STORGO_API", value_name = "ADDR")]
    pub api: Option<std::net::SocketAddr>,
    /// Also serve the gateway alone (`/c/ID`), read-only and without a token, here (e.g.
    /// 0.0.0.0:8080 to offer a lab read access).
    #[arg(long, env = "STORGO_GATEWAY", value_name = "ADDR")]
    pub gateway: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What peers may cost this node (SECURITY.md, "Hostile peers").
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Connections in all, at most.
    #[arg(
        long,
        env = "STORGO_MAX_CONNECTIONS",
        default_value_t = 512,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_connections: u32,
    /// Connections from one peer, at most.
    #[arg(
        long,
        env = "STORGO_MAX_CONNECTIONS_PER_PEER",
        default_value_t = 4,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_connections_per_peer: u32,
    /// Refuse new connections while the process uses more memory than this (0: no limit).
    #[arg(long, env = "STORGO_MAX_MEMORY", default_value = "1GiB", value_name = "SIZE", value_parser = parse_size, help_heading = "Limits")]
    pub max_memory: u64,
    /// Chunk requests of one peer served at once; more are answered busy.
    #[arg(
        long,
        env = "STORGO_PEER_REQUESTS_IN_FLIGHT",
        default_value_t = 32,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub peer_requests_in_flight: usize,
    /// Chunk requests one peer may send a second; more are answered busy.
    #[arg(
        long,
        env = "STORGO_PEER_REQUEST_RATE",
        default_value_t = 2000,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub peer_request_rate: u32,
    /// Bytes a second served to all peers together (e.g. 50MB; 0: no limit).
    #[arg(long, env = "STORGO_SERVE_RATE", default_value = "0", value_name = "SIZE", value_parser = parse_size, help_heading = "Limits")]
    pub serve_rate: u64,
    /// DHT provider records one peer may have here.
    #[arg(
        long,
        env = "STORGO_MAX_PROVIDERS_PER_PEER",
        default_value_t = 10_000,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_providers_per_peer: u64,
    /// Items taken in as replicas at once.
    #[arg(
        long,
        env = "STORGO_MAX_INTAKE",
        default_value_t = 4,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_intake: usize,
    /// Bytes of replicas one peer may ask this node to hold per hour.
    #[arg(long, env = "STORGO_INTAKE_PER_PEER_PER_HOUR", default_value = "10GiB", value_name = "SIZE", value_parser = parse_size, help_heading = "Limits")]
    pub intake_per_peer_per_hour: u64,
}

pub fn parse_multiaddr(s: &str) -> Result<Multiaddr, String> {
    s.parse::<Multiaddr>()
        .map_err(|e| format!("{s:?} is not a multiaddr: {e}"))
}

/// A duration as people write it (`30s`, `10m`, `1h 30m`); a bare number is seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 30s or 10m: {e}"))
}

/// A size as people write it: `4096`, `500MB`, `20GiB`, `1.5 TB` (bytesize's rules: kB, MB, GB
/// are powers of 1000; KiB, MiB, GiB powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?} is not a size like 500MB or 20GiB: {e}"))
}

/// The config file used when `--config` is not given.
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "storgo").map(|d| d.config_dir().join("config.toml"))
}

/// One configurable setting: its key (the flag's long name) and its variable.
#[derive(Debug, Clone)]
struct Key {
    key: String,
    var: String,
    id: String,
    help: String,
    default: Option<String>,
    multiple: bool,
    hidden_value: bool,
    /// A switch (`--no-mdns`): takes no value on the command line.
    switch: bool,
    /// Set on `node`, not globally.
    on_node: bool,
}

/// The settings a file may hold: every argument with an environment variable, global or of
/// `storgo node`.
fn keys(cmd: &clap::Command) -> Vec<Key> {
    let mut out = Vec::new();
    let mut collect = |c: &clap::Command, on_node: bool| {
        for a in c.get_arguments() {
            let (Some(long), Some(var)) = (a.get_long(), a.get_env()) else {
                continue;
            };
            if long == "config" || (on_node && a.is_global_set()) {
                continue;
            }
            out.push(Key {
                key: long.to_owned(),
                var: var.to_string_lossy().into_owned(),
                id: a.get_id().to_string(),
                help: a.get_help().map(|h| h.to_string()).unwrap_or_default(),
                default: a
                    .get_default_values()
                    .first()
                    .map(|v| v.to_string_lossy().into_owned()),
                multiple: a.get_action().takes_values()
                    && a.get_num_args().is_some_and(|n| n.max_values() > 1)
                    || matches!(a.get_action(), clap::ArgAction::Append),
                hidden_value: a.is_hide_env_values_set(),
                switch: matches!(
                    a.get_action(),
                    clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
                ),
                on_node,
            });
        }
    };
    collect(cmd, false);
    if let Some(node) = cmd.find_subcommand("node") {
        collect(node, true);
    }
    out
}

/// Where each setting from the file went: the file, and the variables it set.
#[derive(Debug, Default, Clone)]
pub struct Provenance {
    pub file: Option<PathBuf>,
    /// Variables set from the file (the real environment did not set them).
    from_file: BTreeSet<String>,
}

/// The file named by `--config FILE` / `--config=FILE` / `STORGO_CONFIG`, else the default
/// one if it exists. `Err` when a named file is missing.
fn config_file(args: &[OsString]) -> Option<(PathBuf, bool)> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(|p| (PathBuf::from(p), true));
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some((PathBuf::from(p), true));
        }
    }
    if let Some(p) = std::env::var_os("STORGO_CONFIG").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    default_path().filter(|p| p.exists()).map(|p| (p, false))
}

fn toml_to_arg(key: &str, v: &toml::Value, path: &Path) -> Result<String, ConfigError> {
    let bad = |what: &str| ConfigError::InvalidValue {
        path: path.to_owned(),
        key: key.to_owned(),
        value: v.to_string(),
        reason: format!("{what} is not a value here (a string, number, true/false or a list)"),
    };
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::Array(_) | toml::Value::Table(_) => Err(bad("a nested list or table")),
                other => toml_to_arg(key, other, path),
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        toml::Value::Table(_) => return Err(bad("a table")),
        toml::Value::Datetime(_) => return Err(bad("a date")),
    })
}

/// Reads the config file into the environment: each key it sets becomes the variable its
/// flag reads, unless the real environment sets that variable already (which wins). Call
/// before any other thread exists (it changes the environment).
pub fn apply_file(cmd: &clap::Command, args: &[OsString]) -> Result<Provenance, ConfigError> {
    let Some((path, named)) = config_file(args) else {
        return Ok(Provenance::default());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !named && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Provenance::default())
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let values = file_values(cmd, &text, &path)?;
    let mut from_file = BTreeSet::new();
    for (var, value) in values {
        if std::env::var_os(&var).is_none() {
            // SAFETY (edition 2021: safe, but the rule holds): no other thread exists yet.
            std::env::set_var(&var, value);
            from_file.insert(var);
        }
    }
    Ok(Provenance {
        file: Some(path),
        from_file,
    })
}

/// Why the command line could not be parsed.
#[derive(Debug)]
pub enum ParseError {
    /// A value from the config file is wrong: one line naming the file, key and value.
    Config(ConfigError),
    /// Anything else, and `--help`: clap prints it.
    Clap(clap::Error),
}

/// What a config file's text stands for: each key's variable and value, checked (TOML, known
/// keys, plain values). Values themselves are checked when the command line is parsed.
pub fn file_values(
    cmd: &clap::Command,
    text: &str,
    path: &Path,
) -> Result<Vec<(String, String)>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().replace('\n', " ").trim().to_owned(),
        })?;
    let keys = keys(cmd);
    let mut values = Vec::new();
    for (k, v) in &table {
        let Some(key) = keys.iter().find(|key| key.key == *k) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                key: k.clone(),
                known: keys
                    .iter()
                    .map(|k| k.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        values.push((key.var.clone(), toml_to_arg(k, v, path)?));
    }
    Ok(values)
}

/// [`file_values`] for command line `C` (storgo's own: `cli::Cli`), then every value through
/// the parser as `C node` would take it: what the fuzzer drives with arbitrary text.
pub fn check_text<C: CommandFactory>(text: &str) -> Result<(), String> {
    let cmd = C::command();
    let values = file_values(&cmd, text, Path::new("fuzz.toml")).map_err(|e| e.to_string())?;
    let keys = keys(&cmd);
    let mut argv: Vec<String> = vec!["storgo".into(), "node".into()];
    for (var, value) in &values {
        let Some(k) = keys.iter().find(|k| k.var == *var) else {
            continue;
        };
        if !k.switch {
            argv.push(format!("--{}={value}", k.key));
        } else if !matches!(value.as_str(), "false" | "0" | "no" | "off" | "") {
            argv.push(format!("--{}", k.key));
        }
    }
    // Global flags may follow the subcommand; each value is checked as its flag's would be.
    cmd.try_get_matches_from(argv)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Parses the command line after [`apply_file`]. A bad value that came from the file is
/// reported naming the file, the key and the value.
pub fn parse<C: CommandFactory + FromArgMatches>(
    args: Vec<OsString>,
    provenance: &Provenance,
) -> Result<C, ParseError> {
    let m = matches::<C>(args, provenance)?;
    C::from_arg_matches(&m).map_err(ParseError::Clap)
}

fn matches<C: CommandFactory>(
    args: Vec<OsString>,
    provenance: &Provenance,
) -> Result<clap::ArgMatches, ParseError> {
    let cmd = C::command();
    let keys = keys(&cmd);
    let e = match cmd.try_get_matches_from(args) {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    let arg = e
        .get(clap::error::ContextKind::InvalidArg)
        .map(|a| a.to_string());
    let key = arg.as_deref().and_then(|a| {
        keys.iter()
            .find(|k| a.starts_with(&format!("--{} ", k.key)) || a == format!("--{}", k.key))
    });
    match (key, &provenance.file) {
        (Some(k), Some(path)) if provenance.from_file.contains(&k.var) => {
            let value = std::env::var(&k.var).unwrap_or_default();
            let rendered = first_line(&e.to_string());
            // clap says "invalid value 'x' for '--key <V>': why"; keep the why.
            let reason = rendered
                .rsplit_once("': ")
                .map(|(_, why)| why.to_owned())
                .or_else(|| {
                    e.get(clap::error::ContextKind::ValidValue)
                        .map(|v| format!("expected one of {v}"))
                })
                .unwrap_or(rendered);
            Err(ParseError::Config(ConfigError::InvalidValue {
                path: path.clone(),
                key: k.key.clone(),
                value: toml_literal(&value, k.multiple),
                reason,
            }))
        }
        _ => Err(ParseError::Clap(e)),
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_owned()
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
    Unset,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::File => "file",
            Source::Default => "default",
            Source::Unset => "unset",
        })
    }
}

/// One line of `storgo config show`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Setting {
    pub key: String,
    /// The values as given (comma-separated for a list); `None` when unset.
    pub value: Option<String>,
    /// The setting takes a list.
    #[serde(skip)]
    pub list: bool,
    pub source: String,
}

/// The effective value and source of every setting a node would start with: the global
/// flags of this invocation, and `storgo node`'s settings from the environment, the file
/// and the defaults (flags given to `config show` itself are global ones only).
pub fn effective<C: CommandFactory>(
    args: &[OsString],
    provenance: &Provenance,
) -> Result<Vec<Setting>, ParseError> {
    let cmd = C::command();
    let keys = keys(&cmd);
    // The globals as given, then `node` alone: what `storgo node` would see.
    let globals: Vec<OsString> = {
        let cut = args
            .iter()
            .position(|a| a == "config")
            .unwrap_or(args.len());
        args[..cut].to_vec()
    };
    let mut argv = globals;
    argv.push("node".into());
    let m = matches::<C>(argv, provenance)?;
    let node = m.subcommand_matches("node").cloned().unwrap_or_default();
    let mut out = Vec::new();
    for k in &keys {
        let matches = if k.on_node { &node } else { &m };
        let source = match matches.value_source(&k.id) {
            Some(clap::parser::ValueSource::CommandLine) => Source::Flag,
            Some(clap::parser::ValueSource::EnvVariable)
                if provenance.from_file.contains(&k.var) =>
            {
                Source::File
            }
            Some(clap::parser::ValueSource::EnvVariable) => Source::Env,
            Some(clap::parser::ValueSource::DefaultValue) => Source::Default,
            _ => Source::Unset,
        };
        let value = matches
            .get_raw(&k.id)
            .map(|vals| {
                vals.map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|_| source != Source::Unset)
            .map(|v| {
                if k.hidden_value {
                    "(hidden)".to_owned()
                } else {
                    v
                }
            });
        out.push(Setting {
            key: k.key.clone(),
            list: k.multiple,
            value,
            source: match (source, &provenance.file) {
                (Source::File, Some(p)) => format!("file {}", p.display()),
                (s, _) => s.to_string(),
            },
        });
    }
    Ok(out)
}

/// A value as TOML writes it: numbers and booleans bare, the rest quoted.
fn toml_literal(v: &str, multiple: bool) -> String {
    if multiple {
        let items: Vec<String> = v
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| toml::Value::String(s.to_owned()).to_string())
            .collect();
        return format!("[{}]", items.join(", "));
    }
    if v == "true" || v == "false" || v.parse::<i64>().is_ok() {
        v.to_owned()
    } else {
        toml::Value::String(v.to_owned()).to_string()
    }
}

/// `storgo config show`: one `key = value  # source` line per setting.
pub fn render(settings: &[Setting]) -> String {
    let mut out =
        String::from("# What `storgo node` would start with (flags > env > file > defaults).\n");
    for s in settings {
        match &s.value {
            Some(v) => {
                let line = format!("{} = {}", s.key, toml_literal(v, s.list));
                out.push_str(&format!("{line:<60} # {}\n", s.source));
            }
            None => out.push_str(&format!("# {} is not set\n", s.key)),
        }
    }
    out
}

/// `storgo config init`: a commented file with every key at its default.
pub fn init_text<C: CommandFactory>() -> String {
    let mut out = String::from(
        "# storgo configuration.\n\
         #\n\
         # Each key is a command-line flag without its dashes; `STORGO_<KEY>` in the environment\n\
         # (dashes as underscores) and the flag itself both override it. Uncomment to change.\n\
         # Sizes: 500MB, 20GiB. Durations: 90s, 30m, 6h. Lists: [\"a\", \"b\"].\n",
    );
    let mut heading = None;
    for k in keys(&C::command()) {
        let section = if k.on_node { "node" } else { "every command" };
        if heading != Some(section) {
            out.push_str(&format!("\n# --- {section} ---\n"));
            heading = Some(section);
        }
        out.push('\n');
        for line in k.help.lines() {
            out.push_str(&format!("# {line}\n"));
        }
        let example = match (&k.default, k.multiple) {
            (Some(d), m) => toml_literal(d, m),
            (None, true) => "[]".to_owned(),
            (None, false) => "\"\"".to_owned(),
        };
        out.push_str(&format!("# {} = {example}\n", k.key));
    }
    out
}

/// Writes the commented default file to `path`, refusing to replace one unless `force`.
pub fn write_init<C: CommandFactory>(path: &Path, force: bool) -> Result<(), ConfigError> {
    if path.exists() && !force {
        return Err(ConfigError::Exists {
            path: path.to_owned(),
        });
    }
    let write = |source| ConfigError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write)?;
    }
    std::fs::write(path, init_text::<C>()).map_err(write)
}

/// What `storgo node` is built from, resolved and checked.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub network: NetworkConfig,
    pub replication: ReplicationConfig,
    pub http: crate::api::HttpConfig,
    /// `--api` was given: its port is never replaced by a free one.
    pub api_given: bool,
}

/// The default API port; when it is taken (a second node on this machine), a free one.
pub const DEFAULT_API_PORT: u16 = 4816;

impl NodeConfig {
    pub fn from_args(args: &NodeArgs) -> Result<Self, ConfigError> {
        let mut cfg = network(&args.net, true)?;
        cfg.provider_ttl = args.provider_ttl.into();
        if args.new_identity {
            cfg.identity = crate::network::identity::IfMissing::CreateAlways;
        }
        cfg.collection_refresh = args.collection_refresh.into();
        if cfg.collection_refresh < Duration::from_secs(10) {
            return Err(ConfigError::Invalid(format!(
                "collection-refresh {} is too short: at least 10s (each refresh is a DHT lookup per followed collection)",
                args.collection_refresh
            )));
        }
        let republish: Duration = args.republish_interval.into();
        cfg.republish_interval = (!republish.is_zero()).then_some(republish);
        if republish >= cfg.provider_ttl {
            return Err(ConfigError::Invalid(
                "republish-interval must be shorter than provider-ttl, or records expire between announcements".into(),
            ));
        }
        let l = &args.limits;
        cfg.max_connections = l.max_connections;
        cfg.max_connections_per_peer = l.max_connections_per_peer.max(1);
        cfg.max_memory = (l.max_memory > 0).then_some(l.max_memory);
        cfg.max_providers_per_peer = l.max_providers_per_peer;
        cfg.serve = crate::network::ServeLimits {
            in_flight_per_peer: l.peer_requests_in_flight.max(1),
            requests_per_second_per_peer: l.peer_request_rate.max(1),
            bytes_per_second: (l.serve_rate > 0).then_some(l.serve_rate),
            ..Default::default()
        };
        let interval: Duration = args.repair_interval.into();
        let replication = ReplicationConfig {
            replication: args.replication,
            repair_interval: (!interval.is_zero()).then_some(interval),
            scrub_rate: (args.scrub_rate > 0).then_some(args.scrub_rate),
            max_intake: l.max_intake.max(1),
            intake_per_peer_per_hour: l.intake_per_peer_per_hour,
            replica_lease: Duration::from(args.replica_lease).max(Duration::from_secs(60)),
            ..Default::default()
        };
        let http = crate::api::HttpConfig {
            api: args.api.unwrap_or(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                DEFAULT_API_PORT,
            ))),
            gateway: args.gateway,
        };
        Ok(Self {
            network: cfg,
            replication,
            http,
            api_given: args.api.is_some(),
        })
    }
}

/// The network part of the flags (`node` and `fetch`). A temporary fetch node
/// (`dht_server` false) listens only on a free port to talk from.
pub fn network(net: &NetArgs, dht_server: bool) -> Result<NetworkConfig, ConfigError> {
    let invalid = |e: anyhow::Error| ConfigError::Invalid(e.to_string());
    let allow = peer_list(&net.allow_peer).map_err(invalid)?;
    let mut cfg = NetworkConfig {
        bootstrap: net.bootstrap.clone(),
        mdns: !net.no_mdns,
        dht_server,
        allow_peers: (!allow.is_empty()).then_some(allow),
        deny_peers: peer_list(&net.deny_peer).map_err(invalid)?,
        swarm_key: net
            .swarm_key
            .as_deref()
            .map(crate::network::read_swarm_key)
            .transpose()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?,
        ..NetworkConfig::default()
    };
    if !net.listen.is_empty() {
        cfg.listen = net.listen.clone();
        cfg.listen_fallback = false;
    } else if !dht_server {
        cfg.listen = vec!["/ip4/0.0.0.0/tcp/0".parse().expect("constant multiaddr")];
    }
    if let Some(a) = cfg.bootstrap.iter().find(|a| !cfg.usable(a)) {
        return Err(ConfigError::Invalid(format!(
            "--bootstrap {a}: a private network (--swarm-key) works over TCP only; give the peer's /tcp/ address"
        )));
    }
    Ok(cfg)
}

/// PeerIds given on the command line, `@FILE` expanded (one per line; `#` comments).
pub fn peer_list(args: &[String]) -> anyhow::Result<Vec<libp2p::PeerId>> {
    let mut out = Vec::new();
    let parse = |s: &str, from: &str| -> anyhow::Result<libp2p::PeerId> {
        s.parse()
            .map_err(|e| anyhow::anyhow!("{s:?}{from} is not a PeerId: {e}"))
    };
    for a in args {
        match a.strip_prefix('@') {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading peer list {path}: {e}"))?;
                for (n, line) in text.lines().enumerate() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    if !line.is_empty() {
                        out.push(parse(line, &format!(" (in {path}, line {})", n + 1))?);
                    }
                }
            }
            None => out.push(parse(a, "")?),
        }
    }
    Ok(out)
}
