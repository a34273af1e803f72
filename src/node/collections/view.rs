//! Views: read-only queries over collections: every one followed or published (`list`), one
//! by local name or ID (`show`), its checked history (`log`), search over followed listings,
//! and the listing a publish would make now (`draft`).
//!
//! It must not change the book or take versions in: a collection not followed is resolved
//! and shown, never recorded.

use crate::collections::book::{check_name, Owned};
use crate::collections::search::Hit;
use crate::collections::{CollectionError, CollectionId, Followed, Listing, Signer};
use crate::node::blocking;

use super::{CollectionView, Collections, HistoryEntry, Result};

fn hex_signer(s: Signer) -> String {
    match s {
        Signer::Owner => "owner".into(),
        Signer::Delegate(k) => format!("delegate {}", hex::encode(k)),
    }
}

impl Collections {
    /// Every collection this node follows or publishes.
    pub async fn list(&self) -> Result<Vec<CollectionView>> {
        let (followed, owned) = self
            .book(|b| Ok((b.all_followed()?, b.all_owned()?)))
            .await?;
        let mut out = Vec::new();
        for f in followed {
            let key = f.collection().map(|c| c.key).ok();
            let mine = owned
                .iter()
                .find(|o| o.collection().ok().map(|c| c.key) == key);
            out.push(self.view_of(&f, mine));
        }
        Ok(out)
    }

    fn view_of(&self, f: &Followed, owned: Option<&Owned>) -> CollectionView {
        let id = owned
            .and_then(|o| o.collection().ok())
            .or_else(|| f.collection().ok());
        let listing = f.listing.clone().unwrap_or_default();
        let entries = match owned {
            Some(o) => o.draft(&listing).entries,
            None => listing.entries.clone(),
        };
        CollectionView {
            id: id.map(|i| i.to_string()).unwrap_or_default(),
            name: if listing.name.is_empty() {
                owned.map(|o| o.name.clone()).unwrap_or_default()
            } else {
                listing.name.clone()
            },
            local_name: owned.map(|o| o.name.clone()),
            private: id.is_some_and(|i| i.read.is_some()),
            following: true,
            auto_fetch: f.auto_fetch,
            seq: f.seq,
            version: f.version.clone(),
            published: f.published,
            sealed: f.seq > 0 && f.listing.is_none(),
            entries,
            new_entries: f.new_entries.clone(),
            pending: owned.map_or(0, |o| o.pending.len()),
            can_publish: owned.is_some(),
        }
    }

    pub(super) async fn view_owned(&self, name: &str) -> Result<CollectionView> {
        let n = name.to_owned();
        let owned = self.book(move |b| b.owned(&n)).await?;
        let id = owned.collection()?;
        let key = id.key;
        let f = self.book(move |b| b.followed(&key)).await?;
        let f = f.ok_or_else(|| CollectionError::NotFollowed(id.public().to_string()))?;
        Ok(self.view_of(&f, Some(&owned)))
    }

    /// A collection by local name or by ID: the newest version this node holds, or (for a
    /// collection it does not follow) the newest found in the network.
    pub async fn show(&self, which: &str) -> Result<CollectionView> {
        if check_name(which).is_ok() && !which.starts_with("sc1") {
            return self.view_owned(which).await;
        }
        let id: CollectionId = which.parse()?;
        let key = id.key;
        if let Some(f) = self.book(move |b| b.followed(&key)).await? {
            let owned = self.book(|b| b.all_owned()).await?;
            let mine = owned
                .iter()
                .find(|o| o.collection().is_ok_and(|c| c.key == id.key));
            let mut v = self.view_of(&f, mine);
            if id.read.is_some() && v.sealed {
                v.id = id.to_string();
            }
            return Ok(v);
        }
        let Some((latest, version)) = self.resolve(&id).await? else {
            return Err(CollectionError::NotFound.into());
        };
        let listing = version.listing.clone();
        Ok(CollectionView {
            id: id.to_string(),
            name: listing.as_ref().map(|l| l.name.clone()).unwrap_or_default(),
            local_name: None,
            private: id.read.is_some(),
            following: false,
            auto_fetch: false,
            seq: latest.seq,
            version: Some(latest.version.to_string()),
            published: version.published,
            sealed: listing.is_none(),
            entries: listing.map(|l| l.entries).unwrap_or_default(),
            new_entries: Vec::new(),
            pending: 0,
            can_publish: false,
        })
    }

    /// The whole history of `id`, newest first, every link and signature checked.
    pub async fn log(&self, which: &str) -> Result<Vec<HistoryEntry>> {
        let id = match which.parse::<CollectionId>() {
            Ok(id) => id,
            Err(e) => {
                if check_name(which).is_err() {
                    return Err(e.into());
                }
                let n = which.to_owned();
                self.book(move |b| b.owned(&n)).await?.collection()?
            }
        };
        let Some((latest, version)) = self.resolve(&id).await? else {
            return Err(CollectionError::NotFound.into());
        };
        let chain = self.walk(&id, (latest.version, version), None).await?;
        Ok(chain
            .into_iter()
            .map(|(at, v)| HistoryEntry {
                seq: v.seq,
                version: at.to_string(),
                published: v.published,
                signer: hex_signer(v.signer),
                entries: v.listing.as_ref().map(|l| l.entries.len()),
            })
            .collect())
    }

    /// Searches every followed collection.
    pub async fn search(&self, words: &str, tag: Option<&str>, limit: usize) -> Result<Vec<Hit>> {
        let me = self.clone();
        let (words, tag) = (words.to_owned(), tag.map(str::to_owned));
        Ok(blocking(move || me.inner.search.search(&words, tag.as_deref(), limit)).await??)
    }

    /// The listing `name` would publish now (its newest version with the draft applied).
    pub async fn draft(&self, name: &str) -> Result<Listing> {
        let v = self.view_owned(name).await?;
        Ok(Listing {
            name: v.name,
            entries: v.entries,
        })
    }
}
