//! Rotating an access key while Firehose keeps delivering, with the `hydrant`
//! binary: the new key is added to a key file, the sender switches to it once it
//! is accepted, the old key is removed; no delivery sent with the key in use is
//! ever refused. Once with SIGHUP after each change, once relying on the file
//! check alone (and with key files in the Secrets Manager JSON format).

#![cfg(unix)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::process::{Hydrant, Stderr, hydrant, send_signal};
use common::{body_of, stored_events};

const KEY_A: &str = "rotation-key-A-7f3e9c";
const KEY_B: &str = "rotation-key-B-41d0aa";
const SOURCE_ARN: &str = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/rotation";
/// Senders delivering at once, each as fast as it is answered.
const CLIENTS: usize = 3;
/// Deliveries each sender has answered before the keys change.
const WARM_UP: usize = 20;
/// Longest a change to a key file may take to be in use without a signal.
const FILE_CHANGE_LIMIT: Duration = Duration::from_secs(10);

/// Posts one delivery of one record with `key`; the status, or 0 when no answer
/// came.
fn post(address: SocketAddr, key: &str, request_id: &str) -> u16 {
    let body = body_of(
        request_id,
        &[format!(r#"{{"id":"{request_id}"}}"#).as_bytes()],
    );
    let head = format!(
        "POST /rotation HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nX-Amz-Firehose-Protocol-Version: 1.0\r\n\
         X-Amz-Firehose-Request-Id: {request_id}\r\nX-Amz-Firehose-Source-Arn: {SOURCE_ARN}\r\n\
         X-Amz-Firehose-Access-Key: {key}\r\n\r\n",
        body.len()
    );
    exchange(address, &format!("{head}{body}"))
        .and_then(|response| response.split(' ').nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Sends `request` on a new connection and reads the whole answer.
fn exchange(address: SocketAddr, request: &str) -> Option<String> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// The value of the series `series` (name and labels, as served) on `/metrics`.
fn metric(admin: SocketAddr, series: &str) -> Option<f64> {
    let scrape = exchange(
        admin,
        &format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"),
    )?;
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn reloads(admin: SocketAddr, outcome: &str) -> f64 {
    metric(
        admin,
        &format!(r#"hydrant_reloads_total{{outcome="{outcome}",target="access_keys"}}"#),
    )
    .unwrap()
}

/// Waits until `done` holds, at most `limit`; how long it took.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// Replaces `path` with a file holding `text`, as secret mounts and careful
/// operators do: a complete file renamed over the old one, readable by its owner
/// only.
fn replace_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// One delivery: its request id, the key it was sent with and the status.
type Answer = (String, &'static str, u16);

/// Senders delivering continuously with the key the operator tells them to use.
struct Load {
    key: Arc<Mutex<&'static str>>,
    stop: Arc<AtomicBool>,
    /// Per sender: deliveries answered, and those of them sent with key B.
    answered: Vec<Arc<AtomicUsize>>,
    with_b: Vec<Arc<AtomicUsize>>,
    senders: Vec<JoinHandle<Vec<Answer>>>,
}

impl Load {
    fn start(ingest: SocketAddr) -> Self {
        let key = Arc::new(Mutex::new(KEY_A));
        let stop = Arc::new(AtomicBool::new(false));
        let (mut answered, mut with_b) = (Vec::new(), Vec::new());
        let mut senders = Vec::new();
        for sender in 0..CLIENTS {
            let (key, stop) = (Arc::clone(&key), Arc::clone(&stop));
            let (total, counted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            answered.push(Arc::clone(&total));
            with_b.push(Arc::clone(&counted));
            senders.push(std::thread::spawn(move || {
                let mut answers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let in_use = *key.lock().unwrap();
                    let request_id = format!("sender-{sender}-{}", answers.len());
                    let status = post(ingest, in_use, &request_id);
                    total.fetch_add(1, Ordering::SeqCst);
                    if in_use == KEY_B {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    answers.push((request_id, in_use, status));
                }
                answers
            }));
        }
        let load = Self {
            key,
            stop,
            answered,
            with_b,
            senders,
        };
        // Under way before anything changes: each sender has been answered a few
        // times with key A.
        wait_for("the senders under way", Duration::from_secs(30), || {
            load.answered
                .iter()
                .all(|count| count.load(Ordering::SeqCst) >= WARM_UP)
        });
        load
    }

    /// Tells the senders to use key B, and waits until each has had a delivery
    /// with it answered: from then on none sends key A.
    fn switch_to_b(&self) {
        *self.key.lock().unwrap() = KEY_B;
        wait_for("every sender on key B", Duration::from_secs(30), || {
            self.with_b
                .iter()
                .all(|count| count.load(Ordering::SeqCst) > 0)
        });
    }

    /// Stops the senders: every delivery's request id, key and status.
    fn stop(self) -> Vec<Answer> {
        // Some more deliveries with key B after the old one is gone.
        std::thread::sleep(Duration::from_millis(300));
        self.stop.store(true, Ordering::SeqCst);
        self.senders
            .into_iter()
            .flat_map(|sender| sender.join().unwrap())
            .collect()
    }
}

/// What every rotation must show at its end: each delivery was accepted, both
/// keys were used, each stored event carries the name of the key it came with,
/// key A is refused now and B accepted, and no log line holds a key.
fn check_rotation(server: Hydrant, data_dir: &Path, answers: &[Answer], names: [&str; 2]) {
    let refused: Vec<_> = answers
        .iter()
        .filter(|(_, _, status)| *status != 200)
        .collect();
    assert!(
        refused.is_empty(),
        "{} of {} deliveries not accepted: {refused:?}",
        refused.len(),
        answers.len()
    );
    let with_a = answers.iter().filter(|(_, key, _)| *key == KEY_A).count();
    let with_b = answers.len() - with_a;
    assert!(with_a > 0 && with_b > 0, "A: {with_a}, B: {with_b}");
    assert_eq!(post(server.ingest, KEY_A, "old-key"), 401);
    assert_eq!(post(server.ingest, KEY_B, "new-key"), 200);
    assert_eq!(metric(server.admin, "hydrant_access_keys"), Some(1.0));
    for (name, count) in names.into_iter().zip([with_a, with_b]) {
        let accepted = metric(
            server.admin,
            &format!(
                r#"hydrant_requests_total{{access_key="{name}",delivery_stream="rotation",outcome="ok"}}"#
            ),
        )
        .unwrap();
        assert!(accepted >= count as f64, "{name}: {accepted} < {count}");
    }
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(!logs.contains(KEY_A) && !logs.contains(KEY_B), "{logs}");
    let sent: HashMap<&str, &str> = answers
        .iter()
        .map(|(request_id, key, _)| (request_id.as_str(), *key))
        .collect();
    let events = stored_events(data_dir);
    let mut stored = 0;
    for event in &events {
        let request_id = event["firehose"]["request_id"].as_str().unwrap();
        let Some(key) = sent.get(request_id) else {
            continue;
        };
        let name = if *key == KEY_A { names[0] } else { names[1] };
        assert_eq!(event["firehose"]["access_key_name"], name, "{event}");
        stored += 1;
    }
    assert_eq!(stored, answers.len(), "every accepted delivery stored once");
    #[expect(
        clippy::print_stderr,
        reason = "the test's measurements, for the record"
    )]
    {
        eprintln!("rotation: {with_a} deliveries with key A, {with_b} with key B, none refused");
    }
}

#[test]
fn a_key_rotated_with_sighup_under_load_refuses_no_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, data_dir) = (dir.path().join("keys"), dir.path().join("data"));
    replace_file(&keys, &format!("a={KEY_A}\n"));
    let server = Hydrant::spawn(
        hydrant()
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--access-key-file")
            .arg(&keys),
        Stderr::Read,
    );
    let admin = server.admin;
    for target in ["access_keys", "tls_certificate"] {
        for outcome in ["ok", "failed"] {
            let series =
                format!(r#"hydrant_reloads_total{{outcome="{outcome}",target="{target}"}}"#);
            assert_eq!(metric(admin, &series), Some(0.0), "{series}");
        }
    }
    assert_eq!(metric(admin, "hydrant_access_keys"), Some(1.0));
    let load = Load::start(server.ingest);

    // SIGHUP alone reads the keys again, though nothing changed.
    send_signal(&server.child, "HUP");
    wait_for("a reload on SIGHUP", Duration::from_secs(5), || {
        reloads(admin, "ok") == 1.0
    });

    // Add key B: in use as soon as the signal is handled.
    replace_file(&keys, &format!("a={KEY_A}\nb={KEY_B}\n"));
    send_signal(&server.child, "HUP");
    let took = wait_for("key B accepted", Duration::from_secs(5), || {
        post(server.ingest, KEY_B, "probe-b") == 200
    });
    assert_eq!(metric(admin, "hydrant_access_keys"), Some(2.0));

    // A mistake in the file is refused; both keys stay in use.
    replace_file(&keys, &format!("a={KEY_A}\nb {KEY_B}\n"));
    send_signal(&server.child, "HUP");
    wait_for("a failed reload counted", Duration::from_secs(5), || {
        reloads(admin, "failed") == 1.0
    });
    assert_eq!(post(server.ingest, KEY_A, "probe-a"), 200);
    assert_eq!(post(server.ingest, KEY_B, "probe-b2"), 200);

    load.switch_to_b();
    replace_file(&keys, &format!("b={KEY_B}\n"));
    send_signal(&server.child, "HUP");
    wait_for("key A refused", Duration::from_secs(5), || {
        post(server.ingest, KEY_A, "probe-old") == 401
    });
    let answers = load.stop();
    // One reload for the bare SIGHUP and one per change; a change the file check
    // saw before its signal arrived is read twice.
    let ok = reloads(admin, "ok");
    assert!((3.0..=5.0).contains(&ok), "{ok}");
    assert_eq!(reloads(admin, "failed"), 1.0);
    let logs = server.logs();
    for line in [
        r#""added":"b""#,
        r#""removed":"a""#,
        "Access keys not reloaded",
        "line 2: expected NAME=KEY",
    ] {
        assert!(logs.contains(line), "{line}:\n{logs}");
    }
    #[expect(
        clippy::print_stderr,
        reason = "the test's measurements, for the record"
    )]
    {
        eprintln!("key B accepted {took:?} after SIGHUP");
    }
    check_rotation(server, &data_dir, &answers, ["a", "b"]);
}

#[test]
fn a_key_rotated_by_changing_secrets_manager_files_under_load_refuses_no_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (current, next) = (
        dir.path().join("current.json"),
        dir.path().join("next.json"),
    );
    replace_file(&current, &format!(r#"{{"api_key": "{KEY_A}"}}"#));
    // Not yet holding a key: an empty file has none.
    replace_file(&next, "");
    let server = Hydrant::spawn(
        hydrant()
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--access-key-file")
            .arg(&current)
            .arg("--access-key-file")
            .arg(&next),
        Stderr::Read,
    );
    let admin = server.admin;
    let load = Load::start(server.ingest);

    replace_file(&next, &format!("{{\n  \"api_key\": \"{KEY_B}\"\n}}\n"));
    let added = wait_for("key B accepted", FILE_CHANGE_LIMIT, || {
        post(server.ingest, KEY_B, "probe-b") == 200
    });
    load.switch_to_b();
    replace_file(&current, "");
    let removed = wait_for("key A refused", FILE_CHANGE_LIMIT, || {
        post(server.ingest, KEY_A, "probe-old") == 401
    });
    let answers = load.stop();
    assert_eq!(reloads(admin, "ok"), 2.0);
    assert_eq!(reloads(admin, "failed"), 0.0);
    #[expect(
        clippy::print_stderr,
        reason = "the test's measurements, for the record"
    )]
    {
        eprintln!("without a signal: key B in use after {added:?}, key A gone after {removed:?}");
    }
    check_rotation(server, &data_dir, &answers, ["current", "next"]);
}
