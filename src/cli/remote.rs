//! The commands that ask the running node through its API: the store commands sent to it
//! (`add` with `--wait-replicas`, `cat`, `get`, `ls`, `pin`, …), `status`, `repair`, `web` and
//! the container's `healthcheck`.
//!
//! The node owns the data dir while it runs, so these never open the store; the same store
//! commands without a node are in [`local`](super::local), and their reports are printed by
//! [`print`](super::print) either way.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::args::{Cli, Command};
use super::print::{
    print_gc, print_health, print_pins, print_replicas, print_stat, print_verify, report_skipped,
};
use super::resolve::{absolute, data_dir, default_output, need_api, parse_id, urlencode};
use crate::api::client::ApiClient;
use crate::api::{self, AddRequest, AddResponse, GetRequest, Status};
use crate::files::ItemStat;
use crate::store::{GcReport, PinRecord, VerifyReport};

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
            durability,
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
                if let Some(d) = durability {
                    path.push_str(&format!("&durability={}", urlencode(&d.to_string())));
                }
                api.post_stream(&path, reqwest::Body::wrap_stream(stream))
                    .await?
            } else {
                let req = AddRequest {
                    path: absolute(path)?,
                    recursive: *recursive,
                    pin: !no_pin,
                    replicas: *replicas,
                    durability: durability.map(|d| d.to_string()),
                    compress: !no_compress,
                };
                api.post("/add", &req).await?
            };
            report_skipped(&r.skipped);
            println!("{}", r.id);
            if *wait_replicas {
                wait_for_replicas(api, &r.id, *replicas, (*wait_timeout).into()).await?;
            }
        }
        Command::Cat { id, timeout } => {
            let id = parse_id(id)?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            // The spinner shows while the node looks for the item; the first bytes end it.
            let pb = super::fetch::fetch_spinner();
            let path = format!("/cat/{id}{}", timeout_query(*timeout, '?'));
            let r = api
                .stream(reqwest::Method::GET, &path, |b| {
                    if !pb.is_finished() {
                        pb.finish_and_clear();
                    }
                    out.write_all(b)
                })
                .await;
            pb.finish_and_clear();
            match r {
                Err(crate::api::client::ApiClientError::Node(m)) if m.contains("Broken pipe") => {}
                other => other?,
            }
            out.flush().ok();
        }
        Command::Get {
            id,
            output,
            timeout,
        } => {
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
                timeout_secs: timeout.map(|t| t.as_secs().max(1)),
            };
            let pb = super::fetch::fetch_spinner();
            let r = api.post::<serde_json::Value>("/get", &req).await;
            pb.finish_and_clear();
            r?;
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
        Command::Pin { id, timeout } => {
            let id = parse_id(id)?;
            let pb = super::fetch::fetch_spinner();
            let path = format!("/pin/{id}{}", timeout_query(*timeout, '?'));
            let r = api.post::<PinRecord>(&path, &()).await;
            pb.finish_and_clear();
            let r = r?;
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
        Command::Stat {
            id,
            sha256,
            health,
            json,
        } => {
            let id = parse_id(id)?;
            if *health {
                let h: crate::node::ItemHealth = api.get(&format!("/replicas/{id}/health")).await?;
                print_health(&h, *json)?;
                return Ok(());
            }
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
            eprintln!(
                "storgo: {} hold it: {}",
                super::print::count(confirmed.len() as u64, "peer"),
                confirmed.join(", ")
            );
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

pub async fn status(cli: &Cli, json: bool) -> Result<()> {
    let s: Status = need_api(cli).await?.get("/status").await?;
    if json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!("peer id: {}", s.node.peer_id);
        println!("role: {}", s.node.role);
        println!("dht mode: {}", s.node.dht_mode);
        let r = &s.node.reachability;
        println!("reachability: {}", r.status);
        for a in &r.addresses {
            println!("  reachable at: {a}");
        }
        for a in &r.relayed_addresses {
            println!("  reachable through a relay at: {a}");
        }
        println!(
            "relay service: {}",
            if r.relay_service {
                format!(
                    "offered ({} reservations held for peers)",
                    r.relay_reservations_served
                )
            } else {
                "not offered (off, or this node is not reachable itself)".into()
            }
        );
        println!("background tasks: {}", s.node.background_tasks.join(", "));
        println!("connected peers: {}", s.node.connected_peers);
        println!(
            "routing table: {}",
            super::print::count(s.node.routing_table_size as u64, "peer")
        );
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
        println!(
            "replication: {} copies per item; {} item{} short of copies now",
            s.replication.replication,
            s.replication.under_replicated,
            if s.replication.under_replicated == 1 {
                ""
            } else {
                "s"
            }
        );
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
                "last republish: {} ({} ms): {} items to {} in {} batches, {} DHT walks, {} failed",
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_secs(r.started)
                ),
                r.duration_ms,
                r.roots,
                super::print::count(r.peers as u64, "peer"),
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

/// A fresh one-time login URL for the node's web page.
pub async fn web(cli: &Cli) -> Result<()> {
    let link: api::LoginLink = need_api(cli).await?.post("/login-links", &()).await?;
    println!("{}", link.url);
    Ok(())
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

/// `?timeout_secs=N` (after `sep`) for a timeout given on the command line, else nothing.
fn timeout_query(timeout: Option<Duration>, sep: char) -> String {
    timeout
        .map(|t| format!("{sep}timeout_secs={}", t.as_secs().max(1)))
        .unwrap_or_default()
}
