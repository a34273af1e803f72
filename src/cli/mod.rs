//! The `storgo` command line: parses arguments, opens the store, calls the library, prints.
//!
//! This is the only place that uses `anyhow` and talks to a terminal; it must not contain
//! logic a library user would need (that belongs in `files` or `store`).

mod collection;
mod net;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::content::{ContentId, ConvergenceSecret};
use crate::files::{self, AddOptions};
use crate::store::{PinRecord, Store, StoreOptions};

pub use crate::config::{parse_duration, parse_size, LimitArgs, NetArgs, NodeArgs};

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
    /// Read settings from this TOML file (default: config.toml in the platform config dir;
    /// `storgo config init` writes one). Flags and STORGO_* variables override it.
    #[arg(long, global = true, env = "STORGO_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How log lines are written: for people, or one JSON object a line for machines.
    #[arg(long, global = true, env = "STORGO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Prints every setting `storgo node` would start with, and where each came from (flag,
    /// env, file or default).
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Writes a commented config file with every key at its default (to --config FILE, or
    /// the platform's config dir).
    Init {
        /// Replace a file that exists.
        #[arg(long)]
        force: bool,
    },
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: join the network, serve and provide what this data dir holds.
    Node(NodeArgs),
    /// Fetch an item from the network by content ID (through the running node, or a
    /// temporary one).
    Fetch {
        id: String,
        /// Also write it to PATH (a file or a folder).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Do not pin (or provide) it afterwards.
        #[arg(long)]
        no_pin: bool,
        /// Give up after this long without progress (`90s`, `5m`; a bare number is seconds).
        #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
        timeout: Duration,
        /// Give up when the whole fetch has taken this long (default: never, while it makes
        /// progress).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        deadline: Option<Duration>,
        #[command(flatten)]
        net: NetArgs,
    },
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
        /// Store every chunk as it is (by default chunks that shrink are zstd-compressed;
        /// media and archives are detected and left alone).
        #[arg(long)]
        no_compress: bool,
        /// Copies the network keeps of this item (default: the node's --replication).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16))]
        replicas: Option<u8>,
        /// Wait until that many peers hold it whole, showing progress; fail, naming how many
        /// did, if they do not within --wait-timeout.
        #[arg(long)]
        wait_replicas: bool,
        /// How long --wait-replicas waits (e.g. 90s, 5m).
        #[arg(long, default_value = "2m", value_name = "DURATION")]
        wait_timeout: humantime::Duration,
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
    /// List pinned items (with --replicas: the replicas this node holds for the network).
    Ls {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        replicas: bool,
    },
    /// Pin an item (fetching it first when a node runs and it is not all here).
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
        /// Also compute the SHA-256 of a file's contents (reads the whole file), to compare
        /// with a published checksum.
        #[arg(long)]
        sha256: bool,
        #[arg(long)]
        json: bool,
    },
    /// Prints a one-time login URL for the running node's web page.
    Web,
    /// Exits 0 if the running node answers /healthz (a container's HEALTHCHECK).
    #[command(hide = true)]
    Healthcheck,
    /// The configuration: what a node would start with, and a commented file to start from.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The running node's PeerId and addresses.
    Id {
        #[arg(long)]
        json: bool,
    },
    /// Peers the running node is connected to (with --banned: the peers it refuses, why and
    /// until when).
    Peers {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        banned: bool,
    },
    /// Lifts a peer's ban (see `peers --banned`).
    Unban { peer: String },
    /// Makes a key: `swarm` writes a private network's key (IPFS swarm.key format, mode 0600)
    /// to PATH, by default DATA_DIR/swarm.key; give the same file to every node with
    /// `--swarm-key`.
    Keygen {
        #[arg(value_parser = ["swarm"])]
        kind: String,
        path: Option<PathBuf>,
    },
    /// PeerIds that provide an item, one per line.
    Providers { id: String },
    /// Routing-table size, records provided, bytes stored and served, replication health.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Shared collections: make one, add items, publish versions, read its history.
    #[command(subcommand)]
    Collection(collection::CollectionCommand),
    /// Follows a collection: keeps its newest version; with --auto-fetch, pins every item
    /// as it appears (a laptop keeps the whole course, offline).
    Follow {
        id: String,
        #[arg(long)]
        auto_fetch: bool,
        #[arg(long)]
        json: bool,
    },
    /// Stops following a collection (what was pinned stays pinned).
    Unfollow { id: String },
    /// Searches titles, tags and notes of every followed collection, locally.
    Search {
        words: Vec<String>,
        /// Only items with this tag.
        #[arg(long)]
        tag: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Run a repair round now: every item pinned or held gets its R replicas on the peers
    /// closest to it, replicas no longer needed here are handed off, and provider records go
    /// to peers newly among their items' closest.
    Repair {
        #[arg(long)]
        json: bool,
    },
}

