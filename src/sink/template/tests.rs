use std::sync::Arc;

use super::*;

fn delivery() -> Delivery {
    Delivery {
        request_id: "req-1".into(),
        received_at: 1_700_000_000_123,
        delivery_stream: Some("logs-prod".into()),
        account_id: Some("123456789012".into()),
        region: Some("eu-west-1".into()),
        access_key_name: Some("prod".into()),
        path: "/firehose/logs".into(),
        ..Delivery::default()
    }
}

fn key() -> DeliveryKey {
    DeliveryKey::new(
        Some("arn:aws:firehose:eu-west-1:123456789012:deliverystream/logs-prod"),
        "req-1",
    )
}

#[test]
fn renders_placeholders() {
    let event = EventMeta {
        end: 0,
        record_index: 3,
        event_index: 7,
        kind: "log",
        format: Some("json"),
        log_group: Some(Arc::from("/aws/lambda/f")),
        namespace: None,
        source: None,
        detail_type: None,
        sinks: crate::routing::SinkSet::default(),
    };
    let table = [
        (
            "{table}/dt={date}/hour={hour}/{delivery_stream}/{request_id}.ndjson.gz",
            "events/dt=2023-11-14/hour=22/logs-prod/req-1.ndjson.gz",
        ),
        ("hydrant.{kind}.{log_group}", "hydrant.log./aws/lambda/f"),
        ("{request_id}:{record_index}:{event_index}", "req-1:3:7"),
        (
            "{namespace}-{path}-{access_key}-{account_id}-{region}-{format}",
            "none-firehose/logs-prod-123456789012-eu-west-1-json",
        ),
        ("literal", "literal"),
        (
            "{delivery_key}:{table}:{record_index}:{event_index}",
            "ecf6c1c1010664c6c6840aa84d825316:events:3:7",
        ),
    ];
    let key = key();
    assert_eq!(key.to_hex(), "ecf6c1c1010664c6c6840aa84d825316");
    for (text, expected) in table {
        let template = Template::parse(text).unwrap();
        assert_eq!(
            template.render(&delivery(), &key, "events", Some(&event), str::to_owned),
            expected,
            "{text}"
        );
    }
}

#[test]
fn cleaning_applies_to_values_only() {
    let template = Template::parse("hydrant.{log_group}").unwrap();
    let event = EventMeta {
        log_group: Some(Arc::from("/aws/lambda/my fn")),
        ..EventMeta::default()
    };
    let clean = |value: &str| value.replace(['.', ' ', '/'], "_");
    assert_eq!(
        template.render(&delivery(), &key(), "events", Some(&event), clean),
        "hydrant._aws_lambda_my_fn"
    );
    // An absent value is not cleaned, so a cleaning can tell it from "none".
    let shout = |value: &str| value.to_uppercase();
    let template = Template::parse("{namespace}.{log_group}").unwrap();
    assert_eq!(
        template.render(&delivery(), &key(), "events", Some(&event), shout),
        "none./AWS/LAMBDA/MY FN"
    );
}

/// Values that a replacing cleaning would merge (`/` and `_`, empty segments,
/// `none` and an absent value, relative segments, escapes) stay apart, and
/// decoding the escapes gives each value back.
#[test]
fn key_values_are_encoded_injectively() {
    let table = [
        (
            "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        ),
        ("logs_prod.v2", "logs_prod.v2"),
        ("a/b", "a%2Fb"),
        ("a//b", "a%2F%2Fb"),
        ("a_b", "a_b"),
        ("a b", "a%20b"),
        ("a%2Fb", "a%252Fb"),
        ("a:b|c", "a%3Ab%7Cc"),
        ("", ""),
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("...", "..."),
        ("none", "%6Eone"),
        ("nonE", "nonE"),
        ("é", "%C3%A9"),
        ("~", "%7E"),
    ];
    let mut seen = std::collections::BTreeMap::new();
    for (value, expected) in table {
        let encoded = encode_key_value(value);
        assert_eq!(encoded, expected, "{value:?}");
        assert!(!encoded.contains('/'), "{value:?}");
        assert_ne!(encoded, ABSENT, "{value:?}");
        assert_eq!(decode_percent(&encoded), value.as_bytes(), "{value:?}");
        assert!(seen.insert(encoded, value).is_none(), "{value:?}");
    }
}

/// Reverses the `%XX` escapes (a test's own decoder).
fn decode_percent(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(&bytes[at + 1..at + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    out
}

#[test]
fn key_templates_reserve_the_escape_and_digests_are_fixed_length() {
    let ok = Template::parse("{table}/{request_id}.ndjson").unwrap();
    assert_eq!(check_key_template(&ok, "t"), Ok(()));
    let bad = Template::parse("{table}/100%/{request_id}").unwrap();
    assert!(
        check_key_template(&bad, "t")
            .unwrap_err()
            .contains("reserved")
    );
    let digest = digest_hex(b"abc");
    // SHA-256("abc") begins ba7816bf 8f01cfea 414140de 5dae2223.
    assert_eq!(digest, "ba7816bf8f01cfea414140de5dae2223");
    assert_eq!(digest.len(), DIGEST_HEX_LEN);
}

#[test]
fn longest_rendering_counts_free_values_and_fixed_forms() {
    let template = Template::parse("hydrant.{table}.{log_group}").unwrap();
    assert_eq!(
        template.max_rendered_len(100),
        "hydrant..".len() + FIXED_VALUE_MAX_BYTES + 100
    );
    assert!(template.uses("log_group") && !template.uses("kind"));
    assert_eq!(template.literal_text().collect::<String>(), "hydrant..");
}

#[test]
fn a_reshape_counter_counts_by_sink_and_action() {
    let metrics = Metrics::new(10);
    let counter = ReshapeCounter::new(&metrics, "bus", "nats");
    counter.add(RESHAPE_SPLIT, 2);
    counter.add(RESHAPE_HASHED_NAME, 0);
    ReshapeCounter::default().add(RESHAPE_SPLIT, 5);
    let text = metrics.render();
    assert!(
        text.contains(
            r#"hydrant_sink_reshaped_total{action="split_event",sink="bus",sink_type="nats"} 2"#
        ),
        "{text}"
    );
    assert!(!text.contains("hashed_name"), "{text}");
}

#[test]
fn per_event_templates_are_recognised() {
    assert!(Template::parse("a.{log_group}").unwrap().is_per_event());
    assert!(
        !Template::parse("{table}/{request_id}")
            .unwrap()
            .is_per_event()
    );
}

#[test]
fn bad_templates_are_errors() {
    assert!(
        Template::parse("{nope}")
            .unwrap_err()
            .contains("unknown placeholder {nope}")
    );
    assert!(Template::parse("a.{kind").unwrap_err().contains("unclosed"));
}
