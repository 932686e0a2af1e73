//! Log output that can neither stall nor crash Hydrant.
//!
//! Log lines go through a bounded queue to a thread of their own, which writes them
//! to standard error. A line that cannot be written is dropped and counted in
//! `hydrant_log_lines_dropped_total`, so that:
//!
//! - a closed standard error (the log collector went away) does not panic: a plain
//!   writer does, as the formatter reports a failed write with `eprintln!`, which
//!   panics, and a panic while serving loses the answer to a delivery;
//! - a standard error that is not read (a full pipe) does not stop serving: a
//!   plain writer blocks the thread that logs, and every thread that serves
//!   deliveries logs. Once the queue is full, new lines are dropped instead.
//!
//! Each line is one write, so lines from different threads never interleave.

use std::io::Write;
use std::sync::LazyLock;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use prometheus::IntCounter;

/// Lines the queue holds. About a second of logging at debug level under heavy
/// load, which rides out a slow collector; a line is a few hundred bytes, so a full
/// queue is a couple of MiB at most.
pub const LOG_QUEUE_LINES: usize = 4096;

/// How long the queued lines get to be written when Hydrant exits: long enough for
/// a working standard error, short enough that a stuck one does not hold up the
/// exit (orchestrators kill a process that takes too long to stop).
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a flush looks again for room in a full queue.
const FLUSH_RETRY: Duration = Duration::from_millis(5);

/// Metric name: log lines dropped (served by [`crate::metrics`], which re-exports it;
/// declared here so that logging needs nothing of the metrics module).
pub const LOG_LINES_DROPPED_TOTAL: &str = "hydrant_log_lines_dropped_total";

static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        LOG_LINES_DROPPED_TOTAL,
        "Log lines dropped because standard error was closed or did not take them in time.",
    )
    .expect("valid metric")
});

/// The count of log lines the process dropped; the metrics registry serves it.
#[must_use]
pub fn dropped_lines() -> &'static IntCounter {
    &DROPPED
}

enum Message {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// Where the log formatter writes: one [`LogLine`] per event, queued when done.
#[derive(Clone)]
pub struct LogWriter {
    queue: SyncSender<Message>,
    dropped: IntCounter,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("dropped", &self.dropped.get())
            .finish_non_exhaustive()
    }
}

/// Flushes the queue when dropped (for at most [`FLUSH_TIMEOUT`]), so that the last
/// lines before an exit are written.
#[derive(Debug)]
pub struct LogGuard {
    writer: LogWriter,
}

impl LogWriter {
    /// A writer to standard error, counting drops in [`dropped_lines`].
    ///
    /// # Errors
    ///
    /// When the writer thread cannot be started.
    pub fn stderr() -> std::io::Result<(Self, LogGuard)> {
        Self::spawn(std::io::stderr(), LOG_QUEUE_LINES, DROPPED.clone())
    }

    /// A writer to `output` through a queue of `capacity` lines, counting the lines
    /// it drops in `dropped`.
    ///
    /// # Errors
    ///
    /// When the writer thread cannot be started.
    pub fn spawn<W: Write + Send + 'static>(
        output: W,
        capacity: usize,
        dropped: IntCounter,
    ) -> std::io::Result<(Self, LogGuard)> {
        let (queue, lines) = mpsc::sync_channel(capacity);
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("hydrant-log".into())
            .spawn(move || write_lines(output, &lines, &counter))?;
        let writer = Self { queue, dropped };
        Ok((
            writer.clone(),
            LogGuard {
                writer: writer.clone(),
            },
        ))
    }

    /// Waits until every line queued before this call is written, or `timeout`
    /// passes; whether they were.
    #[must_use]
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done, finished) = mpsc::sync_channel(1);
        let mut message = Message::Flush(done);
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(again)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    message = again;
                    std::thread::sleep(FLUSH_RETRY);
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        finished
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

fn write_lines<W: Write>(mut output: W, lines: &Receiver<Message>, dropped: &IntCounter) {
    for message in lines {
        match message {
            Message::Line(line) => {
                if output
                    .write_all(&line)
                    .and_then(|()| output.flush())
                    .is_err()
                {
                    dropped.inc();
                }
            }
            Message::Flush(done) => {
                let _ = output.flush();
                let _ = done.send(());
            }
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let _ = self.writer.flush(FLUSH_TIMEOUT);
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine {
            writer: self,
            line: Vec::new(),
        }
    }
}

/// One log line being formatted; queued, never waited for, when dropped.
#[derive(Debug)]
pub struct LogLine<'a> {
    writer: &'a LogWriter,
    line: Vec<u8>,
}

impl Write for LogLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine<'_> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.line);
        if self.writer.queue.try_send(Message::Line(line)).is_err() {
            self.writer.dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn counter() -> IntCounter {
        IntCounter::new("dropped", "test").unwrap()
    }

    fn log(writer: &LogWriter, text: &str) {
        let mut line = tracing_subscriber::fmt::MakeWriter::make_writer(writer);
        line.write_all(text.as_bytes()).unwrap();
    }

    /// Collects what is written, in order.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl Write for Collect {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Fails every write, as a closed pipe does.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    /// Never returns from a write until released, as a full pipe nobody reads.
    struct Stuck(Mutex<mpsc::Receiver<()>>);

    impl Write for Stuck {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.lock().unwrap().recv();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_whole_and_in_order() {
        let output = Collect::default();
        let dropped = counter();
        let (writer, _guard) = LogWriter::spawn(output.clone(), 16, dropped.clone()).unwrap();
        for n in 0..10 {
            log(&writer, &format!("line {n}\n"));
        }
        assert!(writer.flush(Duration::from_secs(5)));
        let expected: String = (0..10).map(|n| format!("line {n}\n")).collect();
        assert_eq!(
            String::from_utf8(output.0.lock().unwrap().clone()).unwrap(),
            expected
        );
        assert_eq!(dropped.get(), 0);
    }

    #[test]
    fn a_closed_output_drops_and_counts_lines() {
        let dropped = counter();
        let (writer, _guard) = LogWriter::spawn(Closed, 16, dropped.clone()).unwrap();
        for _ in 0..5 {
            log(&writer, "lost\n");
        }
        assert!(writer.flush(Duration::from_secs(5)));
        assert_eq!(dropped.get(), 5);
    }

    #[test]
    fn a_stuck_output_never_blocks_the_logger() {
        let (release, held) = mpsc::channel();
        let dropped = counter();
        let (writer, guard) =
            LogWriter::spawn(Stuck(Mutex::new(held)), 4, dropped.clone()).unwrap();
        let started = Instant::now();
        for _ in 0..100 {
            log(&writer, "waiting\n");
        }
        assert!(started.elapsed() < Duration::from_secs(1), "logging waited");
        // One line is in the stuck write and four are queued: the rest are dropped.
        assert!(dropped.get() >= 95, "{}", dropped.get());
        let started = Instant::now();
        assert!(!writer.flush(Duration::from_millis(100)));
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(release);
        drop(guard);
    }
}
