//! Output shared by several commands: progress bars, what an add skipped, and the reports of
//! `ls`, `gc`, `verify` and `stat`, printed the same whether the store was opened here or
//! asked through the node.
//!
//! A leaf of `cli`: it formats what it is given and imports no command file. It must not
//! open the store or call the node.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::files;
use crate::store::PinRecord;

/// Each entry an add left out, once, and how many in all.
pub fn report_skipped(skipped: &[files::Skipped]) {
    for s in skipped {
        eprintln!("storgo: skipped {}: {}", s.path, s.why);
    }
    if skipped.len() > 1 {
        eprintln!(
            "storgo: {} entries skipped; the rest was added",
            skipped.len()
        );
    }
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
pub(super) fn progress_bar(total: Option<u64>, verb: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = match total {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    pb.set_message(verb.to_owned());
    pb
}

pub(super) fn print_gc(r: &crate::store::GcReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!(
            "removed {} blocks, freed {} bytes, kept {} blocks ({} of them for adds or fetches in progress)",
            r.removed_blocks, r.freed_bytes, r.kept_blocks, r.kept_for_sessions
        );
        for (id, why) in &r.unwalkable_items {
            println!("cannot walk pinned item {id}: {why}");
        }
    }
    if !r.unwalkable_items.is_empty() {
        bail!(
            "gc removed nothing: {} pinned items cannot be walked, so it cannot tell what they need (run `storgo verify`, then fetch them again or unpin them)",
            r.unwalkable_items.len()
        );
    }
    Ok(())
}

pub(super) fn print_verify(r: &crate::store::VerifyReport, json: bool, dir: &Path) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!(
            "checked {} blocks ({} bytes): {} corrupt, {} missing, {} adopted",
            r.checked_blocks,
            r.checked_bytes,
            r.corrupt.len(),
            r.missing.len(),
            r.adopted
        );
        for c in &r.corrupt {
            println!("corrupt {c} (moved to {})", dir.join("corrupt").display());
        }
        for m in &r.missing {
            println!("missing {m}");
        }
        for i in &r.damaged_items {
            println!("damaged item {}: {} blocks missing", i.id, i.blocks);
        }
        for i in &r.incomplete_items {
            println!(
                "still being fetched: {} ({} blocks to come)",
                i.id, i.blocks
            );
        }
    }
    if !r.is_clean() {
        bail!(
            "verify found problems in {}: {} corrupt, {} missing blocks, {} damaged items",
            dir.display(),
            r.corrupt.len(),
            r.missing.len(),
            r.damaged_items.len()
        );
    }
    Ok(())
}

pub(super) fn print_stat(st: &files::ItemStat, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(st)?);
    } else {
        println!("name: {}", st.name);
        println!("kind: {}", st.kind);
        println!("size: {}", st.size);
        println!("files: {}", st.files);
        println!("chunks: {}", st.chunks);
        println!("chunks held locally: {}", st.chunks_local);
        if let Some(h) = &st.sha256 {
            println!("sha256: {h}");
        }
    }
    Ok(())
}

pub(super) fn print_health(h: &crate::node::ItemHealth, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(h)?);
        return Ok(());
    }
    println!("root: {}", h.root);
    println!("kept as: {}", h.durability);
    for x in &h.holders {
        let state = if x.whole { "whole" } else { "arriving" };
        println!("  {}\t{}\t{state}", x.peer, x.holds);
    }
    if let Some(w) = h.worst_stripe {
        let below = h
            .stripes_alive
            .iter()
            .zip(&h.stripes_need)
            .filter(|(a, n)| a < n)
            .count();
        println!(
            "stripes: {} ({} cannot be read now); worst: stripe {w} with {} of its shards alive, {} needed",
            h.stripes_alive.len(),
            below,
            h.stripes_alive[w],
            h.stripes_need[w]
        );
    }
    if h.margin < 0 {
        println!("margin: none, the item cannot be read from the network now");
    } else {
        let what = if h.worst_stripe.is_some() {
            "shards"
        } else {
            "holders"
        };
        println!("margin: {} more {what} can be lost", h.margin);
    }
    Ok(())
}

pub(super) fn print_replicas(replicas: &[crate::store::ReplicaRecord], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(replicas)?)?;
    } else if replicas.is_empty() {
        eprintln!("no replicas held here for other peers' items");
    } else {
        writeln!(out, "ROOT\tSTATE\tHOLDS\tSIZE\tSINCE")?;
        for r in replicas {
            let state = if r.complete { "whole" } else { "arriving" };
            // A copy of R, or one column (shard) of K+M.
            let holds = match r.shard {
                Some(s) => format!("column {} of {}", s.column, r.replication),
                None => format!("copy (R={})", r.replication),
            };
            writeln!(
                out,
                "{}\t{state}\t{holds}\t{}\t{}",
                r.root,
                bytesize::ByteSize(r.bytes),
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(r.since)
                )
            )?;
        }
    }
    Ok(())
}

pub(super) fn print_pins(pins: &[PinRecord], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(pins)?)?;
        return Ok(());
    }
    if pins.is_empty() {
        eprintln!("nothing pinned here (add a file with `storgo add PATH`)");
        return Ok(());
    }
    // A header and sizes people read; `--json` has the exact bytes.
    writeln!(out, "ID\tKIND\tSIZE\tPINNED\tNAME")?;
    for p in pins {
        let kind = if p.partial {
            format!("{} (partial)", p.kind)
        } else {
            p.kind.clone()
        };
        let pinned = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(p.pinned_at),
        );
        let name = if p.name.is_empty() {
            "(from stdin)"
        } else {
            &p.name
        };
        writeln!(
            out,
            "{}\t{kind}\t{}\t{pinned}\t{name}",
            p.id,
            bytesize::ByteSize(p.size)
        )?;
    }
    Ok(())
}

/// `n` and `noun`, plural unless `n` is 1: "1 peer", "3 peers".
pub(super) fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
