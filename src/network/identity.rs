//! The node's Ed25519 identity: created on first start, kept in `DATA_DIR/identity` (mode
//! 0600), so the PeerId stays the same across restarts.

use std::path::Path;

use libp2p::identity::Keypair;

use super::NetworkError;

pub const IDENTITY_FILE: &str = "identity";

pub fn load_or_create(data_dir: &Path) -> Result<Keypair, NetworkError> {
    let path = data_dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| NetworkError::Identity {
            path: path.clone(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kp = Keypair::generate_ed25519();
            let bytes = kp
                .to_protobuf_encoding()
                .map_err(|e| NetworkError::Identity {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            crate::store::write_private_file(&path, &bytes).map_err(|e| {
                NetworkError::Identity {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
            Ok(kp)
        }
        Err(e) => Err(NetworkError::Identity {
            path,
            reason: e.to_string(),
        }),
    }
}
