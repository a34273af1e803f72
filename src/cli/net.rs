//! The commands that involve a node: `node`, `fetch`, `id`, `peers`, `providers`, `status`,
//! and the store commands sent through a running node's API.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{
    data_dir, default_output, open_store, parse_id, print_gc, print_pins, print_replicas,
    print_stat, print_verify, progress_bar, Cli, Command, NetArgs, NodeArgs,
};
use crate::api::client::ApiClient;
use crate::api::jobs::{Job, JobState};
use crate::api::{self, AddRequest, AddResponse, GetRequest, Status};
use crate::files::ItemStat;
use crate::network::NetworkConfig;
use crate::node::swarm::reputation;
use crate::node::{self, Ban, FetchOptions, FetchReport, Node, NodeInfo, PeerInfo};
use crate::store::{GcReport, PinRecord, VerifyReport};

fn network_config(net: &NetArgs, dht_server: bool) -> Result<NetworkConfig> {
    Ok(crate::config::network(net, dht_server)?)
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled: a signal that comes right after the node says it is ready (a service manager,
/// a test) must stop it cleanly, not kill it with the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn first(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    let term = first(signal(SignalKind::terminate()).ok());
    let int = first(signal(SignalKind::interrupt()).ok());
    async move {
        tokio::select! {
            _ = term => {}
            _ = int => {}
        }
    }
}

pub async fn run_node(cli: &Cli, args: &NodeArgs) -> Result<()> {
    let store = Arc::new(open_store(cli)?);
    let config = crate::config::NodeConfig::from_args(args)?;
    let cfg = config.network.clone();
    let replication = config.replication.clone();
    let bootstrap = !cfg.bootstrap.is_empty();
    let node = Node::start_with(Arc::clone(&store), cfg, replication).await?;
    let serving = serve_http(&node, &store, bootstrap, &config).await?;
    let stop = shutdown_signal();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "peer id: {}", node.client.peer_id())?;
        for a in node.client.listen_addrs() {
            writeln!(out, "listening on {a}")?;
        }
        if let Some(g) = serving.gateway {
            writeln!(out, "gateway: http://{g}/c/ID")?;
        }
        writeln!(out, "web: {}", serving.login_url)?;
        // Last: scripts and tests wait for this line to know the node is up.
        writeln!(out, "api: http://{}", serving.api)?;
        out.flush()?;
    }
    stop.await;
    eprintln!("storgo: stopping");
    api::remove_api_file(store.dir());
    node.stop().await;
    store.close()?;
    Ok(())
}

async fn serve_http(
    node: &Node,
    store: &Arc<crate::store::Store>,
    bootstrap: bool,
    config: &crate::config::NodeConfig,
) -> Result<api::Serving> {
    let parts = || api::NodeParts {
        client: node.client.clone(),
        replicator: node.replicator.clone(),
        store: Arc::clone(store),
        fetch: FetchOptions::default(),
        bootstrap,
        metrics: node.metrics.clone(),
        collections: node.collections.clone(),
    };
    let mut http = config.http.clone();
    match api::serve(parts(), &http).await {
        Ok(s) => Ok(s),
        Err(e) if !config.api_given && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(address = %http.api, "the default API port is taken; using a free one (give --api to choose)");
            http.api.set_port(0);
            api::serve(parts(), &http).await.context("starting the API")
        }
        Err(e) => Err(e).context("starting the API"),
    }
}