/// Writes a new swarm key readable by its owner only; never overwrites one.
fn keygen_swarm(path: &Path) -> Result<()> {
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

/// Entry point of the binary: runs the command and turns errors into one line and an exit
/// status.
pub fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The file first (it becomes the variables it stands for), then flags over both.
    // (`config init` makes the file: it need not exist yet.)
    let init = args.windows(2).any(|w| w[0] == "config" && w[1] == "init");
    let provenance =
        match crate::config::apply_file(&<Cli as clap::CommandFactory>::command(), &args) {
            Ok(p) => p,
            Err(crate::config::ConfigError::Read { source, .. })
                if init && source.kind() == std::io::ErrorKind::NotFound =>
            {
                crate::config::Provenance::default()
            }
            Err(e) => {
                eprintln!("storgo: {e}");
                return std::process::ExitCode::from(2);
            }
        };
    let cli: Cli = match crate::config::parse(args.clone(), &provenance) {
        Ok(c) => c,
        Err(crate::config::ParseError::Config(e)) => {
            eprintln!("storgo: {e}");
            return std::process::ExitCode::from(2);
        }
        Err(crate::config::ParseError::Clap(e)) => e.exit(),
    };
    if let Command::Config(c) = &cli.command {
        return match config_command(&cli, c, &args, &provenance) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("storgo: {}", one_line(&e));
                std::process::ExitCode::FAILURE
            }
        };
    }
    // A node is a long-running service: say what it does. One-shot commands stay quiet.
    init_tracing(
        if matches!(cli.command, Command::Node(_)) {
            "warn,storgo=info"
        } else {
            "warn"
        },
        cli.log_format,
    );
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

fn config_command(
    cli: &Cli,
    c: &ConfigCommand,
    args: &[std::ffi::OsString],
    provenance: &crate::config::Provenance,
) -> Result<()> {
    match c {
        ConfigCommand::Show { json } => {
            let settings = match crate::config::effective::<Cli>(args, provenance) {
                Ok(s) => s,
                Err(crate::config::ParseError::Config(e)) => return Err(e.into()),
                Err(crate::config::ParseError::Clap(e)) => {
                    bail!(
                        "{}",
                        e.to_string()
                            .lines()
                            .next()
                            .unwrap_or("")
                            .trim_start_matches("error: ")
                    )
                }
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&settings)?);
            } else {
                if let Some(f) = &provenance.file {
                    println!("# config file: {}", f.display());
                }
                print!("{}", crate::config::render(&settings));
            }
        }
        ConfigCommand::Init { force } => {
            let path = match &cli.config {
                Some(p) => p.clone(),
                None => crate::config::default_path()
                    .context("no config dir on this platform; give --config FILE")?,
            };
            crate::config::write_init::<Cli>(&path, *force)?;
            println!("{}", path.display());
        }
    }
    Ok(())
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

fn init_tracing(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => logs.try_init(),
        // Fields (`peer`, `cid`, `bytes`…) at the top level, beside `level` and `message`.
        LogFormat::Json => logs.json().flatten_event(true).try_init(),
    };
}

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

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    // One thread: the node's work is I/O-bound and current-thread was the faster runtime on
    // two cores; hashing and sealing run on their own threads anyway.
    // Few blocking threads: each would keep its own malloc arena of freed block buffers, and
    // the node's memory would grow with the number of threads rather than the work in flight.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(cli))
}

async fn run_async(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Node(args) => return net::run_node(&cli, args).await,
        Command::Fetch {
            id,
            output,
            no_pin,
            timeout,
            deadline,
            net,
        } => {
            return net::fetch(
                &cli,
                id,
                output.as_deref(),
                *no_pin,
                (*timeout, *deadline),
                net,
            )
            .await
        }
        Command::Id { json } => return net::id(&cli, *json).await,
        Command::Web => return net::web(&cli).await,
        Command::Healthcheck => return net::healthcheck(&cli).await,
        Command::Peers { json, banned } => {
            return if *banned {
                net::banned(&cli, *json).await
            } else {
                net::peers(&cli, *json).await
            }
        }
        Command::Unban { peer } => return net::unban(&cli, peer).await,
        Command::Keygen { path, .. } => {
            let path = match path {
                Some(p) => p.clone(),
                None => data_dir(&cli)?.join("swarm.key"),
            };
            return keygen_swarm(&path);
        }
        Command::Providers { id } => return net::providers(&cli, id).await,
        Command::Status { json } => return net::status(&cli, *json).await,
        Command::Repair { json } => return net::repair(&cli, *json).await,
        Command::Collection(c) => return collection::run(&cli, c).await,
        Command::Follow {
            id,
            auto_fetch,
            json,
        } => return collection::follow(&cli, id, *auto_fetch, *json).await,
        Command::Unfollow { id } => return collection::unfollow(&cli, id).await,
        Command::Search {
            words,
            tag,
            limit,
            json,
        } => {
            let api = net::need_api(&cli).await?;
            return collection::search(&api, words, tag.as_deref(), *limit, *json).await;
        }
        _ => {}
    }
    if let Some(api) = crate::api::client::ApiClient::discover(&data_dir(&cli)?).await {
        return net::through_node(&cli, &api).await;
    }
    run_local(&cli)
}

