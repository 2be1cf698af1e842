//! The data directory: generations of per-shard directories, and `CURRENT`, which names
//! the generation in use.
//!
//! ```text
//! DATA/CURRENT                    "generation 5\ncores 2\nboot_micros 1764...\n"
//! DATA/gen-000005/shard-000/0000000000000001.journal ...
//! DATA/gen-000005/shard-001/...
//! ```
//!
//! A restart never writes into the generation it restores from: it restores into the
//! next one and switches `CURRENT` (written to a temporary file, synced, renamed over,
//! directory synced) only when every shard has made its part durable; then the old
//! generation is removed. A crash at any point leaves `CURRENT` naming a complete
//! generation, and a half-written newer one is removed at the next start. The same
//! switch takes a snapshot (`--durability snapshot`), and carries mail across a change of
//! `--cores` (each new shard reads every old shard's files and keeps its own inboxes).
//!
//! A generation is removed by first overwriting each shard's key file with zeros
//! (`ratchet::shred_key_file`), then unlinking the lot: its journal files' keys are
//! destroyed before their blocks are freed.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

/// The file naming the generation in use.
const CURRENT_FILE: &str = "CURRENT";
/// Where `CURRENT` is written before it is renamed over.
const CURRENT_TMP_FILE: &str = "CURRENT.tmp";
/// Bytes `CURRENT` may have (it has three short lines).
const CURRENT_BYTES_MAX: u64 = 4096;
/// Directories are private to the server's user.
const DIR_MODE: u32 = 0o700;

/// What `CURRENT` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    /// The generation whose files hold the mail.
    pub generation: u64,
    /// The `--cores` that generation was written with (its number of shard directories).
    pub cores: usize,
    /// The boot that wrote it (`MessageId::boot_micros`): a later boot must use a larger
    /// one, so that its ids sort after every restored id.
    pub boot_micros: u64,
}

/// The data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Opens `root`, creating it (private to this user) if it does not exist.
    ///
    /// # Errors
    /// It cannot be created or is not a directory.
    pub fn open(root: &Path) -> io::Result<Layout> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(root)?;
        if !root.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What `CURRENT` says; `None` in a new data directory.
    ///
    /// # Errors
    /// `CURRENT` cannot be read or does not parse (a data directory Mayfly did not write,
    /// or damaged: never silently treated as empty).
    pub fn current(&self) -> io::Result<Option<Current>> {
        let path = self.root.join(CURRENT_FILE);
        let text = match fs::metadata(&path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
            Ok(metadata) if metadata.len() > CURRENT_BYTES_MAX => {
                return Err(bad_current(&path, "too large"));
            }
            Ok(_) => fs::read_to_string(&path)?,
        };
        let mut generation = None;
        let mut cores = None;
        let mut boot_micros = None;
        for line in text.lines() {
            let (name, value) = line
                .split_once(' ')
                .ok_or_else(|| bad_current(&path, line))?;
            let value: u64 = value.parse().map_err(|_| bad_current(&path, line))?;
            match name {
                "generation" => generation = Some(value),
                "cores" => cores = usize::try_from(value).ok().filter(|&cores| cores > 0),
                "boot_micros" => boot_micros = Some(value),
                _ => return Err(bad_current(&path, line)),
            }
        }
        match (generation, cores, boot_micros) {
            (Some(generation), Some(cores), Some(boot_micros)) => Ok(Some(Current {
                generation,
                cores,
                boot_micros,
            })),
            _ => Err(bad_current(&path, "a line is missing")),
        }
    }

    /// Makes `current` what `CURRENT` says, durably and atomically.
    ///
    /// # Errors
    /// Writing, syncing or renaming failed; `CURRENT` then still says what it said.
    pub fn write_current(&self, current: &Current) -> io::Result<()> {
        let tmp = self.root.join(CURRENT_TMP_FILE);
        let mut file = fs::File::create(&tmp)?;
        write!(
            file,
            "generation {}\ncores {}\nboot_micros {}\n",
            current.generation, current.cores, current.boot_micros
        )?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, self.root.join(CURRENT_FILE))?;
        fs::File::open(&self.root)?.sync_all()
    }

    /// The directory of a generation.
    pub fn generation_dir(&self, generation: u64) -> PathBuf {
        self.root.join(format!("gen-{generation:06}"))
    }

    /// A shard's directory in a generation.
    pub fn shard_dir(&self, generation: u64, shard_idx: usize) -> PathBuf {
        self.generation_dir(generation)
            .join(format!("shard-{shard_idx:03}"))
    }

    /// Creates the shard directories of a new generation (removing a half-written one of
    /// the same number first: it was never named by `CURRENT`).
    ///
    /// # Errors
    /// The directories cannot be removed or created.
    pub fn create_generation(&self, generation: u64, cores: usize) -> io::Result<()> {
        let dir = self.generation_dir(generation);
        if dir.exists() {
            remove_generation_dir(&dir)?;
        }
        for shard_idx in 0..cores {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(self.shard_dir(generation, shard_idx))?;
        }
        fs::File::open(&self.root)?.sync_all()
    }

    /// Removes every generation directory but `keep`'s (older ones that a switch left, and
    /// newer ones a crash left half-written).
    ///
    /// # Errors
    /// A directory cannot be listed or removed.
    pub fn remove_other_generations(&self, keep: u64) -> io::Result<()> {
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(generation) = name
                .to_str()
                .and_then(|name| name.strip_prefix("gen-"))
                .and_then(|number| number.parse::<u64>().ok())
            else {
                continue;
            };
            if generation != keep {
                remove_generation_dir(&entry.path())?;
            }
        }
        fs::File::open(&self.root)?.sync_all()
    }

    /// The journal files of a shard directory, oldest first.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn journal_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut files: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(number) = entry
                .file_name()
                .to_str()
                .and_then(crate::journal::segment::number_of)
            {
                files.push((number, entry.path()));
            }
        }
        files.sort();
        Ok(files.into_iter().map(|(_, path)| path).collect())
    }
}

