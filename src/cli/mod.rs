//! The `storgo` command line: parses arguments, opens the store, calls the library, prints.
//!
//! This is the only place that uses `anyhow` and talks to a terminal; it must not contain
//! logic a library user would need (that belongs in `files` or `store`).

mod size;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::content::{ContentId, ConvergenceSecret};
use crate::files::{self, AddOptions};
use crate::store::{PinRecord, Store, StoreOptions};

pub use size::parse_size;

/// storgo: a peer-to-peer file store. Add a file or folder, fetch it anywhere by one ID.
#[derive(Debug, Parser)]
#[command(name = "storgo", version, about, long_about = None)]
pub struct Cli {
    /// Data dir (blocks, index, keys). Default: the platform data dir.
    #[arg(long, global = true, env = "STORGO_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Refuse writes that would take stored blocks past SIZE (e.g. 20GiB, 500MB).
    #[arg(long, global = true, env = "STORGO_MAX_STORAGE", value_name = "SIZE", value_parser = parse_size)]
    pub max_storage: Option<u64>,
    /// Convergence secret (64 hex digits) shared by nodes that should dedupe each other's
    /// files; overrides the data dir's own. Best set in the environment, not on a command line.
    #[arg(
        long,
        global = true,
        env = "STORGO_CONVERGENCE_SECRET",
        hide_env_values = true,
        value_name = "HEX"
    )]
    pub convergence_secret: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add a file (or with -r a folder; `-` for stdin); prints its content ID last.
    Add {
        path: PathBuf,
        /// Add a folder and everything in it.
        #[arg(short, long)]
        recursive: bool,
        /// Name to record when reading stdin.
        #[arg(long, default_value = "")]
        name: String,
        /// Do not pin (the blocks go at the next gc).
        #[arg(long)]
        no_pin: bool,
    },
    /// Write a file's bytes to stdout.
    Cat { id: String },
    /// Write a file or folder to disk, restoring modes and mtimes.
    Get {
        id: String,
        /// Where to write it (default: its own name in the current directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// List pinned items.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Pin an item held here.
    Pin { id: String },
    /// Unpin an item (its blocks go at the next gc unless something else needs them).
    Unpin { id: String },
    /// Remove blocks no pinned item needs.
    Gc {
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every block; move corrupt ones aside; check pinned items are complete.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Show an item's name, size, and how many of its chunks are held here.
    Stat {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// Entry point of the binary: runs the command and turns errors into one line and an exit
/// status.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<files::FilesError>()
                    .is_some_and(|f| f.is_broken_pipe())
            }) {
                return std::process::ExitCode::SUCCESS;
            }
            eprintln!("storgo: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves the data dir from the flag, the environment or the platform default.
pub fn data_dir(cli: &Cli) -> Result<PathBuf> {
    match &cli.data_dir {
        Some(d) => Ok(d.clone()),
        None => Store::default_dir().context("no home directory found; pass --data-dir"),
    }
}

fn store_options(cli: &Cli) -> Result<StoreOptions> {
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

fn open_store(cli: &Cli) -> Result<Store> {
    let dir = data_dir(cli)?;
    Ok(Store::open(&dir, store_options(cli)?)?)
}

fn parse_id(s: &str) -> Result<ContentId> {
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

/// A progress bar on stderr when it is a terminal, hidden otherwise.
fn progress_bar(total: Option<u64>, verb: &str) -> ProgressBar {
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

pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Add {
            path,
            recursive,
            name,
            no_pin,
        } => {
            let store = open_store(&cli)?;
            let opts = AddOptions {
                recursive: *recursive,
                pin: !no_pin,
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
            for s in &added.skipped {
                eprintln!("storgo: skipped {s} (not a regular file or directory)");
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", added.id)?;
        }
        Command::Cat { id } => {
            let id = parse_id(id)?;
            let store = open_store(&cli)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            files::cat(&store, &id, &mut out, &|_| {})?;
        }
        Command::Get { id, output } => {
            let id = parse_id(id)?;
            let store = open_store(&cli)?;
            let dest = match output {
                Some(p) => p.clone(),
                None => {
                    let st = files::stat(&store, &id)?;
                    if st.name.is_empty() {
                        PathBuf::from(truncate(&id.to_string(), 16).trim_end_matches('…'))
                    } else {
                        PathBuf::from(st.name)
                    }
                }
            };
            let total = files::stat(&store, &id).map(|s| s.size).ok();
            let pb = progress_bar(total, "writing");
            let r = files::get(&store, &id, &dest, &|b| pb.set_position(b));
            pb.finish_and_clear();
            r?;
            eprintln!("storgo: wrote {}", dest.display());
        }
        Command::Ls { json } => {
            let store = open_store(&cli)?;
            print_pins(&store.pins()?, *json)?;
        }
        Command::Pin { id } => {
            let id = parse_id(id)?;
            let store = open_store(&cli)?;
            pin_local(&store, &id)?;
        }
        Command::Unpin { id } => {
            let id = parse_id(id)?;
            let store = open_store(&cli)?;
            let r = store.unpin(&id)?;
            eprintln!(
                "storgo: unpinned {} (run `storgo gc` to free its blocks)",
                r.name
            );
        }
        Command::Gc { json } => {
            let store = open_store(&cli)?;
            let r = store.gc()?;
            if *json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "removed {} blocks, freed {} bytes, kept {} blocks",
                    r.removed_blocks, r.freed_bytes, r.kept_blocks
                );
            }
        }
        Command::Verify { json } => {
            let store = open_store(&cli)?;
            let r = store.verify()?;
            if *json {
                println!("{}", serde_json::to_string(&r)?);
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
                    println!(
                        "corrupt {c} (moved to {})",
                        store.dir().join("corrupt").display()
                    );
                }
                for m in &r.missing {
                    println!("missing {m}");
                }
                for (id, n) in &r.damaged_items {
                    println!("damaged item {id}: {n} blocks missing");
                }
            }
            if !r.is_clean() {
                bail!(
                    "verify found problems in {}: {} corrupt, {} missing blocks, {} damaged items",
                    store.dir().display(),
                    r.corrupt.len(),
                    r.missing.len(),
                    r.damaged_items.len()
                );
            }
        }
        Command::Stat { id, json } => {
            let id = parse_id(id)?;
            let store = open_store(&cli)?;
            let st = files::stat(&store, &id)?;
            if *json {
                println!("{}", serde_json::to_string(&st)?);
            } else {
                println!("name: {}", st.name);
                println!("kind: {}", st.kind);
                println!("size: {}", st.size);
                println!("files: {}", st.files);
                println!("chunks: {}", st.chunks);
                println!("chunks held locally: {}", st.chunks_local);
            }
        }
    }
    Ok(())
}

/// Pins an item whose blocks are all held here.
pub fn pin_local(store: &Store, id: &ContentId) -> Result<PinRecord> {
    let st = files::stat(store, id)?;
    if st.chunks_local < st.chunks {
        bail!(
            "{} is not complete here ({} of {} chunks held); fetch it first",
            id,
            st.chunks_local,
            st.chunks
        );
    }
    let rec = PinRecord {
        id: id.to_string(),
        name: st.name,
        kind: st.kind.into(),
        size: st.size,
        pinned_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        partial: false,
    };
    store.pin(&rec)?;
    Ok(rec)
}

fn print_pins(pins: &[PinRecord], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(pins)?)?;
    } else {
        for p in pins {
            writeln!(out, "{}\t{}\t{}\t{}", p.id, p.kind, p.size, p.name)?;
        }
    }
    Ok(())
}
