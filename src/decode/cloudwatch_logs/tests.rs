use super::*;
use crate::decode::Stats;
use crate::event::{Delivery, EventWriter};
use crate::testing::{fixture, parse_lines};

/// The record's result (an error as its dead-letter reason), the events written
/// and the counts.
fn run_counted(bytes: &[u8]) -> (Result<Envelopes, String>, Vec<Value>, Stats) {
    let mut writer = EventWriter::new(&Delivery::default(), 0);
    let mut stats = Stats::default();
    let result = decode(bytes, &mut RecordCx::new(&mut writer, &mut stats));
    let lines = writer.finish().concat();
    (
        result.map_err(|error| error.to_string()),
        parse_lines(&lines),
        stats,
    )
}

fn run(bytes: &[u8]) -> (Result<Envelopes, String>, Vec<Value>) {
    let (result, events, _) = run_counted(bytes);
    (result, events)
}

/// Names past CloudWatch's limits make the record bad; at the limits it decodes.
#[test]
fn envelope_names_are_held_to_cloudwatch_limits() {
    let envelope = |group: &str, stream: &str, filters: Vec<String>| {
        serde_json::json!({
            "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": group,
            "logStream": stream, "subscriptionFilters": filters,
            "logEvents": [{"id": "1", "timestamp": 1, "message": ""}],
        })
        .to_string()
    };
    let at_limit = envelope(
        &"g".repeat(MAX_LOG_GROUP_CHARS),
        &"é".repeat(MAX_LOG_STREAM_CHARS),
        vec!["f".repeat(MAX_FILTER_NAME_CHARS); MAX_FILTERS],
    );
    assert_eq!(run(at_limit.as_bytes()).0.map(|d| d.events), Ok(1));
    let table = [
        (
            "logGroup",
            envelope(&"g".repeat(MAX_LOG_GROUP_CHARS + 1), "s", vec![]),
        ),
        (
            "logStream",
            envelope("g", &"s".repeat(MAX_LOG_STREAM_CHARS + 1), vec![]),
        ),
        (
            "subscriptionFilters",
            envelope("g", "s", vec!["f".into(); MAX_FILTERS + 1]),
        ),
        (
            "subscription filter name",
            envelope("g", "s", vec!["f".repeat(MAX_FILTER_NAME_CHARS + 1)]),
        ),
    ];
    for (what, record) in table {
        let (result, events) = run(record.as_bytes());
        let error = result.unwrap_err();
        assert!(error.contains(what), "{what}: {error}");
        assert!(events.is_empty());
    }
}

#[test]
fn decodes_a_data_message_field_by_field() {
    let (result, events) = run(&fixture("otel-contrib/cwlog/single_record"));
    assert_eq!(
        result,
        Ok(Envelopes {
            events: 1,
            control_messages: 0
        })
    );
    let event = &events[0];
    assert_eq!(event["kind"], "log");
    assert_eq!(event["timestamp"], 1_725_544_035_523_i64);
    assert_eq!(
        event["message"],
        "Hello world, here is our first log message!"
    );
    assert_eq!(event["format"], "text");
    assert!(event.get("parsed").is_none());
    assert_eq!(event["aws"]["account_id"], "123");
    assert_eq!(event["aws"]["log_group"], "test");
    assert_eq!(event["aws"]["log_stream"], "test");
    assert_eq!(
        event["aws"]["subscription_filters"],
        serde_json::json!(["test"])
    );
    assert_eq!(
        event["aws"]["event_id"], "38480917865042697267627490045603633139480491071049695232",
        "the id is kept as a string, digit for digit"
    );
    assert!(event["aws"]["region"].is_null());
}