/// Removes a generation directory, its key files shredded first. A key file that cannot
/// be shredded is reported and the removal goes on (keeping the directory would keep
/// its journal files too).
fn remove_generation_dir(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let shard_dir = entry?.path();
        if !shard_dir.is_dir() {
            continue;
        }
        let key_file = shard_dir.join(crate::journal::ratchet::KEY_FILE_NAME);
        if let Err(error) = crate::journal::ratchet::shred_key_file(&key_file) {
            tracing::error!(
                file = %key_file.display(),
                "cannot overwrite the journal key file before removing it: {error}; its \
                 sealed seed stays in free space on the disk"
            );
        }
    }
    fs::remove_dir_all(dir)
}

fn bad_current(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is not a Mayfly CURRENT file ({what}); is --data-dir the right directory?",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_round_trips_and_generations_are_replaced_whole() {
        let root = std::env::temp_dir().join(format!("mayfly-layout-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let layout = Layout::open(&root).expect("created");
        assert_eq!(layout.current().expect("readable"), None);
        let current = Current {
            generation: 3,
            cores: 2,
            boot_micros: 1_764_000_000_000_000,
        };
        layout.create_generation(3, 2).expect("created");
        layout.write_current(&current).expect("written");
        assert_eq!(layout.current().expect("readable"), Some(current));
        assert!(layout.shard_dir(3, 1).is_dir());
        // A half-written newer generation and an older one both go; the current stays.
        layout.create_generation(4, 1).expect("created");
        fs::create_dir_all(layout.shard_dir(2, 0)).unwrap();
        // The old generation's key file is overwritten where it lies before it is
        // unlinked: a descriptor kept open reads the same blocks afterwards.
        let key_file = layout
            .shard_dir(2, 0)
            .join(crate::journal::ratchet::KEY_FILE_NAME);
        fs::write(
            &key_file,
            vec![0xa5; crate::journal::ratchet::KEY_FILE_BYTES],
        )
        .unwrap();
        let still_open = fs::File::open(&key_file).unwrap();
        layout.remove_other_generations(3).expect("removed");
        let mut after = Vec::new();
        std::io::Read::read_to_end(&mut &still_open, &mut after).unwrap();
        assert_eq!(after.len(), crate::journal::ratchet::KEY_FILE_BYTES);
        assert!(after.iter().all(|&byte| byte == 0), "overwritten in place");
        assert!(layout.generation_dir(3).is_dir());
        assert!(!layout.generation_dir(4).exists() && !layout.generation_dir(2).exists());
        fs::write(root.join(CURRENT_FILE), "generation x\n").unwrap();
        let error = layout.current().expect_err("refused");
        assert!(
            error.to_string().contains("not a Mayfly CURRENT file"),
            "{error}"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
