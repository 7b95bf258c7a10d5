//! How many keys and value bytes each key space of a (stopped) gateway's data directory holds:
//! `cargo run --release --example keyspaces -- <data dir>`. For layout work and docs/benchmarks/'s
//! performance notes.

use std::collections::BTreeMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: keyspaces <data dir>")?;
    let store = credit_gateway::store::Store::open(std::path::Path::new(&dir))?;
    let mut spaces: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for pair in store.range_raw(b"", None) {
        let (k, v) = pair?;
        let space = String::from_utf8_lossy(&k[..k.len().min(4)]).into_owned();
        let e = spaces.entry(space).or_default();
        e.0 += 1;
        e.1 += k.len() as u64;
        e.2 += v.len() as u64;
    }
    println!(
        "{:<6} {:>10} {:>14} {:>14}",
        "space", "keys", "key bytes", "value bytes"
    );
    for (space, (n, kb, vb)) in &spaces {
        println!("{space:<6} {n:>10} {kb:>14} {vb:>14}");
    }
    println!("on disk: {} bytes", store.size_on_disk());
    Ok(())
}
