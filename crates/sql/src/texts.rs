//! The distinct texts of a string-view column, each with an id, found by view: a row's text is
//! hashed only when its 16-byte view is new. [`Texts`] serves the counts of
//! [`crate::group_count`] and the session's text ids of cached columns ([`crate::cache`]).

use arrow::array::{Array, StringViewArray};

/// A folded multiply: every input bit reaches every output bit (views of texts with the same
/// length and first four bytes differ only in their high half).
fn mix(key: u128) -> u64 {
    let fold = |x: u64, k: u64| {
        let product = u128::from(x) * u128::from(k);
        (product as u64) ^ ((product >> 64) as u64)
    };
    fold(
        fold(key as u64, 0x9E37_79B9_7F4A_7C15) ^ (key >> 64) as u64,
        0xC2B2_AE3D_27D4_EB4F,
    )
}

/// One entry of an [`IdTable`]: the key in two halves, and the table's epoch when it was put
/// (24 bytes a slot, as without the epoch).
#[derive(Clone, Copy)]
struct Slot {
    low: u64,
    high: u64,
    id: u32,
    epoch: u32,
}

/// A slot of no epoch: empty in every table.
const EMPTY: Slot = Slot {
    low: 0,
    high: 0,
    id: u32::MAX,
    epoch: 0,
};

/// Ids under `u128` keys: open addressing, linear probing, at most a quarter full (fewer
/// collisions, and so fewer mispredicted branches, than half full; measured). A slot holds a
/// key only if it was put in the table's current epoch, so that emptying the table is a new
/// epoch, not a write to every slot: the views of each Parquet file's dictionary are
/// forgotten when the next file starts, and the table of a column of addresses is 0.8 MB.
pub(crate) struct IdTable {
    slots: Vec<Slot>,
    shift: u32,
    len: usize,
    epoch: u32,
}

