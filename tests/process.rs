//! The `hydrant` binary as an operator runs it: real sockets, signals, exit codes,
//! and a crash (SIGKILL) in the middle of a stream of deliveries.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{body_of, stored_events, stored_events_after_crash};

const KEY: &str = "process-test-key==";
const SOURCE_ARN: &str = "arn:aws:firehose:us-east-1:123456789012:deliverystream/crash-test";
const RECORDS_PER_DELIVERY: usize = 20;

fn hydrant() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hydrant"))
}

/// A running `hydrant` process with the addresses it bound.
struct Hydrant {
    child: Child,
    ingest: SocketAddr,
    admin: SocketAddr,
    logs: Arc<Mutex<String>>,
    /// What the process wrote to standard output (the `stdout` sink).
    output: Arc<Mutex<String>>,
}

impl Hydrant {
    fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = hydrant()
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--access-key")
            .arg(format!("crash-test={KEY}"))
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let collected = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let mut output = collected.lock().unwrap();
                output.push_str(&line);
                output.push('\n');
            }
        });
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let logs = Arc::new(Mutex::new(String::new()));
        let (mut ingest, mut admin) = (None, None);
        while ingest.is_none() || admin.is_none() {
            let line = lines
                .next()
                .expect("hydrant exited before listening")
                .unwrap();
            logs.lock().unwrap().push_str(&line);
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if entry["message"] == "Listening." {
                let address: SocketAddr = entry["address"].as_str().unwrap().parse().unwrap();
                match entry["listener"].as_str() {
                    Some("ingest") => ingest = Some(address),
                    Some("admin") => admin = Some(address),
                    _ => {}
                }
            }
        }
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        Self {
            child,
            ingest: ingest.unwrap(),
            admin: admin.unwrap(),
            logs,
            output,
        }
    }

    fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(30));
        // Let the log reader drain.
        std::thread::sleep(Duration::from_millis(100));
        let logs = self.logs.lock().unwrap().clone();
        (status, logs)
    }
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "hydrant did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal HTTP/1.1 exchange, so the test depends on no HTTP client library and
/// controls the exact header spelling on the wire.
fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Sends one delivery the way Firehose does (mixed-case header names).
fn deliver(address: SocketAddr, request_id: &str, key: &str) -> std::io::Result<(u16, String)> {
    let records: Vec<String> = (0..RECORDS_PER_DELIVERY)
        .map(|index| format!(r#"{{"delivery":"{request_id}","index":{index}}}"#))
        .collect();
    let refs: Vec<&[u8]> = records.iter().map(|record| record.as_bytes()).collect();
    post(
        address,
        request_id,
        key,
        body_of(request_id, &refs).as_bytes(),
    )
}

/// Posts a delivery body with the headers Firehose sends (mixed-case names).
fn post(
    address: SocketAddr,
    request_id: &str,
    key: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    http(
        address,
        "POST",
        "/crash",
        &[
            ("Content-Type", "application/json"),
            ("X-Amz-Firehose-Protocol-Version", "1.0"),
            ("X-Amz-Firehose-Request-Id", request_id),
            ("x-amz-firehose-source-arn", SOURCE_ARN),
            ("X-AMZ-FIREHOSE-ACCESS-KEY", key),
        ],
        body,
    )
}

/// Every record of each of `deliveries` is stored exactly once, and holds what was sent.
fn assert_each_record_once(events: Vec<serde_json::Value>, deliveries: &[String]) {
    let mut counts = std::collections::HashMap::<(String, u64), usize>::new();
    for event in events {
        let key = (
            event["firehose"]["request_id"].as_str().unwrap().to_owned(),
            event["firehose"]["record_index"].as_u64().unwrap(),
        );
        assert_eq!(event["data"]["delivery"], key.0.as_str());
        assert_eq!(event["data"]["index"], key.1);
        *counts.entry(key).or_default() += 1;
    }
    for request_id in deliveries {
        for index in 0..RECORDS_PER_DELIVERY as u64 {
            let count = counts
                .get(&(request_id.clone(), index))
                .copied()
                .unwrap_or(0);
            assert_eq!(count, 1, "{request_id}/{index} is stored {count} times");
        }
    }
}

/// Deliveries are streamed by four senders; the server is killed with SIGKILL
/// while they run. After a restart, every delivery is retried as Firehose would
/// retry it (those acknowledged too, as if the 200 had been lost). Every record of
/// every delivery must then be stored exactly once: acknowledged data survives the
/// crash, and neither the crash nor the retries duplicate anything.
#[test]
fn sigkill_mid_stream_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hydrant::start(dir.path(), &[]);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let attempted = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let (acknowledged, attempted, stop) = (
                Arc::clone(&acknowledged),
                Arc::clone(&attempted),
                Arc::clone(&stop),
            );
            let address = server.ingest;
            std::thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let request_id = format!("sender{sender}-{n:05}");
                    attempted.lock().unwrap().push(request_id.clone());
                    match deliver(address, &request_id, KEY) {
                        Ok((200, _)) => acknowledged.lock().unwrap().push(request_id),
                        Ok((status, body)) => panic!("unexpected {status}: {body}"),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 60 {
        assert!(
            Instant::now() < deadline,
            "deliveries are not being acknowledged"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut crashed = server;
    crashed.child.kill().unwrap(); // SIGKILL: no flush, no seal, no goodbye.
    crashed.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    assert!(acknowledged.len() >= 60);

    // Everything acknowledged before the crash is on disk exactly once already:
    // SIGKILL keeps the page cache, and a group never writes a delivery twice.
    assert_each_record_once(stored_events_after_crash(dir.path()), &acknowledged);

    let server = Hydrant::start(dir.path(), &[]);
    for request_id in &attempted {
        let (status, body) = deliver(server.ingest, request_id, KEY).unwrap();
        assert_eq!(status, 200, "retry of {request_id}: {body}");
    }
    let (_, metrics) = http(server.admin, "GET", "/metrics", &[], b"").unwrap();
    let (status, logs) = server.terminate();
    assert!(status.success(), "SIGTERM must exit 0, got {status:?}");
    assert!(
        logs.contains("Recovered open segment."),
        "the crash left an open segment to recover"
    );

    assert_each_record_once(stored_events(dir.path()), &attempted);
    let events = stored_events(dir.path());
    assert_eq!(
        events.len(),
        attempted.len() * RECORDS_PER_DELIVERY,
        "nothing else is stored"
    );
    // The acknowledged deliveries were recognised from the journal after the crash.
    let duplicates: f64 = metrics
        .lines()
        .filter(|line| line.starts_with("hydrant_duplicate_deliveries_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        duplicates >= acknowledged.len() as f64,
        "{duplicates} < {}",
        acknowledged.len()
    );
    // A clean stop completes every segment.
    assert!(
        common::segment_files(dir.path())
            .iter()
            .all(|file| file.extension().unwrap() == "ndjson")
    );
}

#[test]
fn sigterm_finishes_cleanly_and_keys_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hydrant::start(dir.path(), &[]);
    let (status, _) = deliver(server.ingest, "term-1", KEY).unwrap();
    assert_eq!(status, 200);
    let (status, body) = deliver(server.ingest, "term-2", "wrong-secret-value").unwrap();
    assert_eq!(status, 401, "{body}");
    let (status, body) = http(server.ingest, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _) = http(server.admin, "GET", "/readyz", &[], b"").unwrap();
    assert_eq!(status, 200);
    let check = |admin: SocketAddr| {
        hydrant()
            .args([
                "--no-auth",
                "--health-check",
                "--admin-listen",
                &admin.to_string(),
            ])
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(
        check(server.admin),
        Some(0),
        "--health-check sees the ready server"
    );
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(
        check(nobody),
        Some(1),
        "--health-check fails where nothing answers"
    );

    let (status, logs) = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(logs.contains("term-1"), "request ids are logged");
    assert!(
        !logs.contains(KEY) && !logs.contains("wrong-secret-value"),
        "keys must never be logged:\n{logs}"
    );
    let files = common::segment_files(dir.path());
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].extension().unwrap(),
        "ndjson",
        "the open segment is completed at shutdown"
    );
    assert_eq!(stored_events(dir.path()).len(), RECORDS_PER_DELIVERY);
}

/// The configuration's sinks and routes reach the running binary: metrics go to a
/// `stdout` sink, everything else to the embedded file sink.
#[test]
fn configured_routes_send_events_to_their_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hydrant.toml");
    std::fs::write(
        &config,
        "[[sinks]]\nname = \"out\"\ntype = \"stdout\"\n[[routes]]\nkind = \"metric\"\nsinks = [\"out\"]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Hydrant::start(&data, &["--config", config.to_str().unwrap()]);
    for fixture in ["telegraf/record.json", "alloy/direct_put.json"] {
        let body = common::fixture(fixture);
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let (status, reply) = post(
            server.ingest,
            request["requestId"].as_str().unwrap(),
            KEY,
            &body,
        )
        .unwrap();
        assert_eq!(status, 200, "{fixture}: {reply}");
    }
    let output = Arc::clone(&server.output);
    let (status, _) = server.terminate();
    assert!(status.success());
    let printed: Vec<serde_json::Value> = output
        .lock()
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(printed.len(), 1, "the one metric went to stdout");
    assert_eq!(printed[0]["kind"], "metric");
    assert_eq!(printed[0]["metric_name"], "CPUUtilization");
    let stored = stored_events(&data);
    assert_eq!(
        stored.len(),
        3,
        "the three raw records went to the file sink"
    );
    assert!(stored.iter().all(|event| event["kind"] == "record"));
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Peak memory stays within the documented bound — the in-flight budget, plus one
/// inflated record per core being decoded, plus a constant — under a flood of large
/// deliveries, whole-body gzip bombs and per-record gzip bombs from 16 senders.
#[test]
#[expect(
    clippy::print_stderr,
    reason = "the measured peak is reported for the performance notes"
)]
fn peak_memory_stays_bounded_under_a_flood() {
    const MIB: u64 = 1 << 20;
    const BUDGET: u64 = 32 * MIB;
    const RECORD_CAP: u64 = 4 * MIB;
    // A debug build's code and runtime, thread stacks, and the allocator's arenas
    // keeping freed buffers (measured: ~150 MiB for this flood).
    const CONSTANT: u64 = 160 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let mib = |bytes: u64| format!("{}MiB", bytes / MIB);
    let server = Hydrant::start(
        dir.path(),
        &[
            "--max-in-flight-bytes",
            &mib(BUDGET),
            "--max-body-bytes",
            "12MiB",
            "--max-inflated-bytes",
            "12MiB",
            "--max-record-inflated-bytes",
            &mib(RECORD_CAP),
        ],
    );
    let big_text = vec![b'x'; 1_000_000];
    let plain = body_of("flood", &[&big_text[..]; 8]).into_bytes();
    let zeros = vec![0u8; 64 * MIB as usize];
    let record_bomb = gzip(&zeros);
    let record_bombs = body_of("flood", &vec![&record_bomb[..]; 16]).into_bytes();
    let whole_bomb = gzip(body_of("flood", &[&zeros[..20 * MIB as usize]]).as_bytes());
    assert!(whole_bomb.len() < MIB as usize && record_bombs.len() < 4 * MIB as usize);
    let bodies = Arc::new([(plain, false), (record_bombs, false), (whole_bomb, true)]);

    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, u32>::new()));
    let deadline = Instant::now() + Duration::from_secs(8);
    let senders: Vec<_> = (0..16)
        .map(|sender| {
            let (bodies, statuses, address) =
                (Arc::clone(&bodies), Arc::clone(&statuses), server.ingest);
            std::thread::spawn(move || {
                let mut n = sender;
                while Instant::now() < deadline {
                    let (body, gzipped) = &bodies[n % bodies.len()];
                    let id = format!("flood-{sender}-{n}");
                    let body = if *gzipped {
                        body.clone()
                    } else {
                        String::from_utf8_lossy(body)
                            .replace("\"flood\"", &format!("\"{id}\""))
                            .into_bytes()
                    };
                    let mut headers = vec![
                        ("X-Amz-Firehose-Protocol-Version", "1.0"),
                        (
                            "X-Amz-Firehose-Request-Id",
                            if *gzipped { "flood" } else { id.as_str() },
                        ),
                        ("X-Amz-Firehose-Access-Key", KEY),
                    ];
                    if *gzipped {
                        headers.push(("Content-Encoding", "gzip"));
                    }
                    if let Ok((status, _)) = http(address, "POST", "/flood", &headers, &body) {
                        *statuses.lock().unwrap().entry(status).or_default() += 1;
                    }
                    n += 16;
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let (healthz, _) = http(server.ingest, "GET", "/healthz", &[], b"").unwrap();
    let (exit, _) = server.terminate();
    let statuses = statuses.lock().unwrap().clone();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u64);
    let bound = BUDGET + cores * RECORD_CAP + CONSTANT;
    eprintln!(
        "peak RSS {} MiB (bound {} MiB), answers {statuses:?}",
        peak_kib / 1024,
        bound / MIB
    );
    assert!(
        peak_kib * 1024 < bound,
        "peak RSS {peak_kib} KiB is over the bound of {} MiB",
        bound / MIB
    );
    assert_eq!(healthz, 200, "still serving after the flood");
    assert!(exit.success());
    assert!(statuses.get(&200).copied().unwrap_or(0) > 0, "{statuses:?}");
    assert!(
        statuses.get(&413).copied().unwrap_or(0) > 0,
        "whole-body bombs are refused: {statuses:?}"
    );
}

#[test]
fn bad_configuration_exits_64_with_one_line_before_binding() {
    let table: &[&[&str]] = &[
        &[],
        &["--access-key", "no-equals-sign"],
        &["--no-auth", "--listen", "not-an-address"],
        &["--no-auth", "--max-in-flight-bytes", "1KiB"],
        &["--no-such-flag"],
    ];
    for args in table {
        let output = hydrant()
            .args(*args)
            .arg("--data-dir")
            .arg("/nonexistent/never-created")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.starts_with("hydrant: error: "), "{stderr:?}");
    }
    assert!(!Path::new("/nonexistent/never-created").exists());
}

#[test]
fn help_explains_itself() {
    let output = hydrant().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    // The full flag list is checked by the config unit tests; this checks the binary.
    for text in ["--access-key", "HYDRANT_ACCESS_KEYS", "[default: 100MiB]"] {
        assert!(help.contains(text), "--help lacks {text}");
    }
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Hydrant::start(dir.path(), &[]);
    let output = hydrant()
        .args([
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(73));
    assert!(String::from_utf8_lossy(&output.stderr).contains("in use by another Hydrant process"));
    let (status, _) = first.terminate();
    assert!(status.success());
}
