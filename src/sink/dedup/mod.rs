//! Duplicate deliveries: what keeps a Firehose retry from being stored twice.
//!
//! Firehose is at-least-once. It resends a batch, with the same request id, when it
//! did not see our 200 (a timeout, a reset connection, a 503 because one sink
//! failed). Hydrant protects against storing such a retry twice in three layers, each
//! keyed by the [`DeliveryKey`] (source ARN + request id):
//!
//! 1. **One window per sink, in the fan-out** ([`SinkWindow`], held by
//!    [`super::fanout`]). Every sink remembers the deliveries it committed for
//!    `dedup_window` (default 2 h, the longest retry duration Firehose allows), at
//!    most `dedup_capacity` of them. The fan-out asks a sink's window **once per
//!    delivery** ([`SinkWindow::admit`]), before anything is written: a delivery the
//!    sink committed is answered without writing it again, so a retry after a
//!    partial failure only goes to the sinks that failed. A delivery that an
//!    identical request is committing right now is not written either: it waits for
//!    that request and shares its outcome ([`Admission::Wait`]), so a copy is never
//!    answered 200 before its original is durable, and fails when the original
//!    fails. A delivery is remembered only once its sink acknowledged it; one that
//!    failed is not, so its retry is stored in full. The window of a **file sink** is
//!    the one its commit journal keeps: the sink creates it, its recovery (journal
//!    replay at startup, or the rebuild of a damaged directory) seeds it, and its
//!    writer records each group's deliveries in it as the group's journal line is
//!    synced ([`SinkWindow::commit`]). So after a restart or a crash a file sink
//!    still recognises what it acknowledged. Every other sink's window is made by
//!    the fan-out and lives in memory only. The server also peeks at the windows
//!    before decoding ([`super::fanout::Sinks::committed_everywhere`]), to answer a
//!    retry that every sink it could go to already has without decoding it again.
//! 2. **NATS message ids.** The `nats` sink gives each message a `Nats-Msg-Id` made
//!    of the delivery key, table, record and event index, and JetStream drops an id
//!    it stored within the stream's own duplicate window (`duplicate_window`). This
//!    covers a delivery the sink committed only in part, and a retry that reaches
//!    another node or comes after a restart (see [`super::nats`]).
//! 3. **S3 object keys.** The `s3` sink writes one object per delivery and table,
//!    whose key is a function of the delivery (`{request_id}` or `{delivery_key}`),
//!    so a retry overwrites the same object instead of adding one (see
//!    [`super::s3`]; keys with `{date}`/`{hour}` differ when a retry comes in a later
//!    hour). Kafka has no such layer: its records carry the delivery key, and
//!    consumers de-duplicate on it.
//!
//! Memory of a window is bounded two ways: entries older than the window are
//! forgotten, and past `capacity` entries the oldest go first. A retry that arrives
//! after its key was forgotten is stored again (Firehose's at-least-once contract
//! still holds; only the duplicate is not suppressed).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::{Committed, SinkError};
use crate::clock::{duration_ms, now_ms};

/// Default time a committed delivery is remembered. Firehose retries a failed batch
/// for at most 7200 s (`RetryOptions.DurationInSeconds`), so a two-hour window covers
/// every retry Firehose can make.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7200);

/// Default number of committed deliveries remembered per sink. 100,000 cover two
/// hours at ~14 deliveries per second; busier servers should raise it. A remembered
/// delivery costs about 45 bytes of memory (measured by `benches/journal.rs`:
/// 42.8 MiB for 1 M) and, in a file sink at one delivery per commit, about 170 bytes
/// of journal on disk.
pub const DEFAULT_DEDUP_CAPACITY: usize = 100_000;

