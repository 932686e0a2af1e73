//! What Hydrant logs about deliveries, captured from the code under test.

mod common;

use std::io::Write;

use axum::http::StatusCode;
use common::{KEY, TestServer, body_of, delivery};
use serde_json::Value;

/// Every JSON log line of this test process. Installed once, as the global
/// subscriber: a subscriber scoped to one thread can miss lines when other
/// threads use the same call sites at the same time.
fn captured_logs() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> =
        std::sync::OnceLock::new();
    std::sync::Arc::clone(LOGS.get_or_init(install_capture))
}

fn install_capture() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = Capture(std::sync::Arc::clone(&logs));
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    logs
}

fn log_lines(logs: &std::sync::Mutex<Vec<u8>>) -> Vec<Value> {
    String::from_utf8(logs.lock().unwrap().clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// During a sink outage every refused delivery makes exactly one log line, a
/// warning with the sink's own error, and none at ERROR (Firehose retries each
/// 503, so an error per retry would flood the log); a 4xx makes one INFO line.
/// No line holds a key.
#[tokio::test]
async fn a_sink_outage_logs_one_warning_per_refused_delivery() {
    let logs = captured_logs();
    let server = TestServer::new();
    let events = server.dir.path().join("events");
    std::fs::remove_dir_all(&events).unwrap();
    std::fs::write(&events, b"in the way").unwrap();
    let refused = ["outage-1", "outage-2", "outage-3"];
    for id in refused {
        let reply = server.send(delivery(id, body_of(id, &[b"x"]))).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{id}");
    }
    let mut wrong = delivery("outage-key", body_of("outage-key", &[b"x"]));
    wrong.headers_mut().insert(
        "x-amz-firehose-access-key",
        "wrong-secret-value".parse().unwrap(),
    );
    assert_eq!(server.send(wrong).await.status, StatusCode::UNAUTHORIZED);

    let lines = log_lines(&logs);
    // A sink's change of state ("marking it down") is logged once, in the span of
    // the delivery that found it; it is about the sink, not one more line per
    // delivery, so it is counted apart.
    let state_change = |line: &Value| {
        line["message"]
            .as_str()
            .is_some_and(|message| message.contains("marking it down"))
    };
    let state_changes: Vec<&Value> = lines
        .iter()
        .filter(|line| state_change(line) && line.to_string().contains("outage-"))
        .collect();
    assert_eq!(state_changes.len(), 1, "{state_changes:#?}");
    let above_debug = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|line| line.to_string().contains(id))
            .filter(|line| line["level"] != "DEBUG" && line["level"] != "TRACE")
            .filter(|line| !state_change(line))
            .collect()
    };
    for id in refused {
        let of = above_debug(id);
        assert_eq!(of.len(), 1, "{id}: {of:#?}");
        assert_eq!(of[0]["level"], "WARN", "{id}: {of:#?}");
    }
    let first = &above_debug("outage-1")[0];
    assert!(
        first["cause"]
            .as_str()
            .is_some_and(|cause| cause.contains("storage")),
        "the sink's own error is in the line: {first}"
    );
    let unauthorized = above_debug("outage-key");
    assert_eq!(unauthorized.len(), 1, "{unauthorized:#?}");
    assert_eq!(unauthorized[0]["level"], "INFO");
    // The storage's own failure is an error, logged once where it happened (the
    // writer thread, outside any request); nothing about a delivery is.
    assert!(
        lines
            .iter()
            .filter(|line| line.get("span").is_some())
            .all(|line| line["level"] != "ERROR"),
        "{lines:#?}"
    );
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(!text.contains(KEY) && !text.contains("wrong-secret-value"));
}

/// Lines logged where a delivery's work continues — the fan-out's task per sink —
/// carry the request's span, so a sink's failure names the delivery it failed.
#[tokio::test]
async fn a_sink_failure_line_names_the_request() {
    let logs = captured_logs();
    let server = TestServer::new();
    let events = server.dir.path().join("events");
    std::fs::remove_dir_all(&events).unwrap();
    std::fs::write(&events, b"in the way").unwrap();
    let id = "span-carried-1";
    let reply = server.send(delivery(id, body_of(id, &[b"x"]))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);

    let lines = log_lines(&logs);
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            line["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("Sink commit failed"))
        })
        .filter(|line| line["span"]["request_id"] == id)
        .collect();
    assert!(
        !failed.is_empty(),
        "no sink failure line names {id}: {lines:#?}"
    );
    assert!(
        failed.iter().all(|line| line["sink"] == "file"),
        "{failed:#?}"
    );
}
