//! The file sink's commit journal with a large duplicate window: how long ordinary
//! small commits take with 1 M deliveries remembered against an empty window (the
//! median and the worst, which includes starting new journal generations and
//! deleting old ones), how long opening (recovering) a directory whose journal holds
//! 1 M deliveries takes, and the memory one remembered delivery costs.
//!
//! Run with `cargo bench --bench journal`. It is not a Criterion benchmark: the
//! worst case matters here, and each commit is timed on its own. Commits alternate
//! between the two sinks, so that both see the same disk (fsync latency on a shared
//! machine changes from minute to minute). The worst commit next to a change of the
//! journal's files (a generation started or deleted) is reported on its own.
//! Settings, from the environment:
//!
//! - `HYDRANT_BENCH_DIR`: where the data directories are made (default: the system
//!   temporary folder). Commit times are mostly the disk's two `fdatasync`s; on a
//!   tmpfs (`/dev/shm`) they show the CPU and file-system work alone.
//! - `HYDRANT_BENCH_KEYS`: deliveries remembered (default 1,000,000).
//! - `HYDRANT_BENCH_COMMITS`: commits timed per case (default 2,000). With one
//!   delivery per commit a journal generation fills after ~25,000 commits, so to
//!   see generations start and old ones go in the worst case, use 60,000 or more
//!   (quick on a tmpfs).
//! - `HYDRANT_BENCH_LEGACY=1`: write the remembered deliveries as one
//!   `journal.ndjson`, the single-file journal of earlier versions, instead of
//!   generations (to compare with a build of an earlier version).
//!
//! The remembered deliveries are written straight into journal files in the format
//! `docs/storage.md` describes, one delivery per line as one-delivery commits write
//! them: filling the window through the sink would take one fsync per delivery.

#![allow(missing_docs, reason = "benchmark binary")]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hydrant::metrics::Metrics;
use hydrant::sink::dedup::{DedupWindow, DeliveryKey};
use hydrant::sink::file::{Batch, FileSink, FileSinkSettings};

const SOURCE_ARN: &str = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/bench";
/// A journal generation's size, as the sink writes them.
const GENERATION_BYTES: usize = 4 << 20;
/// One small event line, as a typical log event.
const LINE: &[u8] = br#"{"kind":"log","timestamp":1700000000000,"message":"GET /api/orders/123 200 12ms","log_group":"/aws/ecs/api","firehose":{"request_id":"bench"}}
"#;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map_or(default, |value| value.replace('_', "").parse().expect(name))
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

/// Resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number");
    kib * 1024
}

fn key(n: usize) -> DeliveryKey {
    DeliveryKey::new(Some(SOURCE_ARN), &format!("bench-{n:08}"))
}

/// Writes `keys` remembered deliveries into `data_dir`'s journal, one per line as
/// one-delivery commits write them, committed over the last half hour.
fn write_journal(data_dir: &Path, keys: usize, legacy: bool) {
    let state = data_dir.join("_hydrant");
    fs::create_dir_all(&state).unwrap();
    let now = now_ms();
    let segment = "events/dt=2026-11-21/hour=09/part-20261121T090000000Z-000001.ndjson";
    let mut generation = 1;
    let mut out = Vec::with_capacity(GENERATION_BYTES + 4096);
    let flush = |out: &mut Vec<u8>, generation: &mut u32| {
        let name = if legacy {
            "journal.ndjson".to_owned()
        } else {
            format!("journal-{generation:06}.ndjson")
        };
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.join(name))
            .unwrap();
        file.write_all(out).unwrap();
        out.clear();
        *generation += 1;
    };
    for n in 0..keys {
        let at = now - 1_800_000 + (n as u64 * 1_800_000 / keys as u64);
        let len = (n + 1) * LINE.len();
        writeln!(
            out,
            r#"{{"segments":[{{"name":"{segment}","len":{len}}}],"at":{at},"ids":["{}"]}}"#,
            key(n).to_hex()
        )
        .unwrap();
        if out.len() >= GENERATION_BYTES {
            flush(&mut out, &mut generation);
        }
    }
    if !out.is_empty() {
        flush(&mut out, &mut generation);
    }
}

fn journal_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(data_dir.join("_hydrant"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("journal")
        })
        .collect();
    files.sort();
    files
}

fn journal_bytes(data_dir: &Path) -> u64 {
    journal_files(data_dir)
        .iter()
        .map(|file| fs::metadata(file).unwrap().len())
        .sum()
}

/// One sink under test, with each commit's duration and whether the journal's
/// files changed (a generation started or was deleted) right after it.
struct Case {
    name: String,
    dir: PathBuf,
    sink: FileSink,
    times: Vec<Duration>,
    changed: Vec<bool>,
    files: Vec<PathBuf>,
    files_at_start: usize,
}

