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
    /// object_store's local store reads `%2F` in a path as `/` (its paths are URLs), so local
    /// paths are built part by part, which escapes `%` once more for it.
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

    /// The object at `rel` (a `/`-separated path relative to the root).
    pub fn path(&self, rel: &str) -> StorePath {
        let parts = rel.split('/').filter(|p| !p.is_empty());
        if self.local {
            self.root
                .parts()
                .chain(parts.map(|p| PathPart::from(p.to_string())))
                .collect()
        } else {
            // Segments made by trailql are never `.`, `..` or control characters, which are
            // all that `PathPart::parse` refuses; anything else is escaped as a local path.
            self.root
                .parts()
                .chain(parts.map(|p| PathPart::parse(p).unwrap_or_else(|_| PathPart::from(p))))
                .collect()
        }
    }

    /// The path of `path` relative to the root, as [`Self::path`] takes it; `None` outside it.
    pub fn rel(&self, path: &StorePath) -> Option<String> {
        let parts: Vec<String> = path
            .prefix_match(&self.root)?
            .map(|p| {
                if self.local {
                    percent_encoding::percent_decode_str(p.as_ref())
                        .decode_utf8_lossy()
                        .into_owned()
                } else {
                    p.as_ref().to_string()
                }
            })
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
