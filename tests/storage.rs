//! The file sink under damage, through the HTTP router: the data directory deleted
//! or replaced under a running server.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{TestServer, body_of, delivery, stored_events};
use serde_json::Value;

/// Sends a delivery of one JSON record `{"n": n}` with request id `id`.
async fn send(server: &TestServer, id: &str, n: u32) -> common::Reply {
    let record = format!("{{\"n\":{n}}}");
    server
        .send(delivery(id, body_of(id, &[record.as_bytes()])))
        .await
}

/// The `n` of every stored event under `data_dir`.
fn stored_numbers(data_dir: &Path) -> Vec<u64> {
    stored_events(data_dir)
        .iter()
        .map(|event: &Value| event["data"]["n"].as_u64().unwrap())
        .collect()
}

/// Waits for `/readyz` to answer `expected`, as a load balancer polling it would.
async fn wait_for_readyz(server: &TestServer, expected: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = server.admin("/readyz").await;
        if status == expected {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz still answers {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `rm -rf` of the data directory under a running server: the next delivery gets
/// 503 (its data would only reach unlinked files) and `/readyz` says not ready at
/// once; the background prober rebuilds the directory and marks the sink up; later
/// deliveries are stored in the new directory, and a retry of a delivery stored
/// before is still recognised.
#[tokio::test]
async fn a_deleted_data_directory_answers_503_until_the_prober_rebuilds_it() {
    let server = TestServer::new();
    let data = server.dir.path().to_owned();
    assert_eq!(send(&server, "r-1", 1).await.status, StatusCode::OK);
    std::fs::remove_dir_all(&data).unwrap();

    let refused = send(&server, "r-2", 2).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        refused.error_message().contains("file"),
        "{}",
        refused.error_message()
    );
    assert!(
        !refused.error_message().contains(&*data.to_string_lossy()),
        "no local path in the reply"
    );
    assert!(
        !data.exists(),
        "nothing was written for the refused delivery"
    );
    let (status, _) = server.admin("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        send(&server, "r-2", 2).await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "down until a probe rebuilds it"
    );

    let prober = server.state.sinks().spawn_prober();
    wait_for_readyz(&server, StatusCode::OK).await;
    prober.abort();
    assert_eq!(send(&server, "r-2", 2).await.status, StatusCode::OK);
    assert_eq!(
        send(&server, "r-1", 1).await.status,
        StatusCode::OK,
        "a retry of a delivery stored before the deletion"
    );
    assert_eq!(send(&server, "r-3", 3).await.status, StatusCode::OK);
    assert_eq!(stored_numbers(&data), [2, 3]);
    assert!(data.join("_hydrant/lock").exists());
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(r#"hydrant_sink_up{sink="file",sink_type="file"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"hydrant_storage_errors_total{operation="layout"} 1"#),
        "{metrics}"
    );
}

/// The data directory moved away and an empty one put in its place: the same, and
/// the moved directory keeps what was stored in it.
#[tokio::test]
async fn a_replaced_data_directory_answers_503_until_rebuilt() {
    let server = TestServer::new();
    let data = server.dir.path().to_owned();
    let moved = tempfile::tempdir().unwrap();
    let moved = moved.path().join("moved");
    assert_eq!(send(&server, "r-1", 1).await.status, StatusCode::OK);
    std::fs::rename(&data, &moved).unwrap();
    std::fs::create_dir(&data).unwrap();

    assert_eq!(
        send(&server, "r-2", 2).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        server.admin("/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.state.sinks().probe_all().await;
    assert_eq!(server.admin("/readyz").await.0, StatusCode::OK);
    assert_eq!(send(&server, "r-2", 2).await.status, StatusCode::OK);
    assert_eq!(stored_numbers(&data), [2]);
    assert_eq!(stored_numbers(&moved), [1]);
}

/// Without damage, probes change nothing: deliveries keep their 200s and the sink
/// stays ready.
#[tokio::test]
async fn probes_of_an_intact_directory_keep_it_ready() {
    let server = TestServer::new();
    for n in 0..3 {
        assert_eq!(
            send(&server, &format!("r-{n}"), n).await.status,
            StatusCode::OK
        );
        server.state.sinks().probe_all().await;
        assert_eq!(server.admin("/readyz").await.0, StatusCode::OK);
    }
    assert_eq!(stored_numbers(server.dir.path()), [0, 1, 2]);
}