impl IdTable {
    pub(crate) fn new() -> Self {
        const BITS: u32 = 6;
        IdTable {
            slots: vec![EMPTY; 1 << BITS],
            shift: 64 - BITS,
            len: 0,
            epoch: 1,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the slots.
    fn memory_size(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    pub(crate) fn clear(&mut self) {
        if self.len > 0 {
            self.len = 0;
            self.epoch = self.epoch.wrapping_add(1);
            if self.epoch == EMPTY.epoch {
                self.slots.fill(EMPTY);
                self.epoch = 1;
            }
        }
    }

    /// The id under `key` where keys are enough; the common case, a key found in its first
    /// slot, takes one load and no loop.
    #[inline]
    pub(crate) fn get(&self, key: u128) -> Option<u32> {
        let slot = &self.slots[(mix(key) >> self.shift) as usize];
        if slot.low == key as u64 && slot.high == (key >> 64) as u64 && slot.epoch == self.epoch {
            Some(slot.id)
        } else {
            self.find(key, |_| true).ok()
        }
    }

    /// The id under `key` for which `same` holds, or else the slot where it goes.
    pub(crate) fn find(&self, key: u128, same: impl Fn(u32) -> bool) -> Result<u32, usize> {
        let (low, high) = (key as u64, (key >> 64) as u64);
        let mask = self.slots.len() - 1;
        let mut i = (mix(key) >> self.shift) as usize;
        loop {
            let slot = &self.slots[i];
            if slot.epoch != self.epoch {
                return Err(i);
            }
            if slot.low == low && slot.high == high && same(slot.id) {
                return Ok(slot.id);
            }
            i = (i + 1) & mask;
        }
    }

    /// Puts `id` under `key` at `slot`, which [`IdTable::find`] just gave.
    pub(crate) fn insert(&mut self, slot: usize, key: u128, id: u32) {
        self.slots[slot] = Slot {
            low: key as u64,
            high: (key >> 64) as u64,
            id,
            epoch: self.epoch,
        };
        self.len += 1;
        if self.len * 4 > self.slots.len() {
            self.rebuild(self.slots.len() * 2);
        }
    }

    /// The keys put again in `size` slots.
    fn rebuild(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        let epoch = std::mem::replace(&mut self.epoch, 1);
        self.shift = 64 - size.trailing_zeros();
        let mask = size - 1;
        for slot in old.into_iter().filter(|s| s.epoch == epoch) {
            let key = u128::from(slot.low) | (u128::from(slot.high) << 64);
            let mut i = (mix(key) >> self.shift) as usize;
            while self.slots[i].epoch == self.epoch {
                i = (i + 1) & mask;
            }
            self.slots[i] = Slot {
                epoch: self.epoch,
                ..slot
            };
        }
    }
}

/// The id of a null in a column.
pub(crate) const NULL_ID: u32 = u32::MAX;

/// Views known before these many are forgotten (a text's id is kept).
const MAX_VIEWS: usize = 1 << 16;

/// The distinct texts of one group column, each with an id, and the views known to hold them.
///
/// A view of up to 12 bytes holds its text (zero-padded, as Arrow requires), so it is a key
/// for good. A longer one points into one of its array's data buffers: it means the same text
/// as long as those are the same buffers, which they are batch after batch of one Parquet
/// column chunk (views into its dictionary page) or of one cached file; when they change, the
/// longer views are forgotten. So a row's text is hashed only when its view is new, and the
/// lookup takes no branch on the text's length.
pub(crate) struct Texts {
    /// Text `i` is `text[ends[i - 1]..ends[i]]`.
    text: String,
    ends: Vec<usize>,
    /// Text hash and length -> id.
    ids: IdTable,
    /// View -> id: views holding their text, and longer views into `buffers`.
    short: IdTable,
    long: IdTable,
    /// The buffers longer views point into, held so that they stay what they were.
    buffers: Vec<arrow::buffer::Buffer>,
    /// Rows seen, and how many held a view not known before.
    rows: usize,
    hashed: usize,
}

impl Default for Texts {
    fn default() -> Self {
        Self::new()
    }
}

impl Texts {
    pub(crate) fn new() -> Self {
        Texts {
            text: String::new(),
            ends: Vec::new(),
            ids: IdTable::new(),
            short: IdTable::new(),
            long: IdTable::new(),
            buffers: Vec::new(),
            rows: 0,
            hashed: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Bytes held: the texts, their ends and the tables.
    pub(crate) fn memory_size(&self) -> usize {
        self.text.capacity()
            + self.ends.capacity() * std::mem::size_of::<usize>()
            + self.ids.memory_size()
            + self.short.memory_size()
            + self.long.memory_size()
            + self.buffers.capacity() * std::mem::size_of::<arrow::buffer::Buffer>()
    }

    pub(crate) fn value(&self, id: u32) -> &str {
        let end = self.ends[id as usize];
        let start = if id == 0 {
            0
        } else {
            self.ends[id as usize - 1]
        };
        &self.text[start..end]
    }

    const JUDGED_AFTER: usize = 1 << 15;

    /// Whether, after [`Texts::JUDGED_AFTER`] rows, more than one row in three has held a new
    /// view (an address, an ID, each in its own place): then looking views up first only adds
    /// work to hashing the text.
    pub(crate) fn high_cardinality(&self) -> bool {
        self.rows >= Self::JUDGED_AFTER && self.hashed * 3 > self.rows
    }

    /// The id of `text`, a new one if it is new.
    fn text_id(&mut self, text: &str) -> u32 {
        self.hashed += 1;
        let key = Self::key(text);
        match self.ids.find(key, |id| self.value(id) == text) {
            Ok(id) => id,
            Err(slot) => {
                let id = self.ends.len() as u32;
                self.text.push_str(text);
                self.ends.push(self.text.len());
                self.ids.insert(slot, key, id);
                id
            }
        }
    }

    /// The id of `text`, if it is one of the texts.
    pub(crate) fn find(&self, text: &str) -> Option<u32> {
        self.ids
            .find(Self::key(text), |id| self.value(id) == text)
            .ok()
    }

    /// A text's key in the table of ids: its hash and length.
    fn key(text: &str) -> u128 {
        use std::hash::BuildHasher;
        let hash = foldhash::fast::FixedState::with_seed(0x5EED).hash_one(text.as_bytes());
        u128::from(hash) | (text.len() as u128) << 64
    }

    /// Takes in a batch's views: views into other buffers than the last batch's are forgotten
    /// (those holding their text are kept).
    fn start_batch(&mut self, views: &StringViewArray) {
        self.rows += views.len();
        let buffers = views.data_buffers();
        let same_buffers = buffers.len() == self.buffers.len()
            && buffers
                .iter()
                .zip(&self.buffers)
                .all(|(a, b)| a.as_ptr() == b.as_ptr() && a.len() == b.len());
        if !same_buffers {
            self.buffers = buffers.to_vec();
            self.long.clear();
        }
    }

    /// The id of the text of `row` (not null), whose view is `view`.
    #[inline(always)]
    fn id_of(&mut self, views: &StringViewArray, row: usize, view: u128) -> u32 {
        // A select, not a branch: lengths come in any order.
        let known = if view as u32 <= 12 {
            &self.short
        } else {
            &self.long
        };
        match known.get(view) {
            Some(id) => id,
            None => self.new_view(views, row, view),
        }
    }

    /// Each row's id, put in its 32 bits (`shift`) of `packed`.
    pub(crate) fn add(&mut self, views: &StringViewArray, packed: &mut [u128], shift: u32) {
        self.each_id(views, |row, id| packed[row] |= u128::from(id) << shift);
    }

    /// Calls `f` with each row and its text's id ([`NULL_ID`] for a null): one pass.
    #[inline(always)]
    pub(crate) fn each_id(&mut self, views: &StringViewArray, mut f: impl FnMut(usize, u32)) {
        self.start_batch(views);
        match views.nulls().filter(|n| n.null_count() > 0) {
            None => {
                for (row, &view) in views.views().iter().enumerate() {
                    f(row, self.id_of(views, row, view));
                }
            }
            Some(valid) => {
                for (row, &view) in views.views().iter().enumerate() {
                    let id = if valid.is_valid(row) {
                        self.id_of(views, row, view)
                    } else {
                        NULL_ID
                    };
                    f(row, id);
                }
            }
        }
    }

    /// The id of the text of `row`, whose `view` is new.
    #[inline(never)]
    fn new_view(&mut self, views: &StringViewArray, row: usize, view: u128) -> u32 {
        let id = self.text_id(views.value(row));
        let known = if view as u32 <= 12 {
            &mut self.short
        } else {
            &mut self.long
        };
        if known.len() >= MAX_VIEWS {
            known.clear();
        }
        if let Err(slot) = known.find(view, |_| true) {
            known.insert(slot, view, id);
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_table_forgets_its_keys_when_cleared_and_keeps_them_when_it_grows() {
        let mut table = IdTable::new();
        let key = |i: u32| u128::from(i) << 70 | u128::from(i);
        for i in 0..1000 {
            let slot = table.find(key(i), |_| true).unwrap_err();
            table.insert(slot, key(i), i);
        }
        assert_eq!(table.len(), 1000);
        assert!(
            (0..1000).all(|i| table.get(key(i)) == Some(i)),
            "kept as it grew"
        );
        table.clear();
        assert_eq!(table.len(), 0);
        assert!((0..1000).all(|i| table.get(key(i)).is_none()), "forgotten");
        let slot = table.find(key(7), |_| true).unwrap_err();
        table.insert(slot, key(7), 70);
        assert_eq!(table.get(key(7)), Some(70));
        assert_eq!(table.get(key(8)), None);
        // The last epoch: clearing empties every slot and starts again.
        table.epoch = u32::MAX;
        let slot = table.find(key(9), |_| true).unwrap_err();
        table.insert(slot, key(9), 9);
        table.clear();
        assert_eq!(table.epoch, 1);
        assert!(
            (0..1000).all(|i| table.get(key(i)).is_none()),
            "forgotten after wrapping"
        );
    }
}
