//! `storgo config show`: the effective value of every setting a node would start with, and
//! where each came from (flag, environment, file or default).
//!
//! It parses the command line as `storgo node` would, through [`file`](super::file), and
//! renders one `key = value  # source` line per setting. It must not change the environment
//! or write anything.

use std::ffi::OsString;

use clap::CommandFactory;

use super::error::ParseError;
use super::file::{keys, matches, toml_literal, Provenance};

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
