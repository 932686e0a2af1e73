//! Decoding on several cores: the policy (one decode per core at a time, idle
//! cores lent to big deliveries), the split of a delivery's records into runs, and
//! the join of the runs' events in record order.

use std::borrow::Cow;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::record::{Part, decode_run};
use super::{DecodeError, DecodeSettings, Decoded};
use crate::event::Delivery;
use crate::limits::DecodeBudget;

/// Deliveries whose records hold at least this much base64 are worth decoding on
/// several threads ([`decode_records_in_parallel`]). Firehose sends up to 64 MiB in
/// one request; decoding that on one thread would leave the other cores idle for a
/// second or more. Smaller deliveries are not split: several of them in flight
/// already keep every core busy, and each split costs a thread start.
pub const PARALLEL_DECODE_MIN_BYTES: usize = 8 * crate::limits::MIB as usize;

/// The cores decoding may use. Decoding is CPU work, and each decode may hold an
/// inflated record outside the delivery's byte budget, so decodes run one per core:
/// a delivery waits for a [`DecodeSlot`] before it decodes, and a big one also
/// borrows the slots that are idle at that moment, one more thread per slot
/// ([`DecodePool::decode`]).
#[derive(Debug, Clone)]
pub struct DecodePool {
    slots: Arc<Semaphore>,
    cores: usize,
}

/// Why [`DecodePool::run`] did not return its work's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// No slot will come free: the runtime is shutting down.
    #[error("the decode pool is closed")]
    Closed,
    /// The work panicked (a decoder bug); its slot is free again.
    #[error("decoding failed unexpectedly")]
    Crashed,
}

/// Leave to decode on one core; dropping it frees the core.
#[derive(Debug)]
pub struct DecodeSlot {
    _permit: OwnedSemaphorePermit,
}

impl DecodePool {
    /// A pool of `cores` slots (at least one).
    #[must_use]
    pub fn new(cores: usize) -> Self {
        let cores = cores.max(1);
        Self {
            slots: Arc::new(Semaphore::new(cores)),
            cores,
        }
    }

