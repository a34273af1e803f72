//! The configuration's errors: a setting that cannot be read, parsed or used, each naming
//! the file and the key, and why a command line could not be parsed.
//!
//! A leaf of `config`: every other file of it returns these; it imports none of them.

use std::path::PathBuf;

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

/// Why the command line could not be parsed.
#[derive(Debug)]
pub enum ParseError {
    /// A value from the config file is wrong: one line naming the file, key and value.
    Config(ConfigError),
    /// Anything else, and `--help`: clap prints it.
    Clap(clap::Error),
}