/// A JSON message is stored once, as `parsed`, when that is its exact text; in
/// every other case `message` is kept so no byte of what was logged is lost.
#[test]
fn json_messages_are_stored_once_unless_their_text_would_change() {
    let table: &[(&str, &str, bool)] = &[
        // (message as logged, format, `message` written)
        (r#"{"level":"info","n":1}"#, "json", false),
        (r#"{"a":"say \"hi\"","b":[1,2]}"#, "json", false),
        ("{\"level\":\"info\"}\n", "json", true),
        (" {\"a\":1}", "json", true),
        ("{\"a\":\n 1}", "json", true),
        ("{not json", "text", true),
        ("plain text", "text", true),
    ];
    for &(message, format, keeps_message) in table {
        let envelope = serde_json::json!({
            "messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g",
            "logStream": "s", "subscriptionFilters": ["f"],
            "logEvents": [{"id": "1", "timestamp": 5, "message": message}],
        });
        let (result, events) = run(envelope.to_string().as_bytes());
        assert_eq!(result.map(|decoded| decoded.events), Ok(1), "{message:?}");
        let event = &events[0];
        assert_eq!(event["format"], format, "{message:?}");
        assert_eq!(event.get("message").is_some(), keeps_message, "{message:?}");
        let text = match event.get("message") {
            Some(written) => written.as_str().unwrap().to_owned(),
            None => event["parsed"].to_string(),
        };
        assert_eq!(text, message, "the text is recoverable byte for byte");
    }
}

#[test]
fn several_envelopes_in_one_record() {
    let (result, events) = run(&fixture("otel-contrib/cwlog/multiple_records"));
    assert_eq!(result.unwrap().events, events.len());
    assert!(events.len() >= 2);
    let (result, events) = run(&fixture(
        "otel-contrib/subscription-filter/multiple_json_objects.json",
    ));
    assert_eq!(result.unwrap().events, events.len());
    assert!(events.len() >= 2);
}

/// The same envelope gives the same lines whatever the order of its fields:
/// CloudWatch's (events last, written as they are parsed) or sorted keys
/// (events first, read once the envelope is done); back to back or not.
#[test]
fn field_order_does_not_change_the_events() {
    let input = r#"[{"id":"1","timestamp":5,"message":"one"},{"id":"2","timestamp":6,"message":"{\"a\":1}","extractedFields":{"@aws.region":"eu-west-1"}}]"#;
    let head = [
        r#""messageType":"DATA_MESSAGE""#,
        r#""owner":"123456789012""#,
        r#""logGroup":"/aws/lambda/a""#,
        r#""logStream":"s""#,
        r#""subscriptionFilters":["f"]"#,
    ]
    .join(",");
    let cloudwatch = format!(r#"{{{head},"logEvents":{input},"policyLevel":"x"}}"#);
    let sorted = format!(
        r#"{{"logEvents":{input},"logGroup":"/aws/lambda/a","logStream":"s","messageType":"DATA_MESSAGE","owner":"123456789012","subscriptionFilters":["f"]}}"#
    );
    let middle = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"123456789012","logEvents":{input},"logGroup":"/aws/lambda/a","logStream":"s","subscriptionFilters":["f"]}}"#
    );
    let (result, expected) = run(cloudwatch.as_bytes());
    assert_eq!(result.unwrap().events, 2);
    assert_eq!(expected[1]["aws"]["region"], "eu-west-1");
    assert_eq!(expected[0]["aws"]["log_group"], "/aws/lambda/a");
    for other in [&sorted, &middle] {
        let (result, events) = run(other.as_bytes());
        assert_eq!(result.unwrap().events, 2);
        assert_eq!(events, expected, "{other}");
    }
    let (result, events) = run(format!("{cloudwatch}{sorted}\n{middle}").as_bytes());
    assert_eq!(result.unwrap().events, 6);
    assert_eq!(events[4], expected[0]);
    // A field given twice is an error, as it was.
    let twice = format!(r#"{{{head},"logGroup":"again","logEvents":{input}}}"#);
    assert!(
        run(twice.as_bytes())
            .0
            .unwrap_err()
            .contains("duplicate field")
    );
    // A name past its limit is reported in either order.
    let long = format!(
        r#"{{"logEvents":{input},"logGroup":"{}","messageType":"DATA_MESSAGE"}}"#,
        "g".repeat(MAX_LOG_GROUP_CHARS + 1)
    );
    let error = run(long.as_bytes()).0.unwrap_err();
    assert!(error.starts_with("logGroup is longer than 512"), "{error}");
}

#[test]
fn control_messages_are_counted_not_stored() {
    for name in [
        "otel-contrib/cwlog/only_control",
        "otel-contrib/subscription-filter/valid_cloudwatch_log_control.json",
    ] {
        let (result, events, stats) = run_counted(&fixture(name));
        assert_eq!(
            result,
            Ok(Envelopes {
                events: 0,
                control_messages: 1
            }),
            "{name}"
        );
        assert!(events.is_empty());
        assert_eq!(stats.control_messages, 1, "{name}");
    }
}

#[test]
fn extracted_fields_give_account_and_region() {
    let (_, events) = run(&fixture("otel-contrib/cwlog/extracted_fields_both"));
    let aws = &events[0]["aws"];
    assert!(aws["account_id"].is_string());
    assert!(aws["region"].is_string());
}

#[test]
fn cloudtrail_messages_are_parsed_and_marked() {
    let (_, events) = run(&fixture(
        "otel-contrib/cloudtraillog/cloudtrail_log_cw.json",
    ));
    assert!(!events.is_empty());
    for event in &events {
        assert_eq!(event["format"], "cloudtrail");
        assert!(event["parsed"]["eventName"].is_string());
        assert!(
            event["parsed"]["userIdentity"].is_object(),
            "parsed, not an escaped string"
        );
    }
}

#[test]
fn vpc_flow_lines_are_split_into_fields() {
    let (_, events) = run(&fixture("otel-contrib/vpc-flow-log/valid_vpc_flow_cw.json"));
    assert!(!events.is_empty());
    for event in &events {
        assert_eq!(event["format"], "vpc_flow", "{event}");
        assert_eq!(event["parsed"]["version"], 2);
        assert!(event["parsed"]["interface-id"].is_string());
    }
}

#[test]
fn ids_stay_strings_and_unknown_fields_are_tolerated() {
    let record = br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":[],"policyLevel":"ACCOUNT_LEVEL_POLICY","logEvents":[{"id":"36582947382759234987234987234987234987239847239847","timestamp":5,"message":"{\"a\":1}","newField":true}]}"#;
    let (result, events) = run(record);
    assert_eq!(result.unwrap().events, 1);
    assert_eq!(
        events[0]["aws"]["event_id"],
        "36582947382759234987234987234987234987239847239847"
    );
    assert_eq!(events[0]["format"], "json");
    assert_eq!(events[0]["parsed"]["a"], 1);
}