/// A spinner while providers are looked for, then a bar once the item's size is known.
fn fetch_spinner() -> indicatif::ProgressBar {
    let pb = progress_bar(None, "");
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} looking for peers that hold it (DHT, LAN, connected peers) {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn fetch_bar(pb: &indicatif::ProgressBar, p: node::FetchProgress) {
    if p.bytes_total == 0 {
        return;
    }
    if pb.length().is_none() {
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
    }
    pb.set_length(p.bytes_total);
    pb.set_position(p.bytes_done);
    pb.set_message(format!(
        "fetching from {} peer{}",
        p.peers,
        if p.peers == 1 { "" } else { "s" }
    ));
}

fn report_fetch(r: &FetchReport, output: Option<&Path>) {
    eprintln!(
        "storgo: fetched {} ({} bytes; {} of {} chunks from the network, {} peers){}",
        if r.name.is_empty() { &r.id } else { &r.name },
        r.size,
        r.chunks_fetched,
        r.chunks_total,
        r.peers_used.len(),
        output
            .map(|o| format!(", wrote {}", o.display()))
            .unwrap_or_default()
    );
}

pub async fn fetch(
    cli: &Cli,
    id: &str,
    output: Option<&Path>,
    no_pin: bool,
    (timeout, deadline): (Duration, Option<Duration>),
    net: &NetArgs,
) -> Result<()> {
    let id = parse_id(id)?;
    let dir = data_dir(cli)?;
    let output = output.map(absolute).transpose()?;
    if let Some(o) = &output {
        if std::fs::symlink_metadata(o).is_ok() {
            bail!("{} already exists; choose another -o path", o.display());
        }
    }
    let pb = fetch_spinner();
    if let Some(api) = ApiClient::discover(&dir).await {
        let mut path = format!(
            "/fetch/{id}?pin={}&timeout_secs={}",
            !no_pin,
            timeout.as_secs().max(1)
        );
        if let Some(d) = deadline {
            path.push_str(&format!("&deadline_secs={}", d.as_secs().max(1)));
        }
        if let Some(o) = &output {
            path.push_str(&format!("&output={}", urlencode(&o.to_string_lossy())));
        }
        let job: Job = api.post(&path, &()).await?;
        let last = api
            .follow_job(job.job, |j| fetch_bar(&pb, j.progress))
            .await;
        pb.finish_and_clear();
        return match last? {
            Job {
                state: JobState::Done,
                report: Some(r),
                ..
            } => {
                report_fetch(&r, output.as_deref());
                Ok(())
            }
            Job { error: Some(e), .. } => bail!(e.detail),
            j if j.state == JobState::Cancelled => bail!("the fetch was cancelled"),
            _ => bail!("the node ended the fetch without a result"),
        };
    }

    // No node on this data dir: run a temporary one for the duration.
    let store = Arc::new(open_store(cli)?);
    let cfg = network_config(net, false)?;
    let wait_for_lan = cfg.mdns && cfg.bootstrap.is_empty();
    let node = Node::start(Arc::clone(&store), cfg.clone()).await?;
    for b in &cfg.bootstrap {
        if let Err(e) = node.client.dial(b.clone()).await {
            tracing::warn!(address = %b, error = %e, "bootstrap peer unreachable");
        }
    }
    if wait_for_lan {
        // Give mDNS a moment to find a neighbour before asking the (empty) DHT.
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                poll.tick().await;
                if node
                    .client
                    .info()
                    .await
                    .map(|i| i.connected_peers > 0)
                    .unwrap_or(true)
                {
                    break;
                }
            }
        })
        .await;
    }
    let opts = FetchOptions {
        pin: !no_pin,
        stall_timeout: timeout,
        deadline,
        ..FetchOptions::default()
    };
    // The output is written while the chunks arrive.
    let result = node::fetch(
        &node.client,
        &store,
        &id,
        &opts,
        &|p| fetch_bar(&pb, p),
        output.clone().map(crate::files::Output::Path),
    )
    .await;
    pb.finish_and_clear();
    let outcome = match result {
        Ok(r) => {
            report_fetch(&r, output.as_deref());
            Ok(())
        }
        Err(e) => Err(e.into()),
    };
    node.stop().await;
    outcome
}

fn urlencode(s: &str) -> String {
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

/// Paths are resolved here: the node runs with its own working directory.
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

/// Whether the node on this data dir answers `/healthz` (within 3 s).
pub async fn healthcheck(cli: &Cli) -> Result<()> {
    let dir = data_dir(cli)?;
    let text = std::fs::read_to_string(dir.join(api::API_FILE))
        .with_context(|| format!("no node runs on {} (no api file)", dir.display()))?;
    let url = text.lines().next().unwrap_or("").trim();
    let ok = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3))
        .build()?
        .get(format!("{url}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if !ok {
        bail!("the node at {url} does not answer /healthz");
    }
    Ok(())
}

