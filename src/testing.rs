//! Helpers shared by the crate's unit tests (compiled only for them): a fresh directory
//! that is removed afterwards, and a glommio executor on the test's own thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty directory for one test, removed (best effort) when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new directory named after `name`, unique to this process and this call, so tests
    /// running side by side never share one.
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "mayfly-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// Writes `contents` to the file `name` in the directory; its path.
    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A leftover directory in the temp dir is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `future` to completion on a glommio executor on this thread.
pub fn run_local<T>(future: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::default()
        .make()
        .expect("executor")
        .run(future)
}