impl Case {
    fn new(name: String, dir: PathBuf, sink: FileSink) -> Self {
        let files = journal_files(&dir);
        Self {
            name,
            files_at_start: files.len(),
            dir,
            sink,
            times: Vec::new(),
            changed: Vec::new(),
            files,
        }
    }

    /// Times one one-delivery commit.
    async fn commit(&mut self, key: DeliveryKey) {
        let batch = Batch {
            dedup_key: key,
            lines: vec![Bytes::from_static(LINE)],
            events: 1,
            dead_letters: Vec::new(),
        };
        let started = Instant::now();
        self.sink.commit(batch).await.expect("stored");
        self.times.push(started.elapsed());
        let files = journal_files(&self.dir);
        self.changed.push(files != self.files);
        self.files = files;
    }

    fn report(&self) {
        let mut sorted = self.times.clone();
        sorted.sort();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        let mean = sorted.iter().sum::<Duration>() / u32::try_from(sorted.len()).expect("fits");
        // A generation starts after the reply to the commit that filled the last
        // one, so the commit after it may wait for that: look at both.
        let near_change = |n: usize| self.changed[n] || (n > 0 && self.changed[n - 1]);
        let changes = self.changed.iter().filter(|changed| **changed).count();
        let worst_near_change = (0..self.times.len())
            .filter(|n| near_change(*n))
            .map(|n| self.times[n])
            .max()
            .map_or_else(|| "—".to_owned(), ms);
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {changes}: {worst_near_change} | {} → {} |",
            self.name,
            sorted.len(),
            ms(at(0.5)),
            ms(mean),
            ms(at(0.99)),
            ms(at(0.999)),
            ms(at(1.0)),
            self.files_at_start,
            self.files.len(),
        )
        .unwrap();
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn settings(data_dir: &Path, keys: usize) -> FileSinkSettings {
    let mut settings = FileSinkSettings::new(data_dir);
    settings.dedup_capacity = keys;
    settings
}

fn main() {
    let keys = setting("HYDRANT_BENCH_KEYS", 1_000_000);
    let commits = setting("HYDRANT_BENCH_COMMITS", 2_000);
    let legacy = std::env::var("HYDRANT_BENCH_LEGACY").is_ok_and(|value| value == "1");
    let base = std::env::var_os("HYDRANT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let scratch = tempfile::tempdir_in(&base).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut out = std::io::stdout().lock();

    // Memory of the window alone, filled to `keys`.
    let before = resident_bytes();
    let mut window = DedupWindow::new(u64::MAX, keys);
    let at = now_ms();
    for n in 0..keys {
        window.insert(key(n), at);
    }
    let after = resident_bytes();
    writeln!(
        out,
        "duplicate window: {keys} deliveries, {:.1} MiB resident, {:.0} bytes each",
        (after - before) as f64 / f64::from(1 << 20),
        (after - before) as f64 / keys as f64
    )
    .unwrap();
    drop(window);
    writeln!(out, "data directories in {}", base.display()).unwrap();
    drop(out);

    runtime.block_on(async {
        let empty = scratch.path().join("empty");
        let sink = FileSink::open(settings(&empty, keys), Metrics::new(10).storage).unwrap();
        let mut empty = Case::new("empty window".into(), empty, sink);

        let full = scratch.path().join("full");
        write_journal(&full, keys, legacy);
        let bytes = journal_bytes(&full);
        let written = journal_files(&full).len();
        let started = Instant::now();
        let sink = FileSink::open(settings(&full, keys), Metrics::new(10).storage).unwrap();
        let opened = started.elapsed();
        assert_eq!(sink.recovery().deliveries_remembered, keys);
        let mut full = Case::new(format!("{keys} remembered"), full, sink);

        // Alternate between the two, so both see the same disk: on a shared
        // machine, fsync latency changes from one minute to the next.
        for n in 0..commits {
            empty.commit(key(keys + n)).await;
            full.commit(key(keys + n)).await;
        }
        empty.sink.close().await;
        full.sink.close().await;

        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "open (recovery) with {keys} remembered: {} ({:.0} MiB of journal in {} files)",
            ms(opened),
            bytes as f64 / f64::from(1 << 20),
            written
        )
        .unwrap();
        writeln!(out).unwrap();
        writeln!(
            out,
            "| case | commits | median | mean | p99 | p99.9 | worst | generation changes: worst commit next to one | journal files before → after |"
        )
        .unwrap();
        writeln!(out, "|---|---|---|---|---|---|---|---|---|").unwrap();
        drop(out);
        empty.report();
        full.report();
    });
}
