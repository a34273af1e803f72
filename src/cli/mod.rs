//! The `storgo` command line: parses arguments, opens the store, calls the library, prints.
//!
//! This is the only place that uses `anyhow` and talks to a terminal; it must not contain
//! logic a library user would need (that belongs in `files` or `store`).
//!
//! This file is the dispatch: the entry point, `config`, logging, and which file runs each
//! command. The command files ([`local`], [`remote`], [`node`], [`fetch`], [`peers`],
//! [`collection`]) never import each other; what they share is in the leaves [`args`] (the
//! clap structs), [`resolve`] (data dir, store, the running node, IDs and paths) and
//! [`print`] (output).

mod args;
mod collection;
mod fetch;
mod local;
mod node;
mod peers;
mod print;
mod remote;
mod resolve;

use anyhow::{bail, Context, Result};

use crate::files;

pub use args::{
    parse_duration, parse_size, Cli, CollectionCommand, Command, ConfigCommand, LimitArgs,
    LogFormat, NetArgs, NodeArgs,
};
pub use print::report_skipped;
pub use resolve::data_dir;

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
    // kad's periodic bootstrap warns on every tick while the routing table is empty (a first
    // node, a LAN not found yet), which storgo's own status says better: its warnings are
    // shown only when asked for (RUST_LOG).
    init_tracing(
        if matches!(cli.command, Command::Node(_)) {
            "warn,storgo=info,libp2p_kad=error"
        } else {
            "warn,libp2p_kad=error"
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
    // Colours only for a person at a terminal: a log file or `docker logs` gets plain text
    // (NO_COLOR is honoured too: https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => logs.try_init(),
        // Fields (`peer`, `cid`, `bytes`…) at the top level, beside `level` and `message`.
        LogFormat::Json => logs.json().flatten_event(true).try_init(),
    };
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
        Command::Node(args) => return node::run_node(&cli, args).await,
        Command::Fetch {
            id,
            output,
            no_pin,
            timeout,
            deadline,
            net,
        } => {
            return fetch::fetch(
                &cli,
                id,
                output.as_deref(),
                *no_pin,
                (*timeout, *deadline),
                net,
            )
            .await
        }
        Command::Id { json } => return peers::id(&cli, *json).await,
        Command::Web => return remote::web(&cli).await,
        Command::Healthcheck => return remote::healthcheck(&cli).await,
        Command::Peers { json, banned } => {
            return if *banned {
                peers::banned(&cli, *json).await
            } else {
                peers::peers(&cli, *json).await
            }
        }
        Command::Unban { peer } => return peers::unban(&cli, peer).await,
        Command::Connect { addrs } => return peers::connect(&cli, addrs).await,
        Command::Keygen { path, .. } => {
            let path = match path {
                Some(p) => p.clone(),
                None => data_dir(&cli)?.join("swarm.key"),
            };
            return local::keygen_swarm(&path);
        }
        Command::Providers { id } => return peers::providers(&cli, id).await,
        Command::Status { json } => return remote::status(&cli, *json).await,
        Command::Repair { json } => return remote::repair(&cli, *json).await,
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
            let api = resolve::need_api(&cli).await?;
            return collection::search(&api, words, tag.as_deref(), *limit, *json).await;
        }
        _ => {}
    }
    if let Some(api) = crate::api::client::ApiClient::discover(&data_dir(&cli)?).await {
        return remote::through_node(&cli, &api).await;
    }
    local::run_local(&cli)
}
