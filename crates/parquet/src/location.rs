//! Where a dataset lives: a folder in an object store (a local folder is one too).

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::{Path as StorePath, PathPart};

/// A dataset folder. Paths inside it are written relative to it, `/`-separated, with partition
/// values percent-encoded as Hive does (`region=%2E%2E%2Fx`); those names reach the store as
/// they are, so any Hive-style reader decodes the same values.
#[derive(Debug, Clone)]
pub struct DatasetLocation {
    pub store: Arc<dyn ObjectStore>,
    pub root: StorePath,
    /// How the user named the folder (a local path or a URL), for messages.
    pub display: String,
    /// A local folder (flushed with `fsync`, and reached by Delta through a `file://` URL).
    local: bool,
}

impl DatasetLocation {
    pub fn new(store: Arc<dyn ObjectStore>, root: StorePath, display: String, local: bool) -> Self {
        Self {
            store,
            root,
            display: display.trim_end_matches('/').to_string(),
            local,
        }
    }

    /// The object at `rel` (a `/`-separated path relative to the root). Segments made by
    /// trailql are never `.`, `..` or control characters, the only ones `PathPart::parse`
    /// refuses; any other is escaped by `PathPart::from`.
    pub fn path(&self, rel: &str) -> StorePath {
        self.root
            .parts()
            .chain(
                rel.split('/')
                    .filter(|p| !p.is_empty())
                    .map(|p| PathPart::parse(p).unwrap_or_else(|_| PathPart::from(p))),
            )
            .collect()
    }

    /// The path of `path` relative to the root, as [`Self::path`] takes it; `None` outside it.
    pub fn rel(&self, path: &StorePath) -> Option<String> {
        let parts: Vec<String> = path
            .prefix_match(&self.root)?
            .map(|p| p.as_ref().to_string())
            .collect();
        Some(parts.join("/"))
    }

    /// Make a stored object durable. Object stores are once a put returns; a local file is
    /// flushed to disk (object_store's local store writes and renames, without `fsync`), so
    /// that a commit naming it can never outlive it in a power cut.
    pub fn sync(&self, rel: &str) -> std::io::Result<()> {
        if self.local {
            std::fs::File::open(self.display(rel))?.sync_all()?;
        }
        Ok(())
    }

    /// Whether the dataset is a local folder.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// How the user would name the object at `rel`.
    pub fn display(&self, rel: &str) -> String {
        format!("{}/{rel}", self.display)
    }
}