    /// A pool of one slot per core of this machine (two when that is unknown).
    #[must_use]
    pub fn for_this_machine() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
    }

    /// The number of slots.
    #[must_use]
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Waits for a free slot; hold it while decoding (on a blocking thread).
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`] once the pool is closed.
    pub async fn slot(&self) -> Result<DecodeSlot, PoolError> {
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map(|permit| DecodeSlot { _permit: permit })
            .map_err(|_| PoolError::Closed)
    }

    /// Runs `work` on tokio's blocking pool once a slot is free, so that decoding
    /// never holds up the threads that serve connections, and inside the
    /// caller's tracing span, which blocking threads do not inherit (a decoder's
    /// log lines then name the request). `work` gets the pool to lend it idle
    /// slots ([`DecodePool::decode`]).
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`] at shutdown; [`PoolError::Crashed`] if `work` panicked.
    pub async fn run<T, F>(&self, work: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&DecodePool) -> T + Send + 'static,
    {
        let slot = self.slot().await?;
        let pool = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let _slot = slot;
            work(&pool)
        })
        .await
        .map_err(|_| PoolError::Crashed)
    }

    /// [`decode_records_in_parallel`] on the calling thread, which holds a
    /// [`DecodeSlot`], plus one thread per slot free at this moment when the
    /// records hold at least [`PARALLEL_DECODE_MIN_BYTES`] of base64. The borrowed
    /// slots are given back when decoding ends.
    ///
    /// # Errors
    ///
    /// As [`decode_records_in_parallel`].
    pub fn decode(
        &self,
        records: &[Cow<'_, str>],
        delivery: &Delivery,
        settings: &DecodeSettings,
        budget: &Arc<DecodeBudget>,
    ) -> Result<Decoded, DecodeError> {
        let borrowed = self.borrow_idle(records);
        decode_records_in_parallel(records, delivery, settings, 1 + borrowed.len(), budget)
    }

    /// The idle slots a delivery of `records` may borrow: none below
    /// [`PARALLEL_DECODE_MIN_BYTES`], else as many as are free, but for the one its
    /// caller holds.
    pub(super) fn borrow_idle(&self, records: &[Cow<'_, str>]) -> Vec<OwnedSemaphorePermit> {
        let encoded: usize = records.iter().map(|record| record.len()).sum();
        if encoded < PARALLEL_DECODE_MIN_BYTES {
            return Vec::new();
        }
        std::iter::from_fn(|| Arc::clone(&self.slots).try_acquire_owned().ok())
            .take(self.cores - 1)
            .collect()
    }
}

/// [`super::decode_records`] with every event counted against `budget`, and the
/// records cut into up to `threads` contiguous runs of about equal size, decoded
/// side by side (the caller's thread and `threads - 1` scoped ones). The events
/// come out in record order all the same.
///
/// # Errors
///
/// As [`super::decode_records`]: the first bad record in request order, when
/// refused; [`DecodeError::Stopped`] when the budget stopped decoding.
pub fn decode_records_in_parallel(
    records: &[Cow<'_, str>],
    delivery: &Delivery,
    settings: &DecodeSettings,
    threads: usize,
    budget: &Arc<DecodeBudget>,
) -> Result<Decoded, DecodeError> {
    let runs = split_runs(records, threads);
    let parts = if runs.len() <= 1 {
        vec![decode_run(records, 0, delivery, settings, budget)]
    } else {
        std::thread::scope(|scope| {
            let (first, rest) = runs.split_first().expect("several runs");
            let handles: Vec<_> = rest
                .iter()
                .map(|run| {
                    let run = run.clone();
                    scope.spawn(move || {
                        decode_run(&records[run.clone()], run.start, delivery, settings, budget)
                    })
                })
                .collect();
            let mut parts = vec![decode_run(
                &records[first.clone()],
                0,
                delivery,
                settings,
                budget,
            )];
            parts.extend(handles.into_iter().map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }));
            parts
        })
    };
    // A stopped budget fails the whole delivery, whichever run met it.
    budget.check()?;
    join(parts, delivery, budget)
}

/// The runs' events and counts as one delivery's, in record order.
fn join(
    parts: Vec<Result<Part, DecodeError>>,
    delivery: &Delivery,
    budget: &Arc<DecodeBudget>,
) -> Result<Decoded, DecodeError> {
    let mut parts = parts.into_iter();
    // The runs are in record order, so the first error met is the first bad record.
    let mut whole = parts
        .next()
        .unwrap_or_else(|| Ok(Part::new(delivery, 0, budget)))?;
    for part in parts {
        let part = part?;
        whole.writer.append(part.writer);
        match (&mut whole.dead_letters, part.dead_letters) {
            (Some(mine), Some(theirs)) => mine.append(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
        whole.stats.add(part.stats);
    }
    let dead_letters = whole
        .dead_letters
        .map(crate::event::EventWriter::finish)
        .unwrap_or_default();
    Ok(Decoded::new(
        whole.writer.finish(),
        dead_letters,
        whole.stats,
    ))
}

/// Cuts `records` into at most `runs` contiguous ranges of about equal base64 size.
pub(super) fn split_runs(records: &[Cow<'_, str>], runs: usize) -> Vec<std::ops::Range<usize>> {
    let total: usize = records.iter().map(|record| record.len()).sum();
    let runs = runs.clamp(1, records.len().max(1));
    let share = total.div_ceil(runs).max(1);
    let mut ranges = Vec::with_capacity(runs);
    let (mut start, mut bytes) = (0, 0);
    for (index, record) in records.iter().enumerate() {
        bytes += record.len();
        if bytes >= share && ranges.len() + 1 < runs {
            ranges.push(start..index + 1);
            start = index + 1;
            bytes = 0;
        }
    }
    if start < records.len() || ranges.is_empty() {
        ranges.push(start..records.len());
    }
    ranges
}
