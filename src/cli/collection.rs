//! `storgo collection …`, `storgo follow`, `storgo search`: thin calls to the running node's
//! `/api/v1/collections` (publishing and following are network work a node does).
//!
//! These build the requests and print the answers; the subcommands' flags are in
//! [`args`](super::args). It must not import the other command files.

use anyhow::Result;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::args::{Cli, CollectionCommand};
use super::resolve::need_api;
use crate::api::client::ApiClient;
use crate::collections::search::Hit;
use crate::collections::Entry;
use crate::node::collections::{CollectionView, HistoryEntry, Published};

fn seg(s: &str) -> String {
    utf8_percent_encode(s.trim(), NON_ALPHANUMERIC).to_string()
}

fn print_view(v: &CollectionView) {
    println!(
        "{} — version {}",
        if v.name.is_empty() {
            "(unnamed)"
        } else {
            &v.name
        },
        v.seq
    );
    println!("id: {}", v.id);
    if v.sealed {
        println!("(private: this ID has no read key; the listing is sealed)");
    }
    if v.pending > 0 {
        println!(
            "{} changes waiting for `storgo collection publish`",
            v.pending
        );
    }
    print_entries(&v.entries, &v.new_entries);
}

fn print_entries(entries: &[Entry], new: &[String]) {
    for e in entries {
        let mark = if new.contains(&e.id) { "new " } else { "" };
        let tags = if e.tags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", e.tags.join(", "))
        };
        println!("{mark}{}  {}{tags}", e.id, e.title);
        if !e.note.is_empty() {
            println!("    {}", e.note);
        }
    }
}

pub async fn run(cli: &Cli, c: &CollectionCommand) -> Result<()> {
    let api = need_api(cli).await?;
    match c {
        CollectionCommand::New { name, private, of } => {
            let body = serde_json::json!({ "name": name, "private": private, "of": of });
            let made: crate::api::v1::collections::CreatedCollection =
                api.post("/collections", &body).await?;
            println!("{}", made.id);
        }
        CollectionCommand::Add {
            name,
            id,
            title,
            tags,
            note,
        } => {
            let body = serde_json::json!({ "id": id, "title": title, "tags": tags, "note": note });
            let e: Entry = api
                .post(&format!("/collections/{}/entries", seg(name)), &body)
                .await?;
            eprintln!(
                "added {} to the draft of {name}; `storgo collection publish {name}` publishes it",
                e.title
            );
        }
        CollectionCommand::Rm { name, id } => {
            api.delete::<()>(&format!("/collections/{}/entries/{}", seg(name), seg(id)))
                .await?;
            eprintln!("removed from the draft of {name}");
        }
        CollectionCommand::Publish { name, json } => {
            let p: Published = api
                .post(&format!("/collections/{}/publish", seg(name)), &())
                .await?;
            if *json {
                println!("{}", serde_json::to_string(&p)?);
            } else {
                println!(
                    "published version {} of {} ({} items): {}",
                    p.seq, name, p.entries, p.version
                );
                if !p.in_dht {
                    eprintln!(
                        "storgo: no DHT peer took the record yet; it is kept here and put again"
                    );
                }
            }
        }
        CollectionCommand::Log { collection, json } => {
            let log: Vec<HistoryEntry> = api
                .get(&format!("/collections/{}/log", seg(collection)))
                .await?;
            if *json {
                println!("{}", serde_json::to_string(&log)?);
            } else {
                for h in &log {
                    let when = humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(h.published),
                    );
                    let n = h.entries.map_or("sealed".into(), |n| format!("{n} items"));
                    println!(
                        "version {}  {when}  {}  {n}  {}",
                        h.seq, h.signer, h.version
                    );
                }
                eprintln!("{} versions, every signature and link verified", log.len());
            }
        }
        CollectionCommand::Show { collection, json } => {
            let v: CollectionView = api
                .get(&format!("/collections/{}", seg(collection)))
                .await?;
            if *json {
                println!("{}", serde_json::to_string(&v)?);
            } else {
                print_view(&v);
            }
        }
        CollectionCommand::Delegate { name, key } => {
            api.post::<()>(
                &format!("/collections/{}/delegates", seg(name)),
                &serde_json::json!({ "key": key }),
            )
            .await?;
            eprintln!("delegated; the next `storgo collection publish {name}` makes it count");
        }
        CollectionCommand::Rotate { name } => {
            let made: crate::api::v1::collections::CreatedCollection = api
                .post(&format!("/collections/{}/rotate", seg(name)), &())
                .await?;
            eprintln!("new read key; share the new ID with every member who stays, then publish");
            println!("{}", made.id);
        }
        CollectionCommand::List { json } => {
            let all: Vec<CollectionView> = api.get("/collections").await?;
            if *json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                for v in &all {
                    let who = v
                        .local_name
                        .as_deref()
                        .map_or(String::new(), |n| format!(" (yours: {n})"));
                    println!(
                        "{}  version {}  {} items  {}{who}",
                        v.id,
                        v.seq,
                        v.entries.len(),
                        v.name
                    );
                }
            }
        }
    }
    Ok(())
}

/// `storgo follow ID [--auto-fetch]`.
pub async fn follow(cli: &Cli, id: &str, auto_fetch: bool, json: bool) -> Result<()> {
    let api = need_api(cli).await?;
    let v: CollectionView = api
        .post(
            &format!("/collections/{}/follow", seg(id)),
            &serde_json::json!({ "auto_fetch": auto_fetch }),
        )
        .await?;
    if json {
        println!("{}", serde_json::to_string(&v)?);
    } else if v.seq == 0 {
        eprintln!("following; no version found yet — the node keeps looking and takes new ones as they are published");
    } else {
        print_view(&v);
        if auto_fetch {
            eprintln!("every item is being pinned; new ones will be as they appear");
        }
    }
    Ok(())
}

/// `storgo unfollow ID`.
pub async fn unfollow(cli: &Cli, id: &str) -> Result<()> {
    let api = need_api(cli).await?;
    api.delete::<()>(&format!("/collections/{}/follow", seg(id)))
        .await?;
    Ok(())
}

/// `storgo search WORDS [--tag T]`.
pub async fn search(
    api: &ApiClient,
    words: &[String],
    tag: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<()> {
    let mut path = format!(
        "/collections/search?q={}&limit={limit}",
        utf8_percent_encode(&words.join(" "), NON_ALPHANUMERIC)
    );
    if let Some(t) = tag {
        path.push_str(&format!(
            "&tag={}",
            utf8_percent_encode(t, NON_ALPHANUMERIC)
        ));
    }
    let hits: Vec<Hit> = api.get(&path).await?;
    if json {
        println!("{}", serde_json::to_string(&hits)?);
        return Ok(());
    }
    for h in &hits {
        let tags = if h.entry.tags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", h.entry.tags.join(", "))
        };
        println!(
            "{}{tags}\n    {}  in {} (version {})",
            h.entry.title, h.entry.id, h.name, h.seq
        );
    }
    if hits.is_empty() {
        eprintln!("nothing found in the followed collections");
    }
    Ok(())
}
