//! What a command's arguments stand for on this machine: the data dir and its store, the node
//! running on it (found through `DATA_DIR/api`), content IDs, and paths made absolute and
//! encoded for the node's URLs.
//!
//! A leaf under the command files: they all resolve their arguments here and it imports none
//! of them (only [`args`](super::args)). It must not print or run a command.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::args::Cli;
use crate::api::client::ApiClient;
use crate::content::{ContentId, ConvergenceSecret};
use crate::store::{Store, StoreOptions};

/// Resolves the data dir from the flag, the environment or the platform default.
pub fn data_dir(cli: &Cli) -> Result<PathBuf> {
    match &cli.data_dir {
        Some(d) => {
            // A data dir on a disk that is not mounted must not become a new, empty store
            // (with a new identity) on the disk below: storgo makes the last folder, never
            // the path to it.
            if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !d.exists() && !parent.is_dir() {
                    bail!(
                        "data dir {}: its parent folder {} does not exist (a disk not mounted?); create it first",
                        d.display(),
                        parent.display()
                    );
                }
            }
            Ok(d.clone())
        }
        None => Store::default_dir().context("no home directory found; pass --data-dir"),
    }
}

pub(super) fn store_options(cli: &Cli) -> Result<StoreOptions> {
    let convergence_secret =
        match &cli.convergence_secret {
            Some(hex) => Some(ConvergenceSecret::from_hex(hex).context(
                "--convergence-secret / STORGO_CONVERGENCE_SECRET must be 64 hex digits",
            )?),
            None => None,
        };
    Ok(StoreOptions {
        max_storage: cli.max_storage,
        convergence_secret,
    })
}

pub(super) fn open_store(cli: &Cli) -> Result<Store> {
    let dir = data_dir(cli)?;
    Ok(Store::open(&dir, store_options(cli)?)?)
}

pub(super) fn parse_id(s: &str) -> Result<ContentId> {
    s.parse::<ContentId>()
        .with_context(|| format!("{:?}", truncate(s, 20)))
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// Where `get` writes when not told: the item's own name, or a prefix of its ID.
pub(super) fn default_output(id: &ContentId, name: &str) -> PathBuf {
    if name.is_empty() {
        PathBuf::from(id.to_string().chars().take(16).collect::<String>())
    } else {
        PathBuf::from(name)
    }
}

pub(super) async fn need_api(cli: &Cli) -> Result<ApiClient> {
    let dir = data_dir(cli)?;
    ApiClient::discover(&dir).await.with_context(|| {
        format!(
            "no node is running on {} (start one with `storgo node`)",
            dir.display()
        )
    })
}

/// Paths are resolved here: the node runs with its own working directory.
pub(super) fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

/// A string for a query value: unreserved characters and `/` stay as they are.
pub(super) fn urlencode(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    // Unreserved characters and `/` stay as they are: the node reads a path back.
    const KEEP: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    utf8_percent_encode(s, KEEP).to_string()
}
