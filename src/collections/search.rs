//! The local search index over every followed collection: titles, tags and notes, in
//! tantivy, in memory (rebuilt from the followed collections' listings at start; a course's
//! listing is small, and the index is a cache of what the store's rows already say).
//!
//! A collection's documents are replaced whole when a new version of it is seen, so a hit
//! always names the version it came from. Blocking: call it off the event loop.

use std::sync::Mutex;

use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexReader, IndexWriter, TantivyDocument, Term};

use super::version::Entry;
use super::CollectionError;

/// One search result: an entry, and the collection and version it is listed in.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Hit {
    /// The collection's public ID (without a read key).
    pub collection: String,
    pub name: String,
    pub seq: u64,
    pub entry: Entry,
    pub score: f32,
}

struct Fields {
    key: Field,
    collection: Field,
    name: Field,
    seq: Field,
    id: Field,
    title: Field,
    tags: Field,
    tag: Field,
    note: Field,
    added: Field,
}

pub struct SearchIndex {
    index: Index,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    f: Fields,
}

fn err(e: impl std::fmt::Display) -> CollectionError {
    CollectionError::Search(e.to_string())
}

/// The collection being described when it is replaced in the index.
pub struct Indexed<'a> {
    /// Public key in hex: the documents' key.
    pub key: &'a str,
    /// Public collection ID, shown in hits.
    pub collection: &'a str,
    pub name: &'a str,
    pub seq: u64,
    pub entries: &'a [Entry],
}

impl SearchIndex {
    pub fn new() -> Result<Self, CollectionError> {
        let mut s = Schema::builder();
        let f = Fields {
            key: s.add_text_field("key", STRING),
            collection: s.add_text_field("collection", STORED),
            name: s.add_text_field("name", STORED),
            seq: s.add_u64_field("seq", STORED),
            id: s.add_text_field("id", STORED),
            title: s.add_text_field("title", TEXT | STORED),
            // Tags twice: as words, so that a search finds them, and whole, for `--tag`.
            tags: s.add_text_field("tags", TEXT),
            tag: s.add_text_field("tag", STRING | STORED),
            note: s.add_text_field("note", TEXT | STORED),
            added: s.add_u64_field("added", STORED),
        };
        let index = Index::create_in_ram(s.build());
        // One indexing thread with tantivy's smallest budget: listings are small.
        let writer = index.writer_with_num_threads(1, 15_000_000).map_err(err)?;
        let reader = index
            .reader_builder()
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .try_into()
            .map_err(err)?;
        Ok(Self {
            index,
            writer: Mutex::new(writer),
            reader,
            f,
        })
    }

    /// Replaces every document of one collection by the entries of its newest version.
    pub fn replace(&self, c: &Indexed<'_>) -> Result<(), CollectionError> {
        let f = &self.f;
        let mut w = self
            .writer
            .lock()
            .map_err(|_| err("index writer poisoned"))?;
        w.delete_term(Term::from_field_text(f.key, c.key));
        for e in c.entries {
            let mut d = doc!(
                f.key => c.key,
                f.collection => c.collection,
                f.name => c.name,
                f.seq => c.seq,
                f.id => e.id.as_str(),
                f.title => e.title.as_str(),
                f.tags => e.tags.join(" "),
                f.note => e.note.as_str(),
                f.added => e.added,
            );
            for t in &e.tags {
                d.add_text(f.tag, t);
            }
            w.add_document(d).map_err(err)?;
        }
        w.commit().map_err(err)?;
        drop(w);
        self.reader.reload().map_err(err)
    }

    /// Drops one collection's documents.
    pub fn remove(&self, key: &str) -> Result<(), CollectionError> {
        let mut w = self
            .writer
            .lock()
            .map_err(|_| err("index writer poisoned"))?;
        w.delete_term(Term::from_field_text(self.f.key, key));
        w.commit().map_err(err)?;
        drop(w);
        self.reader.reload().map_err(err)
    }

    /// Entries matching `words` (in a title, tag or note; any word, best first) and, if
    /// given, carrying `tag`; at most `limit`.
    pub fn search(
        &self,
        words: &str,
        tag: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Hit>, CollectionError> {
        let f = &self.f;
        let mut parts: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if !words.trim().is_empty() {
            let mut qp = QueryParser::for_index(&self.index, vec![f.title, f.tags, f.note]);
            qp.set_field_boost(f.title, 2.0);
            // Lenient: a stray quote or colon in what a user typed is not an error.
            let (q, _) = qp.parse_query_lenient(words);
            parts.push((Occur::Must, q));
        }
        if let Some(t) = tag {
            let term = Term::from_field_text(f.tag, &t.trim().to_lowercase());
            parts.push((
                Occur::Must,
                Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
            ));
        }
        if parts.is_empty() {
            parts.push((Occur::Must, Box::new(AllQuery)));
        }
        let query = BooleanQuery::new(parts);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(limit.max(1)).order_by_score())
            .map_err(err)?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let d: TantivyDocument = searcher.doc(addr).map_err(err)?;
            let text = |field: Field| {
                d.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let num = |field: Field| d.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
            hits.push(Hit {
                collection: text(f.collection),
                name: text(f.name),
                seq: num(f.seq),
                entry: Entry {
                    id: text(f.id),
                    title: text(f.title),
                    tags: d
                        .get_all(f.tag)
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                    note: text(f.note),
                    added: num(f.added),
                },
                score,
            });
        }
        Ok(hits)
    }
}
