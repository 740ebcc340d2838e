//! Read a trailql dataset as its log defines it: an object store view whose listings under
//! the dataset root show only the files the last commit left live. DataFusion's listing
//! table then does all it does (partition pruning, statistics, pushdown) over exactly that
//! snapshot: files of a stopped run, or replaced by a compaction and not deleted yet, are
//! never read.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// A store that hides, under `root`, every object not in `live`.
pub struct SnapshotStore {
    inner: Arc<dyn ObjectStore>,
    root: Path,
    live: Arc<HashSet<Path>>,
    /// Every folder holding a live file, so listings by folder still descend.
    folders: Arc<HashSet<Path>>,
}

impl SnapshotStore {
    pub fn new(inner: Arc<dyn ObjectStore>, root: Path, live: HashSet<Path>) -> Self {
        let mut folders = HashSet::new();
        for file in &live {
            let parts: Vec<_> = file.parts().collect();
            for n in 1..parts.len() {
                folders.insert(parts[..n].iter().cloned().collect::<Path>());
            }
        }
        Self {
            inner,
            root,
            live: Arc::new(live),
            folders: Arc::new(folders),
        }
    }

    fn visible(&self, path: &Path) -> bool {
        path.prefix_match(&self.root).is_none() || self.live.contains(path)
    }
}

impl fmt::Display for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Snapshot({}, {} files)", self.inner, self.live.len())
    }
}

impl fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[async_trait::async_trait]
impl ObjectStore for SnapshotStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (root, live) = (self.root.clone(), self.live.clone());
        self.inner
            .list(prefix)
            .filter(move |m| {
                let keep = match m {
                    Ok(m) => m.location.prefix_match(&root).is_none() || live.contains(&m.location),
                    Err(_) => true,
                };
                futures::future::ready(keep)
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut listing = self.inner.list_with_delimiter(prefix).await?;
        listing.objects.retain(|m| self.visible(&m.location));
        listing
            .common_prefixes
            .retain(|p| p.prefix_match(&self.root).is_none() || self.folders.contains(p));
        Ok(listing)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