/// A fresh one-time login URL for the node's web page.
pub async fn web(cli: &Cli) -> Result<()> {
    let link: api::LoginLink = need_api(cli).await?.post("/login-links", &()).await?;
    println!("{}", link.url);
    Ok(())
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

pub async fn id(cli: &Cli, json: bool) -> Result<()> {
    let dir = data_dir(cli)?;
    let Some(api) = ApiClient::discover(&dir).await else {
        let kp = crate::network::identity::load_or_create(
            &open_store(cli)?,
            crate::network::identity::IfMissing::CreateIfNew,
        )?;
        println!("{}", kp.public().to_peer_id());
        eprintln!(
            "storgo: no node is running on {}; no addresses",
            dir.display()
        );
        return Ok(());
    };
    let info: NodeInfo = api.get("/id").await?;
    if json {
        println!("{}", serde_json::to_string(&info)?);
    } else {
        println!("{}", info.peer_id);
        for a in &info.listen_addrs {
            println!("{a}");
        }
    }
    Ok(())
}

pub async fn peers(cli: &Cli, json: bool) -> Result<()> {
    let peers: Vec<PeerInfo> = need_api(cli).await?.get("/peers").await?;
    if json {
        println!("{}", serde_json::to_string(&peers)?);
    } else {
        for p in peers {
            let rtt = p
                .rtt_ms
                .map(|r| format!("{r:.1} ms"))
                .unwrap_or_else(|| "-".into());
            let debt = if p.debt > 0.0 {
                format!("\tdebt {:.0}", p.debt)
            } else {
                String::new()
            };
            println!("{}\t{}\t{}{debt}", p.peer_id, p.address, rtt);
        }
    }
    Ok(())
}

/// The bans in force: the running node's, or those the store remembers when no node runs.
pub async fn banned(cli: &Cli, json: bool) -> Result<()> {
    let bans: Vec<Ban> = match ApiClient::discover(&data_dir(cli)?).await {
        Some(api) => api.get("/peers/banned").await?,
        None => {
            let store = open_store(cli)?;
            let now = crate::node::now_secs();
            let mut bans: Vec<Ban> = reputation::persisted::load(&store, now)?
                .into_iter()
                .map(|(_, b)| b)
                .filter(|b| b.until > now)
                .collect();
            bans.sort_by_key(|b| b.until);
            bans
        }
    };
    if json {
        println!("{}", serde_json::to_string(&bans)?);
        return Ok(());
    }
    let now = crate::node::now_secs();
    for b in bans {
        let left = humantime::format_duration(Duration::from_secs(b.until.saturating_sub(now)));
        println!("{}	{left} left	{} (ban {})", b.peer, b.reason, b.count);
    }
    Ok(())
}

pub async fn unban(cli: &Cli, peer: &str) -> Result<()> {
    let id: libp2p::PeerId = peer
        .parse()
        .map_err(|e| anyhow::anyhow!("{peer:?} is not a PeerId: {e}"))?;
    let was = match ApiClient::discover(&data_dir(cli)?).await {
        Some(api) => {
            let r: crate::api::Unbanned = api.post(&format!("/peers/{id}/unban"), &()).await?;
            r.was_banned
        }
        None => reputation::persisted::remove(&open_store(cli)?, &id, crate::node::now_secs())?,
    };
    if was {
        println!("{id} unbanned");
    } else {
        println!("{id} was not banned");
    }
    Ok(())
}

pub async fn providers(cli: &Cli, id: &str) -> Result<()> {
    let id = parse_id(id)?;
    let list: Vec<String> = need_api(cli)
        .await?
        .get(&format!("/providers/{id}"))
        .await?;
    for p in list {
        println!("{p}");
    }
    Ok(())
}

pub async fn status(cli: &Cli, json: bool) -> Result<()> {
    let s: Status = need_api(cli).await?.get("/status").await?;
    if json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!("peer id: {}", s.node.peer_id);
        println!("dht mode: {}", s.node.dht_mode);
        println!("connected peers: {}", s.node.connected_peers);
        println!("routing table: {} peers", s.node.routing_table_size);
        println!("records provided: {}", s.node.records_provided);
        println!(
            "provider records held: {} ({} taken in since start, {} refused, {} dropped while busy)",
            s.node.provider_records_held,
            s.node.records_taken_in,
            s.node.records_refused,
            s.node.records_dropped
        );
        println!("items pinned: {}", s.store.pins);
        println!(
            "bytes stored: {} in {} blocks",
            s.store.bytes, s.store.blocks
        );
        println!("bytes served: {}", s.node.bytes_served);
        println!("bytes fetched: {}", s.node.bytes_fetched);
        println!(
            "store sessions: {} in progress, {} left by a crash removed at start",
            s.sessions.live, s.sessions.interrupted_at_start
        );
        println!("replication: {} copies per item", s.replication.replication);
        println!(
            "replicas held for the network: {} whole, {} arriving",
            s.replication.replicas_held, s.replication.replicas_arriving
        );
        match &s.replication.last_round {
            Some(r) => println!(
                "last repair round: {} ({} ms): {} items, {} under-replicated, {} pushed, {} handed off, {} failed",
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_secs(r.started)
                ),
                r.duration_ms,
                r.items,
                r.under_replicated,
                r.pushes,
                r.handed_off,
                r.failed.len()
            ),
            None => println!("last repair round: none yet"),
        }
        match &s.replication.last_republish {
            Some(r) => println!(
                "last republish: {} ({} ms): {} items to {} peers in {} batches, {} DHT walks, {} failed",
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_secs(r.started)
                ),
                r.duration_ms,
                r.roots,
                r.peers,
                r.batches,
                r.walks,
                r.failed.len()
            ),
            None => println!("last republish: none yet"),
        }
        println!(
            "scrub: {} bytes re-checked, {} blocks repaired, {} failures",
            s.replication.scrub.checked_bytes,
            s.replication.scrub.repaired_blocks,
            s.replication.scrub.failed
        );
    }
    Ok(())
}

