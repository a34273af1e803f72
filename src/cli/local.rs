//! The store commands run directly on the data dir when no node owns it (`add`, `cat`, `get`,
//! `ls`, `pin`, `unpin`, `gc`, `verify`, `stat`), and `keygen`.
//!
//! A node that runs on the data dir owns its store: these run only when none answers (see
//! [`remote`](super::remote) for the same commands through it). It must not talk to a node.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};

use super::args::{Cli, Command};
use super::print::{
    print_gc, print_pins, print_replicas, print_stat, print_verify, progress_bar, report_skipped,
};
use super::resolve::{default_output, open_store, parse_id};
use crate::files::{self, AddOptions};

/// The store commands, run directly on the data dir when no node owns it.
pub(super) fn run_local(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Add {
            path,
            recursive,
            name,
            no_pin,
            no_compress,
            wait_replicas,
            replicas,
            durability,
            ..
        } => {
            if *wait_replicas {
                bail!(
                    "--wait-replicas needs a running node on this data dir (start `storgo node`)"
                );
            }
            let store = open_store(cli)?;
            let opts = AddOptions {
                recursive: *recursive,
                pin: !no_pin,
                replicas: *replicas,
                durability: *durability,
                compress: !no_compress,
                internal: false,
            };
            let added = if path.as_os_str() == "-" {
                let pb = progress_bar(None, "adding");
                let r = files::add_reader(&store, std::io::stdin(), name, &opts, &|b| {
                    pb.set_position(b)
                });
                pb.finish_and_clear();
                r?
            } else {
                let total = if *recursive {
                    dir_size(path)
                } else {
                    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
                };
                let pb = progress_bar(Some(total), "adding");
                let r = files::add_path(&store, path, &opts, &|b| pb.set_position(b));
                pb.finish_and_clear();
                r?
            };
            report_skipped(&added.skipped);
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", added.id)?;
        }
        Command::Cat { id, .. } => {
            let id = parse_id(id)?;
            let store = open_store(cli)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            files::cat(&store, &id, &mut out, &|_| {})?;
        }
        Command::Get { id, output, .. } => {
            let id = parse_id(id)?;
            let store = open_store(cli)?;
            // The root manifest alone names the item and its size; no need to walk it all.
            let (name, total) = match files::load_root(&store, &id)? {
                crate::content::Manifest::File(f) => (f.name, f.size),
                crate::content::Manifest::Dir(d) => (d.name, d.size),
                _ => (String::new(), 0),
            };
            let dest = match output {
                Some(p) => p.clone(),
                None => default_output(&id, &name),
            };
            let pb = progress_bar(Some(total), "writing");
            let r = files::get(&store, &id, &dest, &|b| pb.set_position(b));
            pb.finish_and_clear();
            r?;
            eprintln!("storgo: wrote {}", dest.display());
        }
        Command::Ls { json, replicas } => {
            let store = open_store(cli)?;
            if *replicas {
                print_replicas(&store.replicas()?, *json)?;
            } else {
                print_pins(&store.user_pins()?, *json)?;
            }
        }
        Command::Pin { id, .. } => {
            let id = parse_id(id)?;
            let store = open_store(cli)?;
            files::pin_complete(&store, &id)?;
        }
        Command::Unpin { id } => {
            let id = parse_id(id)?;
            let store = open_store(cli)?;
            let r = store.unpin(&id)?;
            eprintln!(
                "storgo: unpinned {} (run `storgo gc` to free its blocks)",
                r.name
            );
        }
        Command::Gc { json } => {
            let store = open_store(cli)?;
            print_gc(&store.gc()?, *json)?;
        }
        Command::Verify { json } => {
            let store = open_store(cli)?;
            print_verify(&store.verify()?, *json, store.dir())?;
        }
        Command::Stat {
            id,
            sha256,
            health,
            json,
        } => {
            if *health {
                bail!("--health asks the network: it needs a running node on this data dir (start `storgo node`)");
            }
            let id = parse_id(id)?;
            let store = open_store(cli)?;
            let mut st = files::stat(&store, &id)?;
            if *sha256 {
                st.sha256 = Some(hex::encode(files::sha256(&store, &id)?));
            }
            print_stat(&st, *json)?;
        }
        _ => bail!("this command needs a running node"),
    }
    Ok(())
}

fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// Writes a new swarm key readable by its owner only; never overwrites one.
pub(super) fn keygen_swarm(path: &Path) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("writing swarm key {}: {e}", path.display()))?;
    f.write_all(crate::network::new_swarm_key().as_bytes())?;
    f.sync_all()?;
    println!("{}", path.display());
    Ok(())
}
