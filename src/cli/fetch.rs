//! `storgo fetch`: an item from the network by content ID — through the running node (a job
//! followed to its end), or with a temporary node started for the fetch alone.
//!
//! It shows the search for providers, then a progress bar, and reports what came from where.
//! The fetching itself is the node's ([`node::fetch`](crate::node::fetch)); this file must
//! not hold fetch logic.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use super::args::{Cli, NetArgs};
use super::print::progress_bar;
use super::resolve::{absolute, data_dir, open_store, parse_id, urlencode};
use crate::api::client::ApiClient;
use crate::api::jobs::{Job, JobState};
use crate::network::NetworkConfig;
use crate::node::{self, FetchOptions, FetchReport, Node};

fn network_config(net: &NetArgs, dht_server: bool) -> Result<NetworkConfig> {
    Ok(crate::config::network(net, dht_server)?)
}

/// A spinner while providers are looked for, then a bar once the item's size is known
/// (hidden when stderr is not a terminal).
pub(super) fn fetch_spinner() -> indicatif::ProgressBar {
    let pb = progress_bar(None, "");
    if pb.is_hidden() {
        return pb;
    }
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
        "storgo: fetched {} ({}; {} of {} chunks from the network, {}){}",
        if r.name.is_empty() { &r.id } else { &r.name },
        bytesize::ByteSize(r.size),
        r.chunks_fetched,
        r.chunks_total,
        super::print::count(r.peers_used.len() as u64, "peer"),
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
        // The running node is asked to reach the peers named here before it looks.
        for b in &net.bootstrap {
            let asked = crate::api::Connect {
                address: b.to_string(),
            };
            if let Err(e) = api.post::<crate::api::Connected>("/peers", &asked).await {
                pb.suspend(|| eprintln!("storgo: bootstrap peer {b} unreachable: {e}"));
            }
        }
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