/// Streams `/replicas/{id}/wait` and shows how many peers hold the item whole; fails, naming
/// how many did, when fewer than wanted do by the timeout.
async fn wait_for_replicas(
    api: &ApiClient,
    id: &str,
    replicas: Option<u8>,
    timeout: Duration,
) -> Result<()> {
    let mut path = format!(
        "/replicas/{id}/wait?timeout_secs={}",
        timeout.as_secs().max(1)
    );
    if let Some(n) = replicas {
        path.push_str(&format!("&replicas={n}"));
    }
    let mut pending = Vec::new();
    let mut last = None;
    api.stream(reqwest::Method::POST, &path, |b| {
        pending.extend_from_slice(b);
        while let Some(i) = pending.iter().position(|c| *c == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            match serde_json::from_slice::<api::ReplicaLine>(&line) {
                Ok(api::ReplicaLine::Progress { confirmed, wanted }) => {
                    eprintln!("storgo: {confirmed} of {wanted} replicas whole");
                }
                Ok(other) => last = Some(other),
                Err(_) => {}
            }
        }
        Ok(())
    })
    .await?;
    match last {
        Some(api::ReplicaLine::Done { confirmed, wanted }) if confirmed.len() >= wanted as usize => {
            eprintln!("storgo: {} peers hold it: {}", confirmed.len(), confirmed.join(", "));
            Ok(())
        }
        Some(api::ReplicaLine::Done { confirmed, wanted }) => bail!(
            "only {} of {wanted} peers confirmed a replica of {id} within {} (too few peers, or they refused); it is safe on this node and the next repair round tries again",
            confirmed.len(),
            humantime::format_duration(timeout)
        ),
        Some(api::ReplicaLine::Error(e)) => bail!(e),
        _ => bail!("the node ended the wait for replicas without an answer"),
    }
}

/// `storgo repair`: one repair round now.
pub async fn repair(cli: &Cli, json: bool) -> Result<()> {
    let r: crate::node::RepairReport = need_api(cli).await?.post("/repair", &()).await?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "repaired {} items in {} ms: {} replicas pushed, {} refusals, {} handed off, {} under-replicated, {} failed",
            r.items, r.duration_ms, r.pushes, r.refusals, r.handed_off, r.under_replicated, r.failed.len()
        );
        for (root, why) in &r.failed {
            println!("failed {root}: {why}");
        }
        if let Some(p) = &r.republish {
            println!(
                "provider records: {} sent to {} peers newly among their items' closest ({} batches, {} failed); {} DHT walks mapped the key space",
                p.records_sent,
                p.peers,
                p.batches,
                p.failed.len(),
                r.walks
            );
        }
    }
    Ok(())
}