/// Each message's format and `parsed`, as written: JSON exactly as logged (on
/// one line if it spanned lines), never rebuilt from a value tree.
#[test]
fn messages_are_classified() {
    // (message, format, `parsed` as written)
    let table: &[(&str, &str, Option<&str>)] = &[
        ("plain words", "text", None),
        (
            r#"{"level":"warn","n":1}"#,
            "json",
            Some(r#"{"level":"warn","n":1}"#),
        ),
        (
            "{\n  \"level\": \"warn\"\n}",
            "json",
            Some(r#"{"level":"warn"}"#),
        ),
        (
            "{\n \"n\": 123456789012345678901234567890,\n \"m\": 18446744073709551616\n}",
            "json",
            Some(r#"{"n":123456789012345678901234567890,"m":18446744073709551616}"#),
        ),
        (
            "{\r\n\t\"x\": 0.1000000000000000055511151231257827,\r\n\t\"b\": 1e400,\r\n\t\"b\": -0.0e-7\r\n}",
            "json",
            Some(r#"{"x":0.1000000000000000055511151231257827,"b":1e400,"b":-0.0e-7}"#),
        ),
        (
            r#" {"b": 1e400, "a": 2, "a": 3} "#,
            "json",
            Some(r#"{"b": 1e400, "a": 2, "a": 3}"#),
        ),
        (
            "{\"eventVersion\": \"1.08\",\n \"eventSource\": \"s3.amazonaws.com\",\n \"eventName\": \"GetObject\",\n \"eventTime\": \"2024-01-01T00:00:00Z\", \"n\": 1e400}",
            "cloudtrail",
            Some(
                r#"{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"GetObject","eventTime":"2024-01-01T00:00:00Z","n":1e400}"#,
            ),
        ),
        (r#"{"not json"#, "text", None),
        (r#"[1,2]"#, "text", None),
    ];
    for &(message, format, parsed) in table {
        let (got_format, got_parsed) = classify_message(message, None);
        assert_eq!(got_format.as_str(), format, "{message}");
        let mut writer = EventWriter::new(&Delivery::default(), 0);
        let log = LogEvent {
            timestamp: 0,
            message,
            format: got_format,
            parsed: got_parsed,
            aws: AwsHead::none(),
            event_id: None,
        };
        let keeps_message = !log.message_is_parsed();
        writer.log(0, Facts::default(), &log);
        let line = String::from_utf8(writer.finish().concat()).unwrap();
        let written = line.find(r#","parsed":"#).map(|start| {
            let start = start + r#","parsed":"#.len();
            &line[start..line.rfind(r#","aws":"#).unwrap()]
        });
        assert_eq!(written, parsed, "{message}");
        assert_eq!(
            keeps_message,
            parsed != Some(message),
            "`message` is kept unless `parsed` is its exact text: {message}"
        );
    }
}

#[test]
fn malformed_records_are_errors() {
    let table: &[&[u8]] = &[
        b"",
        b"   ",
        b"not json",
        br#"{"messageType":"SOMETHING_ELSE"}"#,
        br#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","message":"no timestamp"}]}"#,
        br#"{"messageType":"DATA_MESSAGE","logEvents":[]} trailing"#,
    ];
    for bytes in table {
        assert!(run(bytes).0.is_err(), "{}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn message_lines_become_log_events() {
    let mut writer = EventWriter::new(&Delivery::default(), 0);
    let mut stats = Stats::default();
    let mut cx = RecordCx::new(&mut writer, &mut stats);
    cx.settings.timestamp = 99;
    let count = decode_messages(b"first line\r\n{\"level\":\"warn\"}\n\nthird\n", &mut cx).unwrap();
    assert_eq!(count, 3);
    let lines = writer.finish().concat();
    let events = parse_lines(&lines);
    assert_eq!(events[0]["message"], "first line");
    assert_eq!(events[0]["timestamp"], 99);
    assert!(events[0]["aws"]["log_group"].is_null());
    assert_eq!(events[1]["format"], "json");
    assert_eq!(events[2]["message"], "third");
}
