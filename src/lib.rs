//! storgo: a peer-to-peer file store.
//!
//! People add a file or a folder on one machine and fetch it on any other by one
//! [`ContentId`]. Content is cut into chunks, each sealed under a key derived from its own
//! bytes, and addressed by the SHA-256 of the sealed bytes, so a node that stores someone
//! else's chunks can verify them but never read them.
//!
//! # Layout
//! - [`content`]: what a file becomes — chunking, sealing, block addresses, manifests and
//!   content IDs. Pure functions over bytes; no disk, no network.
//! - [`store`]: the local data dir — block files on disk, the redb index of blocks and pins,
//!   the data-dir lock, garbage collection and verification. Knows block links, never keys.
//! - [`files`]: adding and reading files and folders — the pipelines that turn a path into
//!   sealed blocks in a [`store::Store`] and a content ID back into bytes on disk.
//! - [`collections`]: shared collections — signed, versioned lists of items published under
//!   a key and followed by anyone with its ID (formats and local rows; the node does the
//!   network work).
//! - [`network`]: the wire — libp2p behaviours, transports and the node's own protocols
//!   (chunk exchange, replication, announcements), the DHT's record store and its limits.
//!   Says how peers talk; never decides what to fetch or keep.
//! - [`node`]: a running node — the event loop that alone owns the Swarm, and the roles
//!   around it: serving, fetching, replication and repair, republishing, collections.
//! - [`api`]: the HTTP API, gateway and web page over a node's [`node::Client`].
//! - [`config`]: settings from flags, environment, the config file and defaults, in that
//!   order; generic over the command line, so it imports nothing from [`cli`].
//! - [`cli`]: the `storgo` command line, a thin shell over the layers above.
//!
//! Each layer uses only the ones before it: content → store → files, collections, network →
//! node → api → config → cli.
//!
//! [`ContentId`]: content::ContentId

pub mod api;
pub mod cli;
pub mod collections;
pub mod config;
pub mod content;
pub mod files;
pub mod network;
pub mod node;
pub mod store;
