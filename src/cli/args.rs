//! The command line's shape: the clap structs of `storgo` and its subcommands (the global
//! flags, [`Command`], `config`'s and `collection`'s subcommands) and the flag groups it
//! takes from [`config`](crate::config).
//!
//! A leaf of `cli`: every command file reads its arguments from here and it imports none of
//! them. It must not run anything; help texts here are what `storgo --help` prints.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

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
        /// Print JSON instead of text.
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
    Node(Box<NodeArgs>),
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
        /// A file, a folder (with -r), or `-` for stdin.
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Add a folder and everything in it.
        #[arg(short, long)]
        recursive: bool,
        /// Name to record when reading stdin (what `ls` and the page show for it).
        #[arg(long, default_value = "stdin")]
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
        /// How the network keeps this item: `replicas:R` (R copies) or `ec:K+M` (stripes of K
        /// data and M parity shards on K+M peers; survives any M of them gone), default: the
        /// node's --durability.
        #[arg(long, value_name = "replicas:R|ec:K+M", conflicts_with = "replicas")]
        durability: Option<crate::content::stripe::Durability>,
        /// Wait until that many peers hold it whole, showing progress; fail, naming how many
        /// did, if they do not within --wait-timeout.
        #[arg(long)]
        wait_replicas: bool,
        /// How long --wait-replicas waits (e.g. 90s, 5m).
        #[arg(long, default_value = "2m", value_name = "DURATION")]
        wait_timeout: humantime::Duration,
    },
    /// Write a file's bytes to stdout.
    Cat {
        /// The item's content ID (`sg1…`, as `add` printed it).
        id: String,
        /// Through a running node, give up fetching what is not here after this long
        /// without progress (default 60 s).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        timeout: Option<Duration>,
    },
    /// Write a file or folder to disk, restoring modes and mtimes.
    Get {
        /// The item's content ID (`sg1…`, as `add` printed it).
        id: String,
        /// Where to write it (default: its own name in the current directory).
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Through a running node, give up fetching what is not here after this long
        /// without progress (default 60 s).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        timeout: Option<Duration>,
    },
    /// List pinned items (with --replicas: the replicas this node holds for the network).
    Ls {
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
        /// List the copies this node keeps for other people's items instead of its pins.
        #[arg(long)]
        replicas: bool,
    },
    /// Pin an item (fetching it first when a node runs and it is not all here).
    Pin {
        /// The item's content ID (`sg1…`, as `add` printed it).
        id: String,
        /// Give up fetching what is not here after this long without progress (default:
        /// 60 s).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        timeout: Option<Duration>,
    },
    /// Unpin an item (its blocks go at the next gc unless something else needs them).
    Unpin {
        /// The item's content ID (`sg1…`, as `add` printed it).
        id: String,
    },
    /// Remove blocks no pinned item needs.
    Gc {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every block; move corrupt ones aside; check pinned items are complete.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an item's name, size, and how many of its chunks are held here.
    Stat {
        /// The item's content ID (`sg1…`, as `add` printed it).
        id: String,
        /// Also compute the SHA-256 of a file's contents (reads the whole file), to compare
        /// with a published checksum.
        #[arg(long)]
        sha256: bool,
        /// Ask the network what it holds of the item: its holders and, for an `ec:K+M` item,
        /// the shards alive per stripe, the worst stripe and its margin (needs a running node).
        #[arg(long)]
        health: bool,
        /// Print JSON instead of text.
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
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Peers the running node is connected to (with --banned: the peers it refuses, why and
    /// until when).
    Peers {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        banned: bool,
    },
    /// Lifts a peer's ban (see `peers --banned`).
    Unban {
        /// The banned peer's PeerId (`12D3KooW…`).
        peer: String,
    },
    /// Connects the running node to peers (as `--bootstrap` does at start), e.g.
    /// `storgo connect /ip4/192.0.2.7/tcp/4815/p2p/12D3KooW…`.
    Connect {
        /// Addresses ending in /p2p/PEERID.
        #[arg(required = true, value_name = "MULTIADDR")]
        addrs: Vec<String>,
    },
    /// Makes a key: `swarm` writes a private network's key (IPFS swarm.key format, mode 0600)
    /// to PATH, by default DATA_DIR/swarm.key; give the same file to every node with
    /// `--swarm-key`.
    Keygen {
        #[arg(value_parser = ["swarm"])]
        kind: String,
        path: Option<PathBuf>,
    },
    /// PeerIds that provide an item, one per line.
    Providers {
        /// The item's content ID (`sg1…`).
        id: String,
    },
    /// Routing-table size, records provided, bytes stored and served, replication health.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Shared collections: make one, add items, publish versions, read its history.
    #[command(subcommand)]
    Collection(CollectionCommand),
    /// Follows a collection: keeps its newest version; with --auto-fetch, pins every item
    /// as it appears (a laptop keeps the whole course, offline).
    Follow {
        id: String,
        #[arg(long)]
        auto_fetch: bool,
        /// Print JSON instead of text.
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
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a repair round now: every item pinned or held gets its R replicas on the peers
    /// closest to it, replicas no longer needed here are handed off, and provider records go
    /// to peers newly among their items' closest.
    Repair {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Makes a collection and prints its ID to share. With --of, takes up a collection whose
    /// owner delegated to this node instead.
    New {
        name: String,
        /// Seal its listings: only holders of the ID (which carries the read key) read them.
        #[arg(long)]
        private: bool,
        /// A collection ID whose owner ran `collection delegate NAME <this node's PeerId>`.
        #[arg(long, value_name = "COLLECTION-ID")]
        of: Option<String>,
    },
    /// Adds an item to a collection's draft (published by `collection publish`).
    Add {
        name: String,
        id: String,
        #[arg(long)]
        title: String,
        /// Comma-separated tags.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Removes an item from a collection's draft.
    Rm { name: String, id: String },
    /// Publishes the draft as the next version: to the DHT and to followers.
    Publish {
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The verified history of a collection (by ID or local name), newest first.
    Log {
        collection: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A collection's newest version (by ID or local name).
    Show {
        collection: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lets another node (its PeerId) or key (64 hex digits) publish the collection, from the
    /// next version on.
    Delegate { name: String, key: String },
    /// Gives a private collection a new read key from the next version on, to remove a
    /// member: prints the new ID to share with everyone who stays. What was published before
    /// stays readable to whoever had the old ID.
    Rotate { name: String },
    /// Collections this node publishes or follows.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::Cli;

    #[test]
    fn file_text_is_checked_key_by_key_and_value_by_value() {
        assert_eq!(crate::config::check_text::<Cli>(""), Ok(()));
        assert_eq!(
            crate::config::check_text::<Cli>("replication = 5\nno-mdns = true\n"),
            Ok(())
        );
        assert_eq!(
            crate::config::check_text::<Cli>(
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
            let e = crate::config::check_text::<Cli>(text).expect_err(text);
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_file_config_init_writes_is_valid_and_changes_nothing() {
        let text = crate::config::init_text::<Cli>();
        assert_eq!(crate::config::check_text::<Cli>(&text), Ok(()));
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(uncommented.contains("replication = 3"), "{uncommented}");
        assert!(
            !uncommented.contains("= \"\""),
            "every setting has an example that parses: {uncommented}"
        );
        assert_eq!(
            crate::config::check_text::<Cli>(&uncommented),
            Ok(()),
            "every line, uncommented"
        );
        // Each on its own too (two settings may not be valid together, one alone must be).
        for line in uncommented.lines() {
            assert_eq!(crate::config::check_text::<Cli>(line), Ok(()), "{line}");
        }
    }
}
