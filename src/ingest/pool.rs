//! The decode pool: how many deliveries decode at once, and on how many threads.
//!
//! Decoding is CPU work proportional to a body's size, so it runs on tokio's
//! blocking pool, never on the threads that serve connections. One decode runs per
//! core at a time: besides the CPU, each may hold an inflated record (up to
//! `max_record_inflated_bytes`) outside the in-flight byte budget, so the slots also
//! bound that memory. A big delivery borrows the slots that are idle when its
//! records are known and splits its records across that many threads; decodes in
//! flight stay at one per core either way.

use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::decode::PARALLEL_DECODE_MIN_BYTES;

/// Slots when the number of cores cannot be read: the smallest machine Hydrant
/// is meant for has two.
const FALLBACK_CORES: usize = 2;

/// The pool closed (shutdown) before a slot came free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// No slot will come free: the runtime is shutting down.
    #[error("the decode pool is closed")]
    Closed,
    /// The decode itself panicked; the delivery is refused and retried.
    #[error("decoding failed unexpectedly")]
    Crashed,
}

/// Decode slots, one per core.
#[derive(Debug, Clone)]
pub struct DecodePool {
    slots: Arc<Semaphore>,
    cores: usize,
}

/// Threads lent to one decode: its own and the idle slots borrowed for it, given
/// back on drop.
#[derive(Debug)]
pub struct Threads<'a> {
    count: usize,
    _borrowed: Vec<SemaphorePermit<'a>>,
}

impl Threads<'_> {
    /// Threads the decode may use, its own included (at least 1).
    #[must_use]
    pub fn count(&self) -> usize {
        self.count
    }
}

impl DecodePool {
    /// A pool with one slot per core of this machine.
    #[must_use]
    pub fn per_core() -> Self {
        let cores = std::thread::available_parallelism()
            .map_or(FALLBACK_CORES, std::num::NonZeroUsize::get);
        Self::with_slots(cores)
    }

    /// A pool of `slots` (at least 1).
    #[must_use]
    pub fn with_slots(slots: usize) -> Self {
        let cores = slots.max(1);
        Self {
            slots: Arc::new(Semaphore::new(cores)),
            cores,
        }
    }

    /// Runs `work` on the blocking pool once a slot is free, inside the caller's
    /// tracing span (blocking threads do not inherit it), so that its log lines
    /// name the request.
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`] at shutdown; [`PoolError::Crashed`] if `work` panicked.
    pub async fn run<T, F>(&self, work: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&DecodePool) -> T + Send + 'static,
    {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| PoolError::Closed)?;
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

    /// The threads a decode of `encoded` bytes of records may use, called from
    /// inside [`DecodePool::run`]: its own, plus every slot idle at this moment when
    /// the records are big enough to be worth splitting.
    #[must_use]
    pub fn threads_for(&self, encoded: usize) -> Threads<'_> {
        let borrowed: Vec<_> = if encoded >= PARALLEL_DECODE_MIN_BYTES {
            std::iter::from_fn(|| self.slots.try_acquire().ok())
                .take(self.cores.saturating_sub(1))
                .collect()
        } else {
            Vec::new()
        };
        Threads {
            count: 1 + borrowed.len(),
            _borrowed: borrowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_decodes_keep_one_thread_and_big_ones_borrow_idle_slots() {
        let pool = DecodePool::with_slots(3);
        let (small, big) = pool
            .run(|pool| {
                let small = pool.threads_for(1).count();
                let big = pool.threads_for(PARALLEL_DECODE_MIN_BYTES);
                // While the big decode holds the idle slots, nothing is left to lend.
                let after = pool.threads_for(PARALLEL_DECODE_MIN_BYTES).count();
                assert_eq!(after, 1);
                (small, big.count())
            })
            .await
            .unwrap();
        assert_eq!((small, big), (1, 3));
        assert_eq!(pool.slots.available_permits(), 3, "every slot came back");
    }

    #[tokio::test]
    async fn a_panicking_decode_is_reported_and_frees_its_slot() {
        let pool = DecodePool::with_slots(1);
        fn buggy(_: &DecodePool) -> u8 {
            panic!("decoder bug")
        }
        assert_eq!(pool.run(buggy).await, Err(PoolError::Crashed));
        assert_eq!(pool.run(|_| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn a_closed_pool_refuses_work() {
        let pool = DecodePool::with_slots(1);
        pool.slots.close();
        assert_eq!(pool.run(|_| ()).await, Err(PoolError::Closed));
    }
}