/// The store commands, run directly on the data dir when no node owns it.
fn run_local(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Add {
            path,
            recursive,
            name,
            no_pin,
            no_compress,
            wait_replicas,
            replicas,
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
                compress: !no_compress,
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
        Command::Cat { id } => {
            let id = parse_id(id)?;
            let store = open_store(cli)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            files::cat(&store, &id, &mut out, &|_| {})?;
        }
        Command::Get { id, output } => {
            let id = parse_id(id)?;
            let store = open_store(cli)?;
            // The root manifest alone names the item and its size; no need to walk it all.
            let (name, total) = match files::load_manifest(&store, id.root, &id.key)? {
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
                print_pins(&store.pins()?, *json)?;
            }
        }
        Command::Pin { id } => {
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
        Command::Stat { id, sha256, json } => {
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

/// Where `get` writes when not told: the item's own name, or a prefix of its ID.
fn default_output(id: &ContentId, name: &str) -> PathBuf {
    if name.is_empty() {
        PathBuf::from(id.to_string().chars().take(16).collect::<String>())
    } else {
        PathBuf::from(name)
    }
}

fn print_gc(r: &crate::store::GcReport, json: bool) -> Result<()> {
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

fn print_verify(r: &crate::store::VerifyReport, json: bool, dir: &Path) -> Result<()> {
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
        for (id, n) in &r.damaged_items {
            println!("damaged item {id}: {n} blocks missing");
        }
        for (id, n) in &r.incomplete_items {
            println!("still being fetched: {id} ({n} blocks to come)");
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

fn print_stat(st: &files::ItemStat, json: bool) -> Result<()> {
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

fn print_replicas(replicas: &[crate::store::ReplicaRecord], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(replicas)?)?;
    } else {
        for r in replicas {
            let state = if r.complete { "whole" } else { "arriving" };
            writeln!(
                out,
                "{}\t{state}\tR={}\t{} bytes\tsince {}",
                r.root,
                r.replication,
                r.bytes,
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(r.since)
                )
            )?;
        }
    }
    Ok(())
}

fn print_pins(pins: &[PinRecord], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(pins)?)?;
    } else {
        for p in pins {
            let kind = if p.partial {
                format!("{} (partial)", p.kind)
            } else {
                p.kind.clone()
            };
            writeln!(out, "{}\t{}\t{}\t{}", p.id, kind, p.size, p.name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_size};
    use std::time::Duration;

    #[test]
    fn file_text_is_checked_key_by_key_and_value_by_value() {
        assert_eq!(crate::config::check_text::<super::Cli>(""), Ok(()));
        assert_eq!(
            crate::config::check_text::<super::Cli>("replication = 5\nno-mdns = true\n"),
            Ok(())
        );
        assert_eq!(
            crate::config::check_text::<super::Cli>(
                "bootstrap = [\"/ip4/10.0.0.1/tcp/4815\"]\nscrub-rate = \"1MiB\"\n"
            ),
            Ok(())
        );
        for (text, says) in [
            ("replication = 300", "300 is not in 1..=16"),
            ("replicaton = 3", "unknown key \"replicaton\""),
            ("[node]\nreplication = 3", "unknown key \"node\""),
            ("replication = [[1]]", "a nested list"),
            ("when = 1979-05-27", "unknown key"),
            ("api = 1979-05-27", "a date"),
            ("replication =", "not TOML"),
        ] {
            let e = crate::config::check_text::<super::Cli>(text).expect_err(text);
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_file_config_init_writes_is_valid_and_changes_nothing() {
        let text = crate::config::init_text::<super::Cli>();
        assert_eq!(crate::config::check_text::<super::Cli>(&text), Ok(()));
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = ") && !l.ends_with("= \"\"") && !l.ends_with("= []"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(uncommented.contains("replication = 3"), "{uncommented}");
        assert_eq!(
            crate::config::check_text::<super::Cli>(&uncommented),
            Ok(()),
            "every default, uncommented"
        );
    }

    #[test]
    fn sizes_and_durations_as_people_write_them() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
    }
}
