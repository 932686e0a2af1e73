use super::*;

#[test]
fn parses_a_request_borrowing_its_records() {
    let body = br#"{"requestId":"ed4acda5","timestamp":1578090901599,"records":[{"data":"aGVsbG8="},{"data":""}],"extra":[1]}"#;
    let request = DeliveryRequest::parse(body, 10).unwrap();
    assert_eq!(request.request_id, "ed4acda5");
    assert_eq!(request.timestamp, 1_578_090_901_599);
    assert_eq!(request.records, ["aGVsbG8=", ""]);
    assert!(matches!(request.records[0], Cow::Borrowed(_)));
}

#[test]
fn rejects_malformed_envelopes() {
    let table: &[(&str, &[u8])] = &[
        ("not json", b"hello"),
        ("array", b"[]"),
        ("missing requestId", br#"{"timestamp":1,"records":[]}"#),
        ("missing timestamp", br#"{"requestId":"a","records":[]}"#),
        ("missing records", br#"{"requestId":"a","timestamp":1}"#),
        (
            "string timestamp",
            br#"{"requestId":"a","timestamp":"1","records":[]}"#,
        ),
        (
            "record without data",
            br#"{"requestId":"a","timestamp":1,"records":[{}]}"#,
        ),
        (
            "data not a string",
            br#"{"requestId":"a","timestamp":1,"records":[{"data":1}]}"#,
        ),
        (
            "trailing garbage",
            br#"{"requestId":"a","timestamp":1,"records":[]} x"#,
        ),
        (
            "not UTF-8 in an ignored field",
            b"{\"requestId\":\"a\",\"timestamp\":1,\"records\":[],\"x\":\"\xff\"}",
        ),
    ];
    for (name, body) in table {
        assert!(
            matches!(
                DeliveryRequest::parse(body, 10),
                Err(EnvelopeError::Invalid(_))
            ),
            "{name}"
        );
    }
}

#[test]
fn enforces_the_record_cap_while_parsing() {
    let body =
        br#"{"requestId":"a","timestamp":1,"records":[{"data":""},{"data":""},{"data":""}]}"#;
    assert_eq!(DeliveryRequest::parse(body, 3).unwrap().records.len(), 3);
    assert_eq!(
        DeliveryRequest::parse(body, 2),
        Err(EnvelopeError::TooManyRecords { limit: 2 })
    );
}

#[test]
fn reply_has_exactly_the_contract_keys() {
    let ok = Reply {
        request_id: "r-1",
        timestamp: 1_700_000_000_123,
        error_message: None,
    };
    assert_eq!(
        String::from_utf8(ok.to_json()).unwrap(),
        r#"{"requestId":"r-1","timestamp":1700000000123}"#
    );
    let failed = Reply {
        error_message: Some("bad"),
        ..ok
    };
    assert_eq!(
        String::from_utf8(failed.to_json()).unwrap(),
        r#"{"requestId":"r-1","timestamp":1700000000123,"errorMessage":"bad"}"#
    );
}

#[test]
fn reply_cuts_long_messages_at_a_char_boundary() {
    let long = "é".repeat(MAX_ERROR_MESSAGE_CHARS + 10);
    let json = Reply {
        request_id: "r",
        timestamp: 1,
        error_message: Some(&long),
    }
    .to_json();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        value["errorMessage"].as_str().unwrap().chars().count(),
        MAX_ERROR_MESSAGE_CHARS
    );
}

#[test]
fn parses_source_arns() {
    let arn = SourceArn::parse("arn:aws:firehose:us-east-1:123456789012:deliverystream/logs-prod")
        .unwrap();
    assert_eq!(
        (
            arn.region.as_str(),
            arn.account_id.as_str(),
            arn.delivery_stream.as_str()
        ),
        ("us-east-1", "123456789012", "logs-prod")
    );
    let china =
        SourceArn::parse("arn:aws-cn:firehose:cn-north-1:123456789012:deliverystream/a").unwrap();
    assert_eq!(china.region, "cn-north-1");
    let longest = format!(
        "arn:aws-us-gov:firehose:us-gov-west-1:123456789012:deliverystream/{}",
        "a.b_c-9".repeat(10).get(..64).unwrap()
    );
    assert_eq!(
        SourceArn::parse(&longest).unwrap().delivery_stream.len(),
        64
    );
    for bad in [
        "",
        "arn:aws:firehose:us-east-1:123456789012:deliverystream/colX b",
        "arn:aws:firehose:us-east-1:123456789012:deliverystream/a|b",
        &format!(
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/{}",
            "s".repeat(65)
        ),
        "arn:aws:firehose:us-east-1:12345678901:deliverystream/x",
        "arn:aws:firehose:us-east-1:1234567890123:deliverystream/x",
        "arn:aws:firehose:US EAST:123456789012:deliverystream/x",
        "arn:aws:s3:::bucket",
        "arn:aws:firehose:us-east-1:123456789012:stream/x",
        "arn:aws:firehose:us-east-1:123456789012:deliverystream/",
        "arn:aws:firehose::123456789012:deliverystream/x",
        "nonsense",
    ] {
        assert!(SourceArn::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn parses_common_attributes() {
    let attributes =
        parse_common_attributes(br#"{"commonAttributes":{"env":"prod","team":""}}"#).unwrap();
    assert_eq!(attributes["env"], "prod");
    assert_eq!(attributes["team"], "");
    for bad in [
        &br#"{"env":"prod"}"#[..],
        br#"{"commonAttributes":{"n":1}}"#,
        br#"{"commonAttributes":[]}"#,
        b"not json",
        br#"{"commonAttributes":{"":"empty name"}}"#,
    ] {
        assert!(parse_common_attributes(bad).is_err());
    }
    let many = |count: usize, name_len: usize, value_len: usize| {
        let attributes: serde_json::Map<String, serde_json::Value> = (0..count)
            .map(|n| {
                let name = format!("{n:0>name_len$}");
                (name, "v".repeat(value_len).into())
            })
            .collect();
        serde_json::json!({ "commonAttributes": attributes }).to_string()
    };
    // At Firehose's limits: accepted; one past any of them: refused.
    assert_eq!(
        parse_common_attributes(many(50, 256, 1024).as_bytes())
            .unwrap()
            .len(),
        50
    );
    for (count, name, value) in [(51, 3, 1), (1, 257, 1), (1, 3, 1025)] {
        let error = parse_common_attributes(many(count, name, value).as_bytes()).unwrap_err();
        assert!(!error.is_empty(), "{count} {name} {value}");
    }
}

#[test]
fn request_ids_are_short_printable_ascii() {
    let guid = "6a7e8feb-b491-4cf7-a9f1-bf3703467718";
    assert_eq!(check_request_id(guid), Ok(()));
    assert_eq!(check_request_id(&"x".repeat(MAX_REQUEST_ID_BYTES)), Ok(()));
    for bad in [
        String::new(),
        "x".repeat(MAX_REQUEST_ID_BYTES + 1),
        "b c".into(),
        "tab\there".into(),
        "é".into(),
    ] {
        assert!(check_request_id(&bad).is_err(), "{bad:?}");
    }
}
