//! Durability: each shard's own journal on its own files (`--durability journal`), or
//! snapshots of what it holds (`--durability snapshot`), sealed with AES-256-GCM when a
//! key is given. See docs/ARCHITECTURE.md ("Durability") for the design.

pub mod crypto;
pub mod record;
pub mod segment;
