//! The config file: where it is, what its text stands for and how it reaches the parser.
//!
//! The keys a file may hold are read off the command line itself (every argument with an
//! environment variable, global or of `storgo node`), so everything here is generic over the
//! clap command `C` and imports nothing from `cli`. A file is read, checked (TOML, known keys,
//! plain values) and handed to the parser as the variables it stands for, unless the real
//! environment sets them; [`check_text`] runs the same checks on a text alone (the fuzzer's
//! entry) and [`init_text`] writes the commented file `storgo config init` makes. It must not
//! build a node's configuration (that is [`node`](super::node)).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};

use super::error::{ConfigError, ParseError};

/// The config file used when `--config` is not given.
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "storgo").map(|d| d.config_dir().join("config.toml"))
}

/// One configurable setting: its key (the flag's long name) and its variable.
#[derive(Debug, Clone)]
pub(super) struct Key {
    pub(super) key: String,
    pub(super) var: String,
    pub(super) id: String,
    pub(super) help: String,
    pub(super) default: Option<String>,
    pub(super) multiple: bool,
    pub(super) hidden_value: bool,
    /// A switch (`--no-mdns`): takes no value on the command line.
    pub(super) switch: bool,
    /// Set on `node`, not globally.
    pub(super) on_node: bool,
    /// The value's name in `--help` (`SIZE`, `ADDR`…), for an example that parses.
    pub(super) value_name: Option<String>,
}

/// The settings a file may hold: every argument with an environment variable, global or of
/// `storgo node`.
pub(super) fn keys(cmd: &clap::Command) -> Vec<Key> {
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
                value_name: a
                    .get_value_names()
                    .and_then(|n| n.first())
                    .map(|n| n.to_string()),
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
    pub(super) from_file: BTreeSet<String>,
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

pub(super) fn matches<C: CommandFactory>(
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

/// A value as TOML writes it: numbers and booleans bare, the rest quoted.
pub(super) fn toml_literal(v: &str, multiple: bool) -> String {
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
            (None, false) => toml_literal(&example_value(&k), false),
        };
        out.push_str(&format!("# {} = {example}\n", k.key));
    }
    out
}

/// A value for a setting without a default that is valid once uncommented (what it should be
/// for this node is the user's to say: the help above it says what it means).
fn example_value(k: &Key) -> String {
    if k.switch {
        return "false".into();
    }
    match k.value_name.as_deref() {
        Some("SIZE") => "20GiB".into(),
        Some("DURATION") => "30m".into(),
        Some("N") => "3".into(),
        Some("ADDR") => "127.0.0.1:8080".into(),
        Some("DIR") => "/srv/storgo".into(),
        Some("FILE" | "PATH") => format!("/etc/storgo/{}", k.key),
        // A fresh secret: valid as it stands, and nobody else's.
        Some("HEX") => hex::encode(rand::random::<[u8; 32]>()),
        Some("replicas:R|ec:K+M") => "ec:10+6".into(),
        _ => String::new(),
    }
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
