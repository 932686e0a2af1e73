//! Limits on what a sender controls, through the HTTP router: lengths of the
//! facts copied into every event, and how much a delivery may decode into.

mod common;

use std::io::Write;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{KEY, KEY_NAME, TestServer, body_of, dead_letters, delivery};
use hydrant::limits::{Limits, MIB};
use hydrant::server::auth::{AccessKey, Auth};
use serde_json::Value;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn server_with(limits: Limits) -> TestServer {
    TestServer::with(Auth::Keys(vec![AccessKey::new(KEY_NAME, KEY)]), limits)
}

/// A gzip'd CloudWatch Logs envelope of `events` empty log events.
fn empty_events(log_group: &str, events: usize) -> Vec<u8> {
    let events: Vec<Value> = (0..events)
        .map(|_| serde_json::json!({"id": "1", "timestamp": 1, "message": ""}))
        .collect();
    let envelope = serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": log_group, "logStream": "s", "subscriptionFilters": ["f"], "logEvents": events});
    gzip(envelope.to_string().as_bytes())
}

/// Every header-borne fact that goes into each event line is held to the limits
/// Firehose itself has; one past a limit is a 400 naming the header.
#[tokio::test]
async fn header_facts_past_firehose_limits_get_400() {
    let server = TestServer::new();
    let long_id = "r".repeat(129);
    let long_path = format!("/{}", "p".repeat(1024));
    let attributes = |count: usize, value_len: usize| {
        let map: serde_json::Map<String, Value> = (0..count)
            .map(|n| (format!("k{n}"), "v".repeat(value_len).into()))
            .collect();
        serde_json::json!({ "commonAttributes": map }).to_string()
    };
    // (what, header to set, its value, path, text the error names)
    let table: Vec<(&str, &str, String, &str, &str)> = vec![
        (
            "long id",
            "x-amz-firehose-request-id",
            long_id,
            "/firehose",
            "Request-Id",
        ),
        (
            "id with a space",
            "x-amz-firehose-request-id",
            "a b".into(),
            "/firehose",
            "Request-Id",
        ),
        (
            "long path",
            "x-amz-firehose-protocol-version",
            "1.0".into(),
            &long_path,
            "path",
        ),
        (
            "stream name with a space",
            "x-amz-firehose-source-arn",
            "arn:aws:firehose:eu-west-1:123456789012:deliverystream/colX b".into(),
            "/firehose",
            "Source-Arn",
        ),
        (
            "60,000-character stream name",
            "x-amz-firehose-source-arn",
            format!(
                "arn:aws:firehose:eu-west-1:123456789012:deliverystream/{}",
                "s".repeat(60_000)
            ),
            "/firehose",
            "Source-Arn",
        ),
        (
            "51 attributes",
            "x-amz-firehose-common-attributes",
            attributes(51, 1),
            "/firehose",
            "Common-Attributes",
        ),
        (
            "97 KiB of attributes",
            "x-amz-firehose-common-attributes",
            attributes(1, 97 * 1024),
            "/firehose",
            "Common-Attributes",
        ),
    ];
    for (what, header, value, path, named) in table {
        let mut request = delivery("r-1", body_of("r-1", &[b"x"]));
        request.headers_mut().insert(header, value.parse().unwrap());
        *request.uri_mut() = path.parse().unwrap();
        let reply = server.send(request).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}");
        assert!(
            reply.error_message().contains(named),
            "{what}: {}",
            reply.error_message()
        );
    }
    assert!(server.events().is_empty());
    // At the limits everything is accepted.
    let id = "r".repeat(128);
    let mut request = delivery(&id, body_of(&id, &[b"x"]));
    request.headers_mut().insert(
        "x-amz-firehose-common-attributes",
        attributes(50, 1024).parse().unwrap(),
    );
    *request.uri_mut() = format!("/{}", "p".repeat(1023)).parse().unwrap();
    let reply = server.send(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    assert_eq!(server.events().len(), 1);
}

/// A 4 KB record with a 128 KiB log group and 4,000 empty events would have made
/// 4,000 lines of 128 KiB each (half a gigabyte): the record is dead-lettered, as
/// sent, with the reason.
#[tokio::test]
async fn a_log_group_past_cloudwatch_limits_is_a_bad_record() {
    let server = TestServer::new();
    let record = empty_events(&"g".repeat(128 * 1024), 4_000);
    assert!(record.len() < 8 * 1024, "{} bytes", record.len());
    let reply = server
        .send(delivery("r-g", body_of("r-g", &[&record])))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    assert!(server.events().is_empty());
    let dead = dead_letters(server.dir.path());
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("logGroup is longer than 512"),
        "{}",
        dead[0]["reason"]
    );
    assert_eq!(dead[0]["data"], STANDARD.encode(&record));
}

/// A small request whose records decode into far more than its allowance (the
/// floor, or the ratio times its size) is refused with 413 while decoding, before
/// its lines fill memory; nothing of it is stored, and the budget is released.
#[tokio::test]
async fn a_delivery_that_decodes_into_a_flood_gets_413() {
    let limits = Limits {
        max_decoded_bytes: 2 * MIB,
        ..Limits::default()
    };
    let server = server_with(limits);
    // 20 records of 5,000 empty events: ~100 KB of body, ~4 MB of lines.
    let record = empty_events("/aws/lambda/flood", 5_000);
    let body = body_of("r-flood", &vec![&record[..]; 20]);
    assert!(body.len() < 200 * 1024, "{} bytes", body.len());
    let reply = server.send(delivery("r-flood", body)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        reply.error_message().contains("2097152 bytes of events"),
        "{}",
        reply.error_message()
    );
    assert!(server.events().is_empty());
    let (_, metrics) = server.admin("/metrics").await;
    assert!(metrics.contains("hydrant_in_flight_bytes 0"), "released");
    assert!(
        metrics.contains(r#"outcome="too_large""#),
        "counted as too large"
    );

    // Within the allowance the same shape is stored.
    let small = body_of("r-ok", &[&empty_events("/aws/lambda/flood", 2_000)[..]]);
    let reply = server.send(delivery("r-ok", small)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    assert_eq!(server.events().len(), 2_000);
}

/// Lines are charged to the in-flight budget *while* they are written: when
/// other requests hold the budget, a delivery whose lines would not fit gets 503
/// (and is retried by Firehose) instead of being decoded whole first.
#[tokio::test]
async fn decoded_lines_are_charged_to_the_budget_as_they_are_written() {
    let limits = Limits {
        max_in_flight_bytes: 8 * MIB,
        ..Limits::default()
    };
    let server = server_with(limits);
    let record = empty_events("/aws/lambda/app", 5_000);
    let body = body_of("r-b", &[&record[..]; 4]);
    assert!(
        (body.len() as u64) < MIB,
        "the body is small: {}",
        body.len()
    );
    // Others hold half the budget; the allowance (at least 64 MiB) is not what
    // stops this delivery's ~10 MB of lines.
    let mut others = server.state.in_flight().reservation();
    others.grow(4 * MIB).unwrap();
    let reply = server.send(delivery("r-b", body.clone())).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(server.events().is_empty());
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(r#"hydrant_records_decoded_total{format="cloudwatch_logs"} 0"#),
        "decoding stopped part-way, before the records were decoded in full: {metrics}"
    );
    drop(others);
    let reply = server.send(delivery("r-b", body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    assert_eq!(server.events().len(), 20_000);
}