/// Identifies one delivery across Firehose's retries: the stream that sent it (its
/// source ARN) and its request id, which Firehose keeps for every retry of a batch.
///
/// The two parts are hashed with a length in front of each, so that no two
/// different (ARN, id) pairs share a key: joining them with a separator would let
/// `deliverystream/a b` + `c` and `deliverystream/a` + `b c` collide, and the
/// second delivery would be answered "duplicate" without being stored. The first
/// 128 bits of SHA-256 are kept: a fixed 16 bytes per remembered delivery whatever
/// the id's length, and an accidental collision is out of reach (2^-128 per pair;
/// finding a second pair for a given key takes a SHA-256 second preimage).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryKey([u8; DeliveryKey::BYTES]);

impl DeliveryKey {
    /// Bytes of a key.
    pub const BYTES: usize = 16;
    /// Characters of a key in hex, its written form (journal, message ids).
    pub const HEX_LEN: usize = 2 * Self::BYTES;

    /// The key of the delivery with `request_id` from the stream `source_arn`
    /// (`None` when the sender gave no ARN: a hand-made request).
    #[must_use]
    pub fn new(source_arn: Option<&str>, request_id: &str) -> Self {
        let mut hash = Sha256::new();
        match source_arn {
            // A tag byte tells an absent ARN from an empty one.
            None => hash.update([0]),
            Some(arn) => {
                hash.update([1]);
                hash.update((arn.len() as u64).to_be_bytes());
                hash.update(arn.as_bytes());
            }
        }
        hash.update((request_id.len() as u64).to_be_bytes());
        hash.update(request_id.as_bytes());
        let digest: [u8; 32] = hash.finalize().into();
        let mut key = [0; Self::BYTES];
        key.copy_from_slice(&digest[..Self::BYTES]);
        Self(key)
    }

    /// The key a journal written before keys were hashed names: `"<ARN> <id>"`, or
    /// `"- <id>"` without an ARN. Real ARNs hold no space, so the first space ends it.
    #[must_use]
    pub fn from_legacy(text: &str) -> Self {
        match text.split_once(' ') {
            Some(("-", request_id)) => Self::new(None, request_id),
            Some((arn, request_id)) => Self::new(Some(arn), request_id),
            None => Self::new(None, text),
        }
    }

    /// Reads the hex form written by [`DeliveryKey::to_hex`] (either case).
    #[must_use]
    pub fn from_hex(text: &str) -> Option<Self> {
        fn nibble(digit: u8) -> Option<u8> {
            match digit {
                b'0'..=b'9' => Some(digit - b'0'),
                b'a'..=b'f' => Some(digit - b'a' + 10),
                b'A'..=b'F' => Some(digit - b'A' + 10),
                _ => None,
            }
        }
        if text.len() != Self::HEX_LEN {
            return None;
        }
        let mut key = [0; Self::BYTES];
        for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Self(key))
    }

    /// The key as 32 lower-case hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        let mut text = Vec::with_capacity(Self::HEX_LEN);
        self.write_hex(&mut text);
        String::from_utf8(text).expect("hex digits are ASCII")
    }

    /// Appends the key as 32 lower-case hex digits to `out` (journal lines are
    /// written this way, without a `String` per key).
    pub fn write_hex(&self, out: &mut Vec<u8>) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for byte in self.0 {
            out.push(DIGITS[usize::from(byte >> 4)]);
            out.push(DIGITS[usize::from(byte & 0x0f)]);
        }
    }
}

impl fmt::Debug for DeliveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeliveryKey({})", self.to_hex())
    }
}

impl fmt::Display for DeliveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Keys per chunk of a [`DedupWindow`]: 7/8 of 2^16, the most a hash set of 2^16
/// buckets holds, so a full chunk fills its table exactly (~43 bytes per key with
/// its queue entry). Small enough that the largest rehash the window ever does (a
/// chunk growing) takes about a millisecond; large enough that a window of 1 M keys
/// is 18 chunks, each probed once per lookup.
const CHUNK_KEYS: usize = 57_344;

