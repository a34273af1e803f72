//! Configuration: what a node is told, and where each setting came from.
//!
//! Every setting is a flag, a `STORGO_*` environment variable and a key of the TOML file
//! (`--config FILE`, else `config.toml` in the platform's config dir), in that order of
//! strength: flags > environment > file > defaults. This module owns the schema (the flag
//! structs in [`flags`]: a key is a flag's long name, its variable is the flag's `env`), the file
//! (read, checked, and handed to the parser as the variables it stands for, unless the real
//! environment sets them), `storgo config show` and `init`, and the typed configuration the
//! node is built from ([`NodeConfig`]). It must not start anything.
//!
//! # Layout
//! - [`flags`]: the flag structs (the schema) and the parsers of their values.
//! - [`file`]: the config file — found, read, checked and applied to the environment; the
//!   command line parsed after it; `config init`'s text.
//! - [`show`]: `storgo config show`, every setting and its source.
//! - [`node`]: [`NodeConfig`] and the network configuration built from the flags.
//! - [`error`]: [`ConfigError`] and [`ParseError`].
//!
//! The files import only `error` and `flags`, and `show` reads through `file`; none imports
//! `crate::cli`.

mod error;
mod file;
mod flags;
mod node;
mod show;

pub use error::{ConfigError, ParseError};
pub use file::{
    apply_file, check_text, default_path, file_values, init_text, parse, write_init, Provenance,
};
pub use flags::{parse_duration, parse_multiaddr, parse_size, LimitArgs, NetArgs, NodeArgs};
pub use node::{network, peer_list, NodeConfig, DEFAULT_API_PORT};
pub use show::{effective, render, Setting, Source};
