//! Adds a file to a store through the library API and reads it back.
//!
//! `cargo run --example add_and_read -- PATH` (uses a temporary data dir).

use storgo::files::{self, AddOptions};
use storgo::store::{Store, StoreOptions};

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: add_and_read PATH"))?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("data"), StoreOptions::default())?;
    let added = files::add_path(&store, path.as_ref(), &AddOptions::default(), &|_| {})?;
    println!(
        "added {} ({} bytes) as {}",
        added.name, added.size, added.id
    );
    let mut back = Vec::new();
    files::cat(&store, &added.id, &mut back, &|_| {})?;
    anyhow::ensure!(back == std::fs::read(&path)?, "read back different bytes");
    println!("read back {} identical bytes", back.len());
    Ok(())
}