/// The store commands, sent to the node that owns the data dir.
pub async fn through_node(cli: &Cli, api: &ApiClient) -> Result<()> {
    match &cli.command {
        Command::Add {
            path,
            recursive,
            name,
            no_pin,
            no_compress,
            replicas,
            wait_replicas,
            wait_timeout,
        } => {
            let r: AddResponse = if path.as_os_str() == "-" {
                let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
                std::thread::spawn(move || {
                    use std::io::Read;
                    let mut stdin = std::io::stdin().lock();
                    loop {
                        let mut buf = vec![0u8; 1 << 20];
                        match stdin.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                buf.truncate(n);
                                if tx.blocking_send(Ok(buf)).is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                let _ = tx.blocking_send(Err(e));
                                break;
                            }
                        }
                    }
                });
                let mut rx = rx;
                let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
                let mut path = format!(
                    "/upload?name={}&pin={}&compress={}",
                    urlencode(name),
                    !no_pin,
                    !no_compress
                );
                if let Some(n) = replicas {
                    path.push_str(&format!("&replicas={n}"));
                }
                api.post_stream(&path, reqwest::Body::wrap_stream(stream))
                    .await?
            } else {
                let req = AddRequest {
                    path: absolute(path)?,
                    recursive: *recursive,
                    pin: !no_pin,
                    replicas: *replicas,
                    compress: !no_compress,
                };
                api.post("/add", &req).await?
            };
            super::report_skipped(&r.skipped);
            println!("{}", r.id);
            if *wait_replicas {
                wait_for_replicas(api, &r.id, *replicas, (*wait_timeout).into()).await?;
            }
        }
        Command::Cat { id } => {
            let id = parse_id(id)?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let r = api
                .stream(reqwest::Method::GET, &format!("/cat/{id}"), |b| {
                    out.write_all(b)
                })
                .await;
            match r {
                Err(crate::api::client::ApiClientError::Node(m)) if m.contains("Broken pipe") => {}
                other => other?,
            }
            out.flush().ok();
        }
        Command::Get { id, output } => {
            let id = parse_id(id)?;
            let dest = match output {
                Some(p) => p.clone(),
                None => {
                    let st: ItemStat = api.get(&format!("/stat/{id}")).await?;
                    default_output(&id, &st.name)
                }
            };
            let req = GetRequest {
                id: id.to_string(),
                output: absolute(&dest)?,
            };
            let _: serde_json::Value = api.post("/get", &req).await?;
            eprintln!("storgo: wrote {}", dest.display());
        }
        Command::Ls { json, replicas } => {
            if *replicas {
                let r: Vec<crate::store::ReplicaRecord> = api.get("/replicas").await?;
                print_replicas(&r, *json)?;
            } else {
                let pins: Vec<PinRecord> = api.get("/ls").await?;
                print_pins(&pins, *json)?;
            }
        }
        Command::Pin { id } => {
            let id = parse_id(id)?;
            let r: PinRecord = api.post(&format!("/pin/{id}"), &()).await?;
            eprintln!("storgo: pinned {}", r.name);
        }
        Command::Unpin { id } => {
            let id = parse_id(id)?;
            let r: PinRecord = api.post(&format!("/unpin/{id}"), &()).await?;
            eprintln!(
                "storgo: unpinned {} (run `storgo gc` to free its blocks)",
                r.name
            );
        }
        Command::Gc { json } => {
            let r: GcReport = api.post("/gc", &()).await?;
            print_gc(&r, *json)?;
        }
        Command::Verify { json } => {
            let r: VerifyReport = api.post("/verify", &()).await?;
            print_verify(&r, *json, &data_dir(cli)?)?;
        }
        Command::Stat { id, sha256, json } => {
            let id = parse_id(id)?;
            let mut st: ItemStat = api.get(&format!("/stat/{id}")).await?;
            if *sha256 {
                use sha2::Digest;
                let mut h = sha2::Sha256::new();
                api.stream(reqwest::Method::GET, &format!("/cat/{id}"), |b| {
                    h.update(b);
                    Ok(())
                })
                .await?;
                st.sha256 = Some(hex::encode(h.finalize()));
            }
            print_stat(&st, *json)?;
        }
        _ => bail!("not a store command"),
    }
    Ok(())
}
