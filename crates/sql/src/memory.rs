//! The memory a session's queries may hold: [`QueryMemoryPool`].

use std::collections::HashMap;
use std::sync::Mutex;

use datafusion::error::Result;
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// A memory limit for a query. The operators that can spill (sorts, aggregations) share three
/// quarters of it fairly, as in DataFusion's `FairSpillPool`, and spill what does not fit; those
/// that cannot (the merge of a sort's spilled runs, a join's build side) may also take the last
/// quarter: without a limit, the merge of a large sort's runs would read all of them at once, in
/// memory that grows with the data. The merge of sorted partitions (`SortPreservingMergeExec`)
/// is never refused: it holds a batch or two of each partition whatever the data, but
/// DataFusion counts each batch at the size of every buffer it shares with others, so a sort
/// that fits would fail there, after all its work.
#[derive(Debug)]
pub(crate) struct QueryMemoryPool {
    shared: FairSpillPool,
    limit: usize,
    reserve: usize,
    /// What each consumer that cannot spill holds beyond the shared part, by its id, and the
    /// total of it held in the reserve.
    beyond: Mutex<(HashMap<usize, usize>, usize)>,
}

/// Whether what `consumer` holds beyond the shared part counts in the reserve: all but the
/// merge of sorted partitions, which is given what it asks for (see [`QueryMemoryPool`]).
fn in_reserve(consumer: &MemoryConsumer) -> bool {
    !consumer.name().starts_with("SortPreservingMergeExec")
}

impl QueryMemoryPool {
    pub(crate) fn new(limit: usize) -> Self {
        let reserve = limit / 4;
        Self {
            shared: FairSpillPool::new(limit - reserve),
            limit,
            reserve,
            beyond: Mutex::new((HashMap::new(), 0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<usize, usize>, usize)> {
        self.beyond.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Display for QueryMemoryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |bytes: usize| bytes >> 20;
        write!(
            f,
            "{}(limit: {} MiB, {} MiB of it kept for what cannot spill)",
            self.name(),
            mib(self.limit),
            mib(self.reserve)
        )
    }
}

impl MemoryPool for QueryMemoryPool {
    fn name(&self) -> &str {
        "QueryMemoryPool"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
        let mut guard = self.lock();
        let (held, total) = &mut *guard;
        let beyond = held.remove(&consumer.id()).unwrap_or(0);
        if in_reserve(consumer) {
            *total -= beyond;
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        let from_beyond = {
            let mut guard = self.lock();
            let (held, total) = &mut *guard;
            match held.get_mut(&reservation.consumer().id()) {
                Some(bytes) => {
                    let from_beyond = shrink.min(*bytes);
                    *bytes -= from_beyond;
                    if in_reserve(reservation.consumer()) {
                        *total -= from_beyond;
                    }
                    from_beyond
                }
                None => 0,
            }
        };
        self.shared.shrink(reservation, shrink - from_beyond);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        match self.shared.try_grow(reservation, additional) {
            Err(e) if !reservation.consumer().can_spill() => {
                let consumer = reservation.consumer();
                let counted = in_reserve(consumer);
                let mut guard = self.lock();
                let (held, total) = &mut *guard;
                if counted && *total + additional > self.reserve {
                    return Err(e);
                }
                *total += if counted { additional } else { 0 };
                *held.entry(consumer.id()).or_default() += additional;
                Ok(())
            }
            grown => grown,
        }
    }

    fn reserved(&self) -> usize {
        self.shared.reserved() + self.lock().1
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn spillers_share_three_quarters_and_what_cannot_spill_may_take_the_rest() {
        let pool: Arc<dyn MemoryPool> = Arc::new(QueryMemoryPool::new(400));
        let sort = |name: &str| {
            MemoryConsumer::new(name)
                .with_can_spill(true)
                .register(&pool)
        };
        let (a, b) = (sort("sort a"), sort("sort b"));
        // Two spillers get half of the shared 300 each, no more: beyond it they spill.
        a.try_grow(150).unwrap();
        assert!(a.try_grow(1).is_err());
        b.try_grow(120).unwrap();
        // A merge takes what the spillers left, then the reserve, and no more.
        let merge = MemoryConsumer::new("merge").register(&pool);
        merge.try_grow(30).unwrap();
        merge.try_grow(100).unwrap();
        assert!(merge.try_grow(1).is_err(), "the reserve is a quarter");
        assert_eq!(pool.reserved(), 400);
        // Given back to the reserve first; dropped, everything is returned.
        merge.shrink(60);
        assert_eq!(pool.reserved(), 340);
        let join = MemoryConsumer::new("join").register(&pool);
        join.try_grow(60).unwrap();
        drop(merge);
        drop(join);
        assert_eq!(pool.reserved(), 270);
        b.free();
        a.free();
        assert_eq!(pool.reserved(), 0);
        assert!(sort("sort c").try_grow(301).is_err());
        // The merge of sorted partitions is never refused, and counts in no reserve.
        let spm = MemoryConsumer::new("SortPreservingMergeExec[0]").register(&pool);
        spm.try_grow(1000).unwrap();
        let merge = MemoryConsumer::new("ExternalSorterMerge[0]").register(&pool);
        merge.try_grow(300).unwrap();
        merge.try_grow(100).unwrap();
        assert!(merge.try_grow(1).is_err());
        drop(spm);
        assert_eq!(pool.reserved(), 400);
    }
}
