//! Contract tests: the Firehose HTTP endpoint contract, through the router, with
//! real captured request bodies from `tests/fixtures/`.

mod common;

use std::io::Write;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{KEY, KEY_NAME, SOURCE_ARN, TestServer, body_of, delivery, fixture};
use hydrant::limits::Limits;
use hydrant::server::auth::Auth;
use serde_json::Value;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn request_id_of(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap();
    value["requestId"].as_str().unwrap().to_owned()
}

/// The reply is exactly what Firehose requires, success or failure.
fn assert_contract_reply(reply: &common::Reply, request_id: &str) {
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        reply.headers[header::CONTENT_LENGTH].to_str().unwrap(),
        reply.raw.len().to_string()
    );
    assert!(reply.headers.get(header::CONTENT_ENCODING).is_none());
    let object = reply.body.as_object().expect("a JSON object");
    assert_eq!(object["requestId"], request_id);
    assert!(
        object["timestamp"].is_u64(),
        "timestamp must be a JSON number"
    );
    let allowed = ["requestId", "timestamp", "errorMessage"];
    assert!(
        object.keys().all(|key| allowed.contains(&key.as_str())),
        "{object:?}"
    );
    if reply.status == StatusCode::OK {
        assert!(!object.contains_key("errorMessage"));
    } else {
        assert!(
            !reply.error_message().is_empty(),
            "a failure explains itself"
        );
    }
}

/// With the `raw` format, every well-formed fixture is stored as one event per
/// record, each event holding the record's bytes and the delivery's facts.
#[tokio::test]
async fn real_captured_deliveries_are_stored_record_for_record_as_raw() {
    let fixtures = [
        "alloy/cw_logs_with_only_data_messages.json",
        "alloy/cw_logs_with_only_control_messages.json",
        "alloy/cw_logs_mixed.json",
        "alloy/direct_put.json",
        "alloy/direct_put_with_non_json_message.json",
        "telegraf/record.json",
        "telegraf/records.json",
        "victoriametrics/firehose_metric_stream_otel07_request.json",
        "otel-contrib/firehose_log.json",
    ];
    for name in fixtures {
        let server = TestServer::with_settings(settings_with(|decode| {
            decode.default_format = hydrant::decode::Format::Raw;
        }));
        let body = fixture(name);
        let request_id = request_id_of(&body);
        let reply = server.send(delivery(&request_id, body.clone())).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{name}: {}",
            reply.error_message()
        );
        assert_contract_reply(&reply, &request_id);

        let sent: Value = serde_json::from_slice(&body).unwrap();
        let records = sent["records"].as_array().unwrap();
        let events = server.events();
        assert_eq!(events.len(), records.len(), "{name}");
        for (index, (event, record)) in events.iter().zip(records).enumerate() {
            let bytes = STANDARD.decode(record["data"].as_str().unwrap()).unwrap();
            assert_eq!(event["kind"], "record", "{name}");
            match event["format"].as_str().unwrap() {
                "json" => assert_eq!(
                    event["data"],
                    serde_json::from_slice::<Value>(&bytes).unwrap(),
                    "{name}"
                ),
                "text" => assert_eq!(event["data"].as_str().unwrap().as_bytes(), bytes, "{name}"),
                "binary" => assert_eq!(
                    STANDARD.decode(event["data"].as_str().unwrap()).unwrap(),
                    bytes,
                    "{name}"
                ),
                other => panic!("{name}: unexpected format {other}"),
            }
            let firehose = &event["firehose"];
            assert_eq!(firehose["request_id"], request_id.as_str(), "{name}");
            assert_eq!(firehose["record_index"], index, "{name}");
            assert_eq!(firehose["timestamp"], sent["timestamp"], "{name}");
            assert!(firehose["received_at"].as_u64().unwrap() > 1_700_000_000_000);
            assert_eq!(firehose["source_arn"], SOURCE_ARN);
            assert_eq!(firehose["delivery_stream"], "test-stream");
            assert_eq!(firehose["region"], "eu-west-1");
            assert_eq!(firehose["account_id"], "123456789012");
            assert_eq!(firehose["access_key_name"], KEY_NAME);
            assert_eq!(firehose["path"], "/firehose");
            assert_eq!(
                firehose["common_attributes"],
                serde_json::json!({"env": "test"})
            );
        }
    }
}

/// In `auto`, each real capture is decoded into what it holds.
#[tokio::test]
async fn real_captures_are_decoded_into_their_events() {
    // (fixture, events stored, kind of every event)
    let table = [
        ("alloy/direct_put.json", 3, "record"),
        ("alloy/direct_put_with_non_json_message.json", 1, "record"),
        ("alloy/cw_logs_with_only_data_messages.json", 13, "log"),
        ("alloy/cw_logs_with_only_control_messages.json", 0, "log"),
        ("alloy/cw_logs_mixed.json", 13, "log"),
        ("telegraf/record.json", 1, "metric"),
        ("telegraf/records.json", 1160, "metric"),
        ("otel-contrib/firehose_log.json", 1, "record"),
    ];
    for (name, count, kind) in table {
        let server = TestServer::new();
        let body = fixture(name);
        let reply = server.send(delivery(&request_id_of(&body), body)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{name}: {}",
            reply.error_message()
        );
        let events = server.events();
        assert_eq!(events.len(), count, "{name}");
        assert!(events.iter().all(|event| event["kind"] == kind), "{name}");
        assert!(common::dead_letters(server.dir.path()).is_empty(), "{name}");
    }
}

