//! The settings that pick one of a few modes: `--verify-senders`, `--durability`.

/// What `--verify-senders` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifySenders {
    /// No checks: nothing is looked up, nothing added.
    Off,
    /// Check and record the results in an `Authentication-Results` header; refuse nothing.
    Annotate,
}

impl VerifySenders {
    pub(super) fn parse(text: &str) -> Result<VerifySenders, String> {
        match text {
            "off" => Ok(VerifySenders::Off),
            "annotate" => Ok(VerifySenders::Annotate),
            _ => Err("expected off or annotate".to_string()),
        }
    }
}

/// What survives a restart (`--durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Memory only.
    None,
    /// Each shard writes what it holds every `--snapshot-interval` and on SIGTERM.
    Snapshot,
    /// Each shard journals every message and delete before answering it.
    Journal,
}

impl Durability {
    pub(super) fn parse(text: &str) -> Result<Durability, String> {
        match text {
            "none" => Ok(Durability::None),
            "snapshot" => Ok(Durability::Snapshot),
            "journal" => Ok(Durability::Journal),
            _ => Err("expected none, snapshot or journal".to_string()),
        }
    }

    /// The word the flag takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::None => "none",
            Durability::Snapshot => "snapshot",
            Durability::Journal => "journal",
        }
    }
}