/// Committed delivery keys with the time they were committed.
///
/// Keys are kept in insertion order and leave only from the oldest end (by age or
/// capacity), so the keys remembered are always a contiguous run of insertion
/// positions: [`DedupWindow::oldest_position`] up to [`DedupWindow::inserted`]. The
/// file sink's journal uses those positions to know when every key of an old journal
/// generation has been forgotten.
///
/// The keys are held in chunks of [`CHUNK_KEYS`], oldest first. New keys go into the
/// newest chunk only and forgotten keys leave the oldest only, so a chunk stops
/// growing once it is full and is dropped whole once empty. One big hash set under
/// the same churn fills up with deleted slots and, every so many commits, rebuilds
/// its whole table: at 1.8 M keys that took 100 ms on the writer thread.
#[derive(Debug)]
pub struct DedupWindow {
    chunks: VecDeque<Chunk>,
    /// Keys remembered.
    len: usize,
    window_ms: u64,
    capacity: usize,
    /// Keys inserted since the window was made (the position the next key gets).
    inserted: u64,
}

/// Consecutively inserted keys.
#[derive(Debug, Default)]
struct Chunk {
    /// The keys still remembered, for lookups.
    keys: HashSet<DeliveryKey>,
    /// Every key inserted into the chunk with its commit time, in insertion order.
    order: Vec<(u64, DeliveryKey)>,
    /// How many of `order` (from its start) are forgotten.
    forgotten: usize,
}

impl DedupWindow {
    /// A window remembering keys for `window_ms` milliseconds, at most `capacity` keys.
    #[must_use]
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            len: 0,
            window_ms,
            capacity,
            inserted: 0,
        }
    }

    /// Whether `key` was committed within the window before `now_ms`.
    pub fn contains(&mut self, key: &DeliveryKey, now_ms: u64) -> bool {
        self.expire(now_ms);
        self.remembers(key)
    }

    /// Whether `key` is remembered (newest chunks first: retries are mostly recent).
    fn remembers(&self, key: &DeliveryKey) -> bool {
        self.chunks
            .iter()
            .rev()
            .any(|chunk| chunk.keys.contains(key))
    }

    /// Records `key` as committed at `at_ms`. Returns whether it is new (a key
    /// already remembered keeps its place and time).
    pub fn insert(&mut self, key: DeliveryKey, at_ms: u64) -> bool {
        if self.capacity == 0 || self.remembers(&key) {
            return false;
        }
        let chunk_keys = CHUNK_KEYS.min(self.capacity);
        if self
            .chunks
            .back()
            .is_none_or(|chunk| chunk.order.len() >= chunk_keys)
        {
            if let Some(full) = self.chunks.back_mut() {
                full.order.shrink_to_fit();
            }
            self.chunks.push_back(Chunk::default());
        }
        let chunk = self.chunks.back_mut().expect("a chunk was just made");
        chunk.keys.insert(key);
        chunk.order.push((at_ms, key));
        self.len += 1;
        self.inserted += 1;
        while self.len > self.capacity {
            self.pop_oldest();
        }
        true
    }

    /// Forgets the keys committed more than the window before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.window_ms);
        while self
            .chunks
            .front()
            .and_then(|chunk| chunk.order.get(chunk.forgotten))
            .is_some_and(|(at, _)| *at < horizon)
        {
            self.pop_oldest();
        }
    }

    /// Number of keys remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of keys ever inserted: the insertion position the next new key gets.
    #[must_use]
    pub fn inserted(&self) -> u64 {
        self.inserted
    }

    /// Insertion position of the oldest key still remembered ([`Self::inserted`]
    /// when none is): every key inserted before it has been forgotten.
    #[must_use]
    pub fn oldest_position(&self) -> u64 {
        self.inserted - self.len as u64
    }

    /// The remembered keys with their commit times, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (DeliveryKey, u64)> + '_ {
        self.chunks
            .iter()
            .flat_map(|chunk| &chunk.order[chunk.forgotten..])
            .map(|(at, key)| (*key, *at))
    }

    fn pop_oldest(&mut self) {
        let Some(chunk) = self.chunks.front_mut() else {
            return;
        };
        if let Some((_, key)) = chunk.order.get(chunk.forgotten) {
            chunk.keys.remove(key);
            chunk.forgotten += 1;
            self.len -= 1;
        }
        if chunk.forgotten >= chunk.order.len() {
            self.chunks.pop_front();
        }
    }
}