#[tokio::test]
async fn cloudwatch_logs_events_field_by_field() {
    let server = TestServer::new();
    let body = fixture("alloy/cw_logs_mixed.json");
    let request_id = request_id_of(&body);
    assert_eq!(
        server.send(delivery(&request_id, body)).await.status,
        StatusCode::OK
    );
    let events = server.events();
    let first = &events[0];
    assert_eq!(first["kind"], "log");
    assert!(first["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    assert!(
        first["message"].as_str().unwrap().ends_with('\n'),
        "messages are kept as written"
    );
    assert!(
        first["aws"]["log_group"]
            .as_str()
            .unwrap()
            .starts_with("/aws/lambda/")
    );
    assert!(first["aws"]["log_stream"].is_string());
    assert!(first["aws"]["account_id"].as_str().unwrap().len() == 12);
    assert!(
        first["aws"]["subscription_filters"]
            .as_array()
            .unwrap()
            .len()
            == 1
    );
    assert!(
        first["aws"]["event_id"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_digit())
    );
    // Both records of the request point back at their position.
    assert!(
        events
            .iter()
            .all(|event| event["firehose"]["record_index"] == 1)
    );
    assert!(
        events
            .iter()
            .all(|event| event["firehose"]["request_id"] == request_id.as_str())
    );
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(r#"hydrant_records_decoded_total{format="cloudwatch_logs"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains("hydrant_control_messages_total 1"));
}

#[tokio::test]
async fn a_real_opentelemetry_07_capture_becomes_metric_events() {
    let server = TestServer::new();
    let body = fixture("victoriametrics/firehose_metric_stream_otel07_request.json");
    let reply = server.send(delivery(&request_id_of(&body), body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    let events = server.events();
    assert!(!events.is_empty());
    for event in &events {
        assert_eq!(event["kind"], "metric");
        assert_eq!(event["namespace"], "AWS/EBS");
        assert_eq!(event["metric_name"], "VolumeReadOps");
        assert_eq!(event["account_id"], "677435890598");
        assert!(
            event["dimensions"]["VolumeId"].is_string(),
            "0.7 flat labels become dimensions"
        );
        assert!(event["value"]["count"].is_number());
    }
}

/// A stream fixed to OpenTelemetry 1.0 that receives 0.7 data gets a clear
/// per-record error in the dead-letter table instead of metrics without dimensions.
#[tokio::test]
async fn a_forced_format_that_does_not_match_is_dead_lettered_with_a_reason() {
    let server = TestServer::with_settings(settings_with(|decode| {
        decode.rules.push(hydrant::decode::DecoderRule {
            path: Some(hydrant::glob::Glob::new("/firehose")),
            delivery_stream: None,
            format: hydrant::decode::Format::MetricStreamOtel10,
            vpc_flow_fields: None,
        });
    }));
    let body = fixture("victoriametrics/firehose_metric_stream_otel07_request.json");
    let reply = server.send(delivery(&request_id_of(&body), body)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(server.events().is_empty());
    let dead = common::dead_letters(server.dir.path());
    assert_eq!(dead.len(), 2);
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("0.7"),
        "{}",
        dead[0]
    );
}

fn settings_with(
    edit: impl FnOnce(&mut hydrant::decode::DecodeSettings),
) -> hydrant::server::Settings {
    let mut decode = hydrant::decode::DecodeSettings::default();
    edit(&mut decode);
    hydrant::server::Settings {
        auth: Auth::Keys(vec![hydrant::server::auth::AccessKey::new(KEY_NAME, KEY)]),
        limits: Limits::default(),
        decode,
        router: hydrant::routing::Router::everything_to(hydrant::routing::SinkSet::of(&[0])),
    }
}

#[tokio::test]
async fn a_gzip_body_is_inflated() {
    let server = TestServer::new();
    let body = fixture("telegraf/records.gz");
    let request = Request::post("/metrics-stream")
        .header("X-Amz-Firehose-Protocol-Version", "1.0")
        .header(
            "X-Amz-Firehose-Request-Id",
            "c8291d2e-8c46-4f2a-a8df-2562550287ad",
        )
        .header("X-Amz-Firehose-Access-Key", KEY)
        .header("Content-Encoding", "gzip")
        .body(Body::from(body))
        .unwrap();
    let reply = server.send(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    let events = server.events();
    assert_eq!(events.len(), 1160, "every data point of the four records");
    assert!(events.iter().all(|event| event["kind"] == "metric"));
    assert!(
        events[0]["firehose"]["source_arn"].is_null(),
        "no ARN header was sent"
    );
}

#[tokio::test]
async fn empty_record_lists_and_empty_records_are_valid() {
    let server = TestServer::new();
    let empty_list = server
        .send(delivery("r-empty", body_of("r-empty", &[])))
        .await;
    assert_eq!(empty_list.status, StatusCode::OK);
    let empty_record = server
        .send(delivery("r-blank", body_of("r-blank", &[b""])))
        .await;
    assert_eq!(empty_record.status, StatusCode::OK);
    let events = server.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["format"], "text");
    assert_eq!(events[0]["data"], "");
}

#[tokio::test]
async fn a_retried_delivery_is_acknowledged_but_stored_once() {
    let server = TestServer::new();
    let body = body_of("r-dup", &[b"one", b"two"]);
    for _ in 0..3 {
        let reply = server.send(delivery("r-dup", body.clone())).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_contract_reply(&reply, "r-dup");
    }
    assert_eq!(server.events().len(), 2);
    let (_, metrics) = server.admin("/metrics").await;
    assert!(metrics.contains(r#"hydrant_duplicate_deliveries_total{access_key="test-sender",delivery_stream="test-stream"} 2"#), "{metrics}");
}

/// With `reject`, a request refused midway leaves nothing behind: its corrected
/// retry (same id) is stored in full, not taken for a duplicate.
#[tokio::test]
async fn a_refused_request_leaves_nothing_acknowledged() {
    let server = TestServer::with_settings(reject_settings());
    let mut bad: Value = serde_json::from_str(&body_of("r-1", &[b"good", b"also good"])).unwrap();
    bad["records"][1]["data"] = "not base64!".into();
    let reply = server.send(delivery("r-1", bad.to_string())).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.error_message().contains("record 1"),
        "{}",
        reply.error_message()
    );
    assert!(server.events().is_empty());

    let reply = server
        .send(delivery("r-1", body_of("r-1", &[b"good", b"also good"])))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(server.events().len(), 2);
}

/// Every failure class, with the status Firehose gets and the request id echoed.
#[tokio::test]
async fn every_error_status() {
    let body = body_of("r-err", &[b"x"]);
    type Edit = fn(&mut Request<Body>);
    let table: Vec<(&str, Edit, StatusCode, &str)> = vec![
        (
            "missing key",
            |r| {
                r.headers_mut().remove("x-amz-firehose-access-key");
            },
            StatusCode::UNAUTHORIZED,
            "missing X-Amz-Firehose-Access-Key",
        ),
        (
            "wrong key",
            |r| {
                r.headers_mut()
                    .insert("x-amz-firehose-access-key", "wrong".parse().unwrap());
            },
            StatusCode::UNAUTHORIZED,
            "invalid access key",
        ),
        (
            "no protocol version",
            |r| {
                r.headers_mut().remove("x-amz-firehose-protocol-version");
            },
            StatusCode::BAD_REQUEST,
            "Protocol-Version",
        ),
        (
            "protocol 2.0",
            |r| {
                r.headers_mut()
                    .insert("x-amz-firehose-protocol-version", "2.0".parse().unwrap());
            },
            StatusCode::BAD_REQUEST,
            "\"2.0\"",
        ),
        (
            "bad source arn",
            |r| {
                r.headers_mut().insert(
                    "x-amz-firehose-source-arn",
                    "arn:aws:s3:::bucket".parse().unwrap(),
                );
            },
            StatusCode::BAD_REQUEST,
            "Source-Arn",
        ),
        (
            "bad common attributes",
            |r| {
                r.headers_mut()
                    .insert("x-amz-firehose-common-attributes", "{}".parse().unwrap());
            },
            StatusCode::BAD_REQUEST,
            "Common-Attributes",
        ),
        (
            "brotli body",
            |r| {
                r.headers_mut()
                    .insert("content-encoding", "br".parse().unwrap());
            },
            StatusCode::BAD_REQUEST,
            "Content-Encoding",
        ),
        (
            "gzip header on plain body",
            |r| {
                r.headers_mut()
                    .insert("content-encoding", "gzip".parse().unwrap());
            },
            StatusCode::BAD_REQUEST,
            "not valid gzip",
        ),
    ];
    for (name, edit, status, message) in table {
        let server = TestServer::new();
        let mut request = delivery("r-err", body.clone());
        edit(&mut request);
        let reply = server.send(request).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.error_message());
        assert!(
            reply.error_message().contains(message),
            "{name}: {}",
            reply.error_message()
        );
        assert_contract_reply(&reply, "r-err");
        assert!(server.events().is_empty(), "{name}: nothing may be stored");
    }
}

#[tokio::test]
async fn request_id_must_be_present_and_match() {
    let server = TestServer::new();
    let mut missing = delivery("x", body_of("r-a", &[b"x"]));
    missing.headers_mut().remove("x-amz-firehose-request-id");
    let reply = server.send(missing).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_contract_reply(&reply, "");

    let reply = server
        .send(delivery("r-header", body_of("r-body", &[b"x"])))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.error_message().contains("does not match"));
    assert_contract_reply(&reply, "r-header");
}

#[tokio::test]
async fn malformed_bodies_get_400() {
    let table: &[(&str, String)] = &[
        ("not json", "hello".into()),
        ("no records", r#"{"requestId":"r-m","timestamp":1}"#.into()),
        (
            "record not an object",
            r#"{"requestId":"r-m","timestamp":1,"records":["aGk="]}"#.into(),
        ),
    ];
    for (name, body) in table {
        let server = TestServer::new();
        let reply = server.send(delivery("r-m", body.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}");
        assert_contract_reply(&reply, "r-m");
    }
}

/// With `reject`, the captured request with a truncated record is refused whole,
/// so neither record is stored and Firehose keeps the batch.
#[tokio::test]
async fn the_captured_bad_record_is_refused_whole() {
    let server = TestServer::with_settings(reject_settings());
    let body = fixture("alloy/cw_logs_control_and_bad_records.json");
    let request_id = request_id_of(&body);
    let reply = server.send(delivery(&request_id, body)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.error_message().contains("record 1"),
        "{}",
        reply.error_message()
    );
    assert!(server.events().is_empty());
}

fn reject_settings() -> hydrant::server::Settings {
    settings_with(|decode| decode.bad_records = hydrant::decode::BadRecords::Reject)
}

/// By default, the captured request with a truncated record is accepted: the good
/// record is decoded, the bad one kept in the dead-letter table as it was sent.
#[tokio::test]
async fn the_captured_bad_record_goes_to_the_dead_letters() {
    let server = TestServer::new();
    let body = fixture("alloy/cw_logs_control_and_bad_records.json");
    let request_id = request_id_of(&body);
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let reply = server.send(delivery(&request_id, body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    // Record 0 is a control message: accepted, not stored.
    assert!(server.events().is_empty());
    let dead = common::dead_letters(server.dir.path());
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["kind"], "dead_letter");
    assert_eq!(dead[0]["firehose"]["record_index"], 1);
    assert_eq!(
        dead[0]["data"], sent["records"][1]["data"],
        "kept exactly as sent"
    );
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("base64"),
        "{}",
        dead[0]
    );
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(r#"hydrant_dead_letter_records_total{format="base64"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("hydrant_control_messages_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn too_many_records_get_400() {
    let limits = Limits {
        max_records: 2,
        ..Limits::default()
    };
    let server = TestServer::with(
        Auth::Keys(vec![hydrant::server::auth::AccessKey::new(KEY_NAME, KEY)]),
        limits,
    );
    let reply = server
        .send(delivery("r-n", body_of("r-n", &[b"1", b"2", b"3"])))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.error_message().contains("more than 2 records"));
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let limits = Limits {
        max_body_bytes: 1000,
        max_inflated_bytes: 2000,
        ..Limits::default()
    };
    let keys = || Auth::Keys(vec![hydrant::server::auth::AccessKey::new(KEY_NAME, KEY)]);
    let big = body_of("r-big", &[&[b'a'; 2000]]);

    // Declared by Content-Length.
    let server = TestServer::with(keys(), limits);
    let mut request = delivery("r-big", big.clone());
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, big.len().into());
    let reply = server.send(request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_contract_reply(&reply, "r-big");

    // Streamed without a length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.as_bytes().chunks(100).map(|c| Ok(c.to_vec())).collect();
    let request = delivery("r-big", Body::from_stream(futures_stream(chunks)));
    let reply = server.send(request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Small on the wire, too large once inflated (a gzip bomb).
    let bomb = gzip(body_of("r-big", &[&[0u8; 50_000]]).as_bytes());
    assert!(bomb.len() < 1000);
    let mut request = delivery("r-big", bomb);
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
    let reply = server.send(request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.error_message().contains("inflated"));
    assert!(server.events().is_empty());
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::iter(chunks)
}

#[tokio::test]
async fn in_flight_budget_exhausted_gets_503_at_once() {
    let server = TestServer::new();
    // Hold the whole budget, as a flood of large deliveries would.
    let mut hog = server.state.in_flight().reservation();
    hog.grow(server.state.limits().max_in_flight_bytes).unwrap();
    let reply = server.send(delivery("r-o", body_of("r-o", &[b"x"]))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_contract_reply(&reply, "r-o");
    drop(hog);
    let reply = server.send(delivery("r-o", body_of("r-o", &[b"x"]))).await;
    assert_eq!(reply.status, StatusCode::OK, "the budget is released");
}

/// A delivery whose decoded events need more than the whole in-flight budget (a
/// small gzip'd body that inflates a lot) runs alone rather than being refused
/// forever; while anything else is in flight it gets 503 like any other.
#[tokio::test]
async fn a_delivery_larger_than_the_budget_runs_alone() {
    let limits = Limits {
        max_in_flight_bytes: 256 * 1024,
        ..Limits::default()
    };
    let server = TestServer::with(
        Auth::Keys(vec![hydrant::server::auth::AccessKey::new(KEY_NAME, KEY)]),
        limits,
    );
    let events: Vec<Value> = (0..5_000)
        .map(|n| serde_json::json!({"id": n.to_string(), "timestamp": 1, "message": "the same line, over and over"}))
        .collect();
    let envelope = serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g",
        "logStream": "s", "subscriptionFilters": [], "logEvents": events});
    let record = gzip(envelope.to_string().as_bytes());
    let body = body_of("r-big", &[&record]);
    assert!(body.len() < 64 * 1024, "the body itself fits easily");

    let mut other = server.state.in_flight().reservation();
    other.grow(1).unwrap();
    let reply = server.send(delivery("r-big", body.clone())).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not while another request is in flight"
    );
    drop(other);
    let reply = server.send(delivery("r-big", body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    assert_eq!(server.events().len(), 5_000);
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains("hydrant_in_flight_bytes 0"),
        "released afterwards"
    );
}

#[tokio::test]
async fn shutting_down_gets_503() {
    let server = TestServer::new();
    server.state.begin_shutdown();
    let reply = server.send(delivery("r-s", body_of("r-s", &[b"x"]))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.error_message().contains("shutting down"));
    let (status, _) = server.admin("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn closed_storage_gets_503() {
    let server = TestServer::new();
    server.state.sinks().close().await;
    let reply = server.send(delivery("r-c", body_of("r-c", &[b"x"]))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_contract_reply(&reply, "r-c");
}

/// A real storage failure: the partition directory cannot be created because a
/// file stands where the `events` directory should be.
#[tokio::test]
async fn storage_write_failure_gets_503_and_recovers() {
    let server = TestServer::new();
    let events = server.dir.path().join("events");
    std::fs::remove_dir_all(&events).unwrap();
    std::fs::write(&events, b"in the way").unwrap();
    let reply = server.send(delivery("r-w", body_of("r-w", &[b"x"]))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_contract_reply(&reply, "r-w");
    assert!(
        reply.error_message().contains(r#"sink "file""#),
        "{}",
        reply.error_message()
    );
    assert!(
        !reply
            .error_message()
            .contains(server.dir.path().to_str().unwrap()),
        "no local paths"
    );
    // Three failed attempts mark the sink down: the next delivery fails at once.
    let (status, _) = server.admin("/readyz").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "readiness follows the sink"
    );
    let reply = server.send(delivery("r-w", body_of("r-w", &[b"x"]))).await;
    assert!(
        reply.error_message().contains("unavailable"),
        "{}",
        reply.error_message()
    );

    std::fs::remove_file(&events).unwrap();
    server.state.sinks().probe_all().await;
    let reply = server.send(delivery("r-w", body_of("r-w", &[b"x"]))).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the retry is stored, not taken for a duplicate"
    );
    assert_eq!(server.events().len(), 1);
    assert_eq!(server.admin("/readyz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn get_requests_never_get_5xx() {
    let server = TestServer::new();
    let healthz = server
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(healthz.status, StatusCode::OK);
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/firehose"),
        ("HEAD", "/x"),
        ("PUT", "/firehose"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let reply = server.send(request).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(reply.headers[header::ALLOW], "POST");
    }
}

#[tokio::test]
async fn no_auth_accepts_without_a_key_and_names_none() {
    let server = TestServer::with(Auth::Disabled, Limits::default());
    let mut request = delivery("r-na", body_of("r-na", &[b"x"]));
    request.headers_mut().remove("x-amz-firehose-access-key");
    assert_eq!(server.send(request).await.status, StatusCode::OK);
    assert!(server.events()[0]["firehose"]["access_key_name"].is_null());
}

#[tokio::test]
async fn admin_serves_metrics_and_health_without_secrets() {
    let server = TestServer::new();
    server
        .send(delivery("r-m1", body_of("r-m1", &[b"a", b"b"])))
        .await;
    let mut wrong = delivery("r-m2", body_of("r-m2", &[b"a"]));
    wrong
        .headers_mut()
        .insert("x-amz-firehose-access-key", "not-the-key".parse().unwrap());
    server.send(wrong).await;

    let (status, metrics) = server.admin("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        r#"hydrant_requests_total{access_key="test-sender",delivery_stream="test-stream",outcome="ok"} 1"#,
        r#"hydrant_requests_total{access_key="(none)",delivery_stream="(none)",outcome="unauthorized"} 1"#,
        r#"hydrant_received_records_total{access_key="test-sender",delivery_stream="test-stream"} 2"#,
        r#"hydrant_events_written_total{access_key="test-sender",delivery_stream="test-stream"} 2"#,
        "hydrant_ack_latency_seconds_count",
        "hydrant_storage_write_seconds_count 1",
        "hydrant_in_flight_bytes 0",
        "hydrant_build_info{features=",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
    assert!(!metrics.contains(KEY) && !metrics.contains("not-the-key"));
    assert_eq!(server.admin("/healthz").await.0, StatusCode::OK);
    assert_eq!(server.admin("/readyz").await.0, StatusCode::OK);
}

/// A 1 MiB, 500-record delivery, like Firehose sends with a 1 MiB buffer.
#[tokio::test]
async fn a_one_mebibyte_500_record_delivery() {
    let server = TestServer::new();
    let line = |n: usize| format!(r#"{{"level":"info","n":{n},"msg":"{}"}}"#, "x".repeat(2000));
    let records: Vec<String> = (0..500).map(line).collect();
    let refs: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
    let body = body_of("r-mib", &refs);
    assert!(body.len() > 1 << 20);
    let reply = server.send(delivery("r-mib", body)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let events = server.events();
    assert_eq!(events.len(), 500);
    assert_eq!(events[499]["data"]["n"], 499);
}

/// Every header Hydrant reads is refused with a 400 naming it when it is not
/// UTF-8 or is sent more than once, instead of being read as absent (or as one of
/// its copies) and acted on.
#[tokio::test]
async fn unreadable_or_repeated_headers_get_400_naming_them() {
    type Edit = fn(&mut axum::http::HeaderMap);
    fn set(headers: &mut axum::http::HeaderMap, name: &'static str, value: &[u8]) {
        headers.insert(name, header::HeaderValue::from_bytes(value).unwrap());
    }
    fn add(headers: &mut axum::http::HeaderMap, name: &'static str, value: &str) {
        headers.append(name, value.parse().unwrap());
    }
    let table: Vec<(&str, Edit, &str)> = vec![
        (
            "source ARN not UTF-8",
            |h| {
                set(
                    h,
                    "x-amz-firehose-source-arn",
                    b"arn:aws:firehose:eu-west-1:123456789012:deliverystream/s\xff",
                );
            },
            "invalid x-amz-firehose-source-arn header: not valid UTF-8",
        ),
        (
            "protocol version not UTF-8",
            |h| set(h, "x-amz-firehose-protocol-version", b"1.0\xff"),
            "invalid x-amz-firehose-protocol-version header: not valid UTF-8",
        ),
        (
            "request id not UTF-8",
            |h| set(h, "x-amz-firehose-request-id", b"r-hdr\xff"),
            "invalid x-amz-firehose-request-id header: not valid UTF-8",
        ),
        (
            "common attributes not UTF-8 in a field that is not read",
            |h| {
                set(
                    h,
                    "x-amz-firehose-common-attributes",
                    b"{\"commonAttributes\":{\"env\":\"test\"},\"x\":\"\xff\"}",
                );
            },
            "invalid x-amz-firehose-common-attributes header: not valid UTF-8",
        ),
        (
            "content encoding not UTF-8",
            |h| set(h, "content-encoding", b"gzip\xff"),
            "invalid content-encoding header: not valid UTF-8",
        ),
        (
            "content length not UTF-8",
            |h| set(h, "content-length", b"9\xff"),
            "invalid content-length header: not valid UTF-8",
        ),
        (
            "content length not a number",
            |h| set(h, "content-length", b"+12"),
            "invalid content-length header: not a decimal number",
        ),
        (
            "source ARN twice",
            |h| {
                add(
                    h,
                    "x-amz-firehose-source-arn",
                    "arn:aws:firehose:us-east-1:210987654321:deliverystream/other",
                );
            },
            "invalid x-amz-firehose-source-arn header: sent more than once",
        ),
        (
            "request id twice",
            |h| add(h, "x-amz-firehose-request-id", "r-other"),
            "invalid x-amz-firehose-request-id header: sent more than once",
        ),
        (
            "content encoding twice",
            |h| {
                add(h, "content-encoding", "identity");
                add(h, "content-encoding", "gzip");
            },
            "invalid content-encoding header: sent more than once",
        ),
    ];
    let body = body_of("r-hdr", &[b"{}"]);
    let mut wrong = Vec::new();
    for (name, edit, message) in table {
        let server = TestServer::new();
        let mut request = delivery("r-hdr", body.clone());
        edit(request.headers_mut());
        let echo =
            String::from_utf8_lossy(request.headers()["x-amz-firehose-request-id"].as_bytes())
                .into_owned();
        let reply = server.send(request).await;
        if (reply.status, reply.error_message()) != (StatusCode::BAD_REQUEST, message) {
            wrong.push(format!(
                "{name}: {} {:?}",
                reply.status,
                reply.error_message()
            ));
            continue;
        }
        assert_contract_reply(&reply, &echo);
        assert!(server.events().is_empty(), "{name}: nothing may be stored");
    }
    assert!(
        wrong.is_empty(),
        "not refused as expected:\n{}",
        wrong.join("\n")
    );
}

/// A header value in UTF-8 beyond ASCII is read as the text it is, not dropped.
#[tokio::test]
async fn headers_in_utf8_beyond_ascii_are_read_not_dropped() {
    let server = TestServer::new();
    // A stream name beyond ASCII is no AWS stream name: refused, naming the
    // header, instead of being read as "no ARN" and stored with null facts.
    let arn = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/flöde";
    let mut request = delivery("r-utf8", body_of("r-utf8", &[b"{}"]));
    request.headers_mut().insert(
        "x-amz-firehose-source-arn",
        header::HeaderValue::from_bytes(arn.as_bytes()).unwrap(),
    );
    let reply = server.send(request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.error_message().contains("Source-Arn"),
        "{}",
        reply.error_message()
    );
    // Common attributes may hold any text: kept as sent.
    let mut request = delivery("r-utf8", body_of("r-utf8", &[b"{}"]));
    request.headers_mut().insert(
        "x-amz-firehose-common-attributes",
        header::HeaderValue::from_bytes(r#"{"commonAttributes":{"équipe":"flöde"}}"#.as_bytes())
            .unwrap(),
    );
    let reply = server.send(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    let events = server.events();
    assert_eq!(
        events[0]["firehose"]["common_attributes"]["équipe"],
        "flöde"
    );
}

/// JSON text is UTF-8 (RFC 8259 section 8.1): a body that is not, even where
/// only a field Hydrant ignores holds the bad bytes, gets 400, plain or gzip'd.
#[tokio::test]
async fn bodies_that_are_not_utf8_get_400() {
    let record = STANDARD.encode(b"{}");
    // `text` as the value of an ignored field, top-level or inside a record.
    let top_level = |text: &[u8]| {
        let head = format!(
            r#"{{"requestId":"r-u","timestamp":1,"records":[{{"data":"{record}"}}],"note":""#
        );
        [head.as_bytes(), text, b"\"}"].concat()
    };
    let in_a_record = |text: &[u8]| {
        let head =
            format!(r#"{{"requestId":"r-u","timestamp":1,"records":[{{"data":"{record}","note":""#);
        [head.as_bytes(), text, b"\"}]}"].concat()
    };
    let table: Vec<(&str, Vec<u8>, bool)> = vec![
        ("a lone 0xff in an ignored field", top_level(b"\xff"), false),
        ("the same, gzip'd", gzip(&top_level(b"\xff")), true),
        (
            "a truncated sequence in a record's ignored field",
            in_a_record(b"\xc3("),
            false,
        ),
    ];
    for (name, body, gzipped) in table {
        let server = TestServer::new();
        let mut request = delivery("r-u", body);
        if gzipped {
            request
                .headers_mut()
                .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        }
        let reply = server.send(request).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}");
        assert!(
            reply.error_message().contains("not UTF-8 at byte"),
            "{name}: {}",
            reply.error_message()
        );
        assert_contract_reply(&reply, "r-u");
        assert!(server.events().is_empty(), "{name}");
    }
    // Valid UTF-8 beyond ASCII in the same places is fine.
    for body in [
        top_level("flöde".as_bytes()),
        in_a_record("flöde".as_bytes()),
    ] {
        let server = TestServer::new();
        let reply = server.send(delivery("r-u", body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    }
}

/// A method a path does not take gets 405 with a JSON error and the `Allow` of
/// that path; an unknown admin path gets 404 with a JSON error.
#[tokio::test]
async fn wrong_methods_and_paths_get_a_json_error_and_the_right_allow() {
    use hydrant::server::admin_router;
    use tower::ServiceExt;
    let server = TestServer::new();
    let check = |reply: &common::Reply, status: StatusCode, allow: Option<&str>, what: &str| {
        assert_eq!(reply.status, status, "{what}");
        assert_eq!(
            reply
                .headers
                .get(header::ALLOW)
                .map(|v| v.to_str().unwrap()),
            allow,
            "{what}"
        );
        assert_eq!(
            reply.headers[header::CONTENT_TYPE],
            "application/json",
            "{what}"
        );
        assert!(!reply.error_message().is_empty(), "{what}: {:?}", reply.raw);
    };
    for method in ["PUT", "DELETE", "PATCH"] {
        let request = Request::builder()
            .method(method)
            .uri("/healthz")
            .body(Body::empty())
            .unwrap();
        let reply = server.send(request).await;
        check(
            &reply,
            StatusCode::METHOD_NOT_ALLOWED,
            Some("GET, HEAD, POST"),
            &format!("{method} /healthz"),
        );
    }
    let reply = server
        .send(Request::get("/firehose").body(Body::empty()).unwrap())
        .await;
    check(
        &reply,
        StatusCode::METHOD_NOT_ALLOWED,
        Some("POST"),
        "GET on a delivery path",
    );
    let head = server
        .send(Request::head("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(head.status, StatusCode::OK);

    let admin = |request: Request<Body>| async {
        let response = admin_router(server.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        common::Reply::read(response).await
    };
    for path in ["/metrics", "/healthz", "/readyz"] {
        let reply = admin(Request::post(path).body(Body::empty()).unwrap()).await;
        check(
            &reply,
            StatusCode::METHOD_NOT_ALLOWED,
            Some("GET, HEAD"),
            &format!("POST {path} on the admin listener"),
        );
    }
    let reply = admin(Request::get("/nothing").body(Body::empty()).unwrap()).await;
    check(&reply, StatusCode::NOT_FOUND, None, "unknown admin path");
}

/// A bad record of a stream fixed to one OpenTelemetry version names that
/// version's format, in the dead letter and in the metric.
#[tokio::test]
async fn an_opentelemetry_dead_letter_names_the_configured_format() {
    let server = TestServer::with_settings(settings_with(|decode| {
        decode.default_format = hydrant::decode::Format::MetricStreamOtel10;
    }));
    let body = fixture("victoriametrics/firehose_metric_stream_otel07_request.json");
    let reply = server.send(delivery(&request_id_of(&body), body)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let dead = common::dead_letters(server.dir.path());
    assert_eq!(dead.len(), 2);
    assert!(
        dead.iter()
            .all(|line| line["format"] == "metric_stream_otel10"),
        "{dead:?}"
    );
    let (_, metrics) = server.admin("/metrics").await;
    assert!(
        metrics.contains(r#"hydrant_dead_letter_records_total{format="metric_stream_otel10"} 2"#),
        "{metrics}"
    );
}

/// The lines of the decode metrics (records decoded, dead letters, control
/// messages), to compare before and after a retry.
fn decode_metrics(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("hydrant_records_decoded_total")
                || line.starts_with("hydrant_dead_letter_records_total")
                || line.starts_with("hydrant_control_messages_total")
        })
        .map(str::to_owned)
        .collect()
}

/// A Firehose retry of a delivery every sink has stored is answered 200 before
/// it is decoded: the decode metrics do not move, nothing is written again, and
/// it is counted as a duplicate (for the delivery and for each sink).
#[tokio::test]
async fn a_retry_of_a_stored_delivery_is_not_decoded_again() {
    let server = TestServer::new();
    let id = "retry-no-decode";
    let good = STANDARD.encode(br#"{"a":1}"#);
    let body = format!(
        r#"{{"requestId":"{id}","timestamp":1,"records":[{{"data":"{good}"}},{{"data":"not base64!"}}]}}"#
    );
    let reply = server.send(delivery(id, body.clone())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    let (_, before) = server.admin("/metrics").await;
    assert!(
        before.contains(r#"hydrant_dead_letter_records_total{format="base64"} 1"#),
        "{before}"
    );
    let reply = server.send(delivery(id, body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.error_message());
    assert_contract_reply(&reply, id);
    let (_, after) = server.admin("/metrics").await;
    assert_eq!(decode_metrics(&before), decode_metrics(&after));
    assert!(
        after.contains(
            r#"hydrant_duplicate_deliveries_total{access_key="test-sender",delivery_stream="test-stream"} 1"#
        ),
        "{after}"
    );
    assert!(
        after.contains(r#"hydrant_sink_duplicates_total{sink="file",sink_type="file"} 1"#),
        "{after}"
    );
    assert_eq!(server.events().len(), 1);
    assert_eq!(common::dead_letters(server.dir.path()).len(), 1);
}

/// With routes that depend on the events, a retry is answered without decoding
/// once every sink a route could send it to (and the default) has it; while one
/// of them never got it, the retry is decoded and still stored once.
#[tokio::test]
async fn a_retry_with_event_routes_is_recognised_by_its_candidate_sinks() {
    use hydrant::routing::{Match, Route, Router, SinkSet};
    use hydrant::sink::Sink;
    use hydrant::sink::discard::DiscardSink;
    let mut settings = settings_with(|_| {});
    settings.router = Router {
        routes: vec![Route {
            name: "metrics".into(),
            matcher: Match {
                kinds: vec!["metric".into()],
                ..Match::default()
            },
            sinks: SinkSet::of(&[1]),
            continue_matching: false,
        }],
        default_sinks: SinkSet::of(&[0]),
    };
    let server = TestServer::with_sinks(settings, |_, _| {
        vec![("null".to_owned(), Sink::Discard(DiscardSink))]
    });
    let metric: Value = serde_json::from_slice(&fixture("telegraf/record.json")).unwrap();
    let metric = metric["records"][0]["data"].as_str().unwrap().to_owned();
    let raw = STANDARD.encode(br#"{"a":1}"#);
    let both = format!(
        r#"{{"requestId":"both","timestamp":1,"records":[{{"data":"{metric}"}},{{"data":"{raw}"}}]}}"#
    );
    let raw_only = format!(r#"{{"requestId":"raw","timestamp":1,"records":[{{"data":"{raw}"}}]}}"#);

    for (id, body) in [("both", &both), ("raw", &raw_only)] {
        let reply = server.send(delivery(id, body.clone())).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{id}: {}",
            reply.error_message()
        );
    }
    let (_, before) = server.admin("/metrics").await;
    let reply = server.send(delivery("both", both)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let (_, after) = server.admin("/metrics").await;
    assert_eq!(
        decode_metrics(&before),
        decode_metrics(&after),
        "both candidate sinks have it"
    );

    let reply = server.send(delivery("raw", raw_only)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let (_, decoded) = server.admin("/metrics").await;
    assert_ne!(
        decode_metrics(&after),
        decode_metrics(&decoded),
        "the metric route's sink never had it: decoded, to be sure"
    );
    assert!(
        decoded.contains(
            r#"hydrant_duplicate_deliveries_total{access_key="test-sender",delivery_stream="test-stream"} 2"#
        ),
        "{decoded}"
    );
    assert_eq!(server.events().len(), 2, "each raw record stored once");
}
