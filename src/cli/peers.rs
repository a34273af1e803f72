//! The commands about this node's peers and identity: `id`, `peers` (and `--banned`),
//! `unban` and `providers`.
//!
//! They ask the running node; `id`, `peers --banned` and `unban` also work on the data dir
//! alone when no node runs (the identity key and the bans the store remembers). This file
//! must not change anything but a ban.

use std::time::Duration;

use anyhow::Result;

use super::args::Cli;
use super::resolve::{data_dir, need_api, open_store, parse_id};
use crate::api::client::ApiClient;
use crate::node::swarm::reputation;
use crate::node::{Ban, NodeInfo, PeerInfo};

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
    } else if peers.is_empty() {
        eprintln!(
            "no peers connected (on a LAN, others are found by mDNS; elsewhere `storgo connect MULTIADDR`)"
        );
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
            println!("{}\t{}\t{}\t{}{debt}", p.peer_id, p.via, p.address, rtt);
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
    if list.is_empty() {
        eprintln!("no peer provides {} (searched for 30 s)", id.short());
    }
    for p in list {
        println!("{p}");
    }
    Ok(())
}

/// `storgo connect`: the running node dials each address and answers once connected.
pub async fn connect(cli: &Cli, addrs: &[String]) -> Result<()> {
    let Some(api) = ApiClient::discover(&data_dir(cli)?).await else {
        anyhow::bail!(
            "no node runs on this data dir: start one with `storgo node --bootstrap ADDR`"
        );
    };
    for a in addrs {
        let c: crate::api::Connected = api
            .post("/peers", &crate::api::Connect { address: a.clone() })
            .await?;
        println!("connected to {} at {}", c.peer_id, c.address);
    }
    Ok(())
}