/// What a delivery waiting for an identical one is told when that one ends without
/// an outcome (its request was dropped, say at the fan-out's deadline).
const ABANDONED: &str = "an identical delivery being committed was abandoned; retry later";

/// One sink's duplicate window: the deliveries it committed (a [`DedupWindow`]) and
/// those being committed right now, each with the requests waiting for it.
///
/// Every delivery meets a sink's window once, through [`SinkWindow::admit`]. The
/// first request for a key gets a [`Claim`] and commits the delivery; an identical
/// request arriving meanwhile waits for that claim's outcome instead of writing the
/// same data again (before this window knew about deliveries in flight, the file
/// writer caught such copies only when they met in one group commit). A claim ends
/// when its holder reports the outcome ([`Claim::finish`]), when the sink records the
/// delivery as committed ([`SinkWindow::commit`]), or when the last clone of it is
/// dropped. A file sink keeps a clone while the delivery is queued for its writer, so
/// a request dropped at the deadline does not let a retry in while the first write
/// may still land.
#[derive(Debug)]
pub struct SinkWindow {
    state: Mutex<WindowState>,
}

#[derive(Debug)]
struct WindowState {
    committed: DedupWindow,
    in_flight: HashMap<DeliveryKey, InFlight>,
    /// Numbers claims, so that a claim that ended cannot end a later one's.
    claims: u64,
}

/// A delivery being committed: by which claim, and who waits for it.
#[derive(Debug)]
struct InFlight {
    claim: u64,
    waiters: Vec<oneshot::Sender<Result<(), SinkError>>>,
}

/// What a sink's window says about a delivery.
#[derive(Debug)]
pub enum Admission {
    /// The sink committed it within the window: answer without writing.
    Duplicate,
    /// An identical request is committing it: its outcome is this one's.
    Wait(Waiting),
    /// New: the holder commits it, then reports the outcome on the claim.
    Claimed(Claim),
}

/// A request waiting for an identical one to be committed.
#[derive(Debug)]
pub struct Waiting(oneshot::Receiver<Result<(), SinkError>>);

impl Waiting {
    /// Waits for the original: [`Committed::Duplicate`] once it is committed, or its
    /// error.
    ///
    /// # Errors
    ///
    /// The original's [`SinkError`]; [`SinkError::Unavailable`] when it was
    /// abandoned without an outcome.
    pub async fn outcome(self) -> Result<Committed, SinkError> {
        match self.0.await {
            Ok(Ok(())) => Ok(Committed::Duplicate),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(SinkError::Unavailable(ABANDONED.into())),
        }
    }
}

/// The right (and duty) to commit one delivery to one sink. Clones share it: it
/// ends when one of them is finished, or when the last one is dropped (then as a
/// failure).
#[derive(Debug, Clone)]
pub struct Claim(Arc<ClaimInner>);

#[derive(Debug)]
struct ClaimInner {
    window: Arc<SinkWindow>,
    key: DeliveryKey,
    id: u64,
}

impl Claim {
    /// The delivery claimed.
    #[must_use]
    pub fn key(&self) -> DeliveryKey {
        self.0.key
    }

    /// Reports how committing the delivery ended: a success remembers it as
    /// committed; either way the requests waiting for it get the outcome.
    pub fn finish(&self, outcome: &Result<Committed, SinkError>) {
        let outcome = outcome.as_ref().map(|_| ()).map_err(Clone::clone);
        self.0.window.end_claim(self.0.key, self.0.id, &outcome);
    }
}

