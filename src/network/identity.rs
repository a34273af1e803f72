//! The node's Ed25519 identity: created on first start, kept in `DATA_DIR/identity` (mode
//! 0600), so the PeerId stays the same across restarts.
//!
//! A data dir remembers (in its index) that it has had an identity, so a lost or damaged key
//! file is an error at start, never a silently new PeerId over the old one: peers' records,
//! bans and the replicas placed by distance all hang on the PeerId. A new one is made over an
//! old one only when asked (`storgo node --new-identity`).

use std::path::Path;

use libp2p::identity::Keypair;

use super::NetworkError;
use crate::store::Store;

pub const IDENTITY_FILE: &str = "identity";
/// Index key: Unix seconds when this data dir's identity was made.
const MADE_AT: &str = "identity_made_at";

/// Whether a missing identity file may be replaced by a new identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IfMissing {
    /// Only in a data dir that never had one.
    #[default]
    CreateIfNew,
    /// Also over a lost one (`--new-identity`).
    CreateAlways,
}

pub fn load_or_create(store: &Store, if_missing: IfMissing) -> Result<Keypair, NetworkError> {
    let path = store.dir().join(IDENTITY_FILE);
    let fail = |reason: String| NetworkError::Identity {
        path: path.clone(),
        reason,
    };
    let made_at = store
        .dht()
        .meta(MADE_AT)
        .map_err(|e| fail(format!("reading the index: {e}")))?;
    match std::fs::read(&path) {
        Ok(bytes) => {
            let kp = Keypair::from_protobuf_encoding(&bytes).map_err(|_| {
                fail(format!(
                    "not a libp2p Ed25519 key ({} bytes): damaged or truncated; restore it from \
                     a backup, or move it aside and start with `storgo node --new-identity` to \
                     become a new node",
                    bytes.len()
                ))
            })?;
            if made_at.is_none() {
                // A data dir from before the index kept this: note it now.
                remember(store, &path)?;
            }
            Ok(kp)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let (Some(at), IfMissing::CreateIfNew) = (made_at, if_missing) {
                return Err(fail(format!(
                    "missing, but this data dir had an identity (made {}); restore the file \
                     from a backup, or start with `storgo node --new-identity` to become a new \
                     node with a new PeerId",
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(at)
                    )
                )));
            }
            let kp = Keypair::generate_ed25519();
            let bytes = kp.to_protobuf_encoding().map_err(|e| fail(e.to_string()))?;
            crate::store::write_private_file(&path, &bytes).map_err(|e| fail(e.to_string()))?;
            remember(store, &path)?;
            if made_at.is_some() {
                tracing::warn!(peer = %kp.public().to_peer_id(), "made a new identity over a lost one (--new-identity)");
            }
            Ok(kp)
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

fn remember(store: &Store, path: &Path) -> Result<(), NetworkError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    store
        .dht()
        .set_meta(MADE_AT, now)
        .map_err(|e| NetworkError::Identity {
            path: path.to_owned(),
            reason: format!("noting it in the index: {e}"),
        })
}