impl Drop for ClaimInner {
    fn drop(&mut self) {
        self.window.end_claim(
            self.key,
            self.id,
            &Err(SinkError::Unavailable(ABANDONED.into())),
        );
    }
}

impl SinkWindow {
    /// A window remembering committed deliveries for `window`, at most `capacity`.
    #[must_use]
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            state: Mutex::new(WindowState {
                committed: DedupWindow::new(duration_ms(window), capacity),
                in_flight: HashMap::new(),
                claims: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The duplicate check of a delivery for this sink: committed, being committed,
    /// or to be committed by the caller.
    #[must_use]
    pub fn admit(self: &Arc<Self>, key: DeliveryKey) -> Admission {
        let mut state = self.lock();
        if state.committed.contains(&key, now_ms()) {
            return Admission::Duplicate;
        }
        if let Some(in_flight) = state.in_flight.get_mut(&key) {
            let (sender, receiver) = oneshot::channel();
            in_flight.waiters.push(sender);
            return Admission::Wait(Waiting(receiver));
        }
        state.claims += 1;
        let id = state.claims;
        state.in_flight.insert(
            key,
            InFlight {
                claim: id,
                waiters: Vec::new(),
            },
        );
        Admission::Claimed(Claim(Arc::new(ClaimInner {
            window: Arc::clone(self),
            key,
            id,
        })))
    }

    /// Whether the sink committed `key` within the window (a look only: deliveries
    /// in flight count as not committed, and nothing is claimed).
    #[must_use]
    pub fn has_committed(&self, key: &DeliveryKey) -> bool {
        self.lock().committed.contains(key, now_ms())
    }

    /// Records deliveries as committed, each at its time, and answers the requests
    /// waiting for them. Returns the window's insertion position after them
    /// ([`DedupWindow::inserted`]). The file sink calls this for each group commit
    /// once its journal line is synced, and for the keys its recovery replays.
    pub fn commit(&self, keys: impl IntoIterator<Item = (DeliveryKey, u64)>) -> u64 {
        let mut state = self.lock();
        for (key, at) in keys {
            state.committed.insert(key, at);
            if let Some(in_flight) = state.in_flight.remove(&key) {
                for waiter in in_flight.waiters {
                    let _ = waiter.send(Ok(()));
                }
            }
        }
        state.committed.inserted()
    }

    fn end_claim(&self, key: DeliveryKey, claim: u64, outcome: &Result<(), SinkError>) {
        let mut state = self.lock();
        let ours = state
            .in_flight
            .get(&key)
            .is_some_and(|in_flight| in_flight.claim == claim);
        if !ours {
            // Ended already, or committed by the sink itself.
            return;
        }
        let in_flight = state.in_flight.remove(&key).expect("checked above");
        if outcome.is_ok() {
            state.committed.insert(key, now_ms());
        }
        for waiter in in_flight.waiters {
            let _ = waiter.send(outcome.clone());
        }
    }

    /// Forgets what is older than the window; returns the insertion position of the
    /// oldest key still remembered ([`DedupWindow::oldest_position`]).
    pub fn expire(&self, now_ms: u64) -> u64 {
        let mut state = self.lock();
        state.committed.expire(now_ms);
        state.committed.oldest_position()
    }

    /// Every remembered delivery with its commit time, oldest first, and the
    /// insertion position after the newest (to seed a new journal generation).
    #[must_use]
    pub fn snapshot(&self) -> (Vec<(DeliveryKey, u64)>, u64) {
        let state = self.lock();
        (state.committed.iter().collect(), state.committed.inserted())
    }

    /// Number of committed deliveries remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().committed.len()
    }

    /// Whether no committed delivery is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The window's insertion position: keys ever inserted.
    #[must_use]
    pub fn inserted(&self) -> u64 {
        self.lock().committed.inserted()
    }
}

#[cfg(test)]
mod tests;
