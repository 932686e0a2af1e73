use super::*;

fn delivery() -> Delivery {
    let mut common_attributes = CommonAttributes::new();
    common_attributes.insert("env".into(), "prod".into());
    Delivery {
        request_id: "req-1".into(),
        timestamp: 1_700_000_000_000,
        received_at: 1_700_000_000_500,
        source_arn: Some("arn:aws:firehose:eu-west-1:123456789012:deliverystream/s".into()),
        delivery_stream: Some("s".into()),
        region: Some("eu-west-1".into()),
        account_id: Some("123456789012".into()),
        access_key_name: Some("prod".into()),
        path: "/logs".into(),
        common_attributes,
    }
}

fn lines(writer: EventWriter) -> Vec<serde_json::Value> {
    let lines = writer.finish();
    for chunk in &lines.chunks {
        assert!(chunk.bytes.ends_with(b"\n"));
        assert_eq!(
            chunk.metas.last().map(|meta| meta.end),
            Some(chunk.bytes.len())
        );
    }
    crate::testing::parse_lines(&lines.concat())
}

#[test]
fn writes_one_line_per_event_with_the_firehose_object() {
    let mut writer = EventWriter::new(&delivery(), 0);
    let raw: Box<RawValue> = serde_json::from_str(r#"{"a":[1,2]}"#).unwrap();
    writer.record(0, &RecordData::Json(Cow::Borrowed(&raw)));
    writer.record(1, &RecordData::Text("line \"one\"\nline two"));
    writer.record(2, &RecordData::Binary("AAEC"));
    let owned = RawValue::from_string("[true]".into()).unwrap();
    writer.record(3, &RecordData::Json(Cow::Owned(owned)));
    assert_eq!(writer.events(), 4);
    let events = lines(writer);
    assert_eq!(events.len(), 4);
    assert_eq!(events[0]["kind"], "record");
    assert_eq!(events[0]["format"], "json");
    assert_eq!(events[0]["data"], serde_json::json!({"a": [1, 2]}));
    assert_eq!(events[1]["format"], "text");
    assert_eq!(events[1]["data"], "line \"one\"\nline two");
    assert_eq!(events[2]["format"], "binary");
    assert_eq!(events[2]["data"], "AAEC");
    assert_eq!(events[3]["data"], serde_json::json!([true]));
    for (index, event) in events.iter().enumerate() {
        let firehose = &event["firehose"];
        assert_eq!(firehose["record_index"], index);
        assert_eq!(firehose["request_id"], "req-1");
        assert_eq!(firehose["timestamp"], 1_700_000_000_000_i64);
        assert_eq!(firehose["received_at"], 1_700_000_000_500_u64);
        assert_eq!(firehose["delivery_stream"], "s");
        assert_eq!(firehose["region"], "eu-west-1");
        assert_eq!(firehose["account_id"], "123456789012");
        assert_eq!(firehose["access_key_name"], "prod");
        assert_eq!(firehose["path"], "/logs");
        assert_eq!(firehose["common_attributes"]["env"], "prod");
    }
}

#[test]
fn writes_metric_and_generic_events_and_can_undo_them() {
    let mut writer = EventWriter::new(&delivery(), 0);
    let metric = Metric {
        timestamp: 1_611_929_698_000,
        metric_stream_name: Some("stream".into()),
        account_id: Some("123456789012".into()),
        region: Some("us-east-1".into()),
        namespace: "AWS/EC2".into(),
        metric_name: "CPUUtilization".into(),
        dimensions: [("InstanceId".to_owned(), "i-1".to_owned())].into(),
        unit: Some("Percent".into()),
        value: Statistics(vec![
            ("count".into(), 3.0),
            ("p99.9".into(), 1.5),
            ("max".into(), f64::NAN),
        ]),
    };
    writer.metric(7, &metric);
    let mark = writer.mark();
    writer.event(
        8,
        Kind::Log,
        Facts::default(),
        &serde_json::json!({"message": "dropped"}),
    );
    writer.truncate(mark);
    writer.event(
        9,
        Kind::Log,
        Facts {
            log_group: Some("g"),
            ..Facts::default()
        },
        &serde_json::json!({"message": "kept"}),
    );
    writer.event(
        9,
        Kind::Log,
        Facts {
            log_group: Some("g"),
            ..Facts::default()
        },
        &serde_json::json!({"message": "same record"}),
    );
    let metas = &writer.metas;
    assert_eq!((metas[1].record_index, metas[1].event_index), (9, 0));
    assert_eq!((metas[2].record_index, metas[2].event_index), (9, 1));
    assert!(
        Arc::ptr_eq(
            metas[1].log_group.as_ref().unwrap(),
            metas[2].log_group.as_ref().unwrap()
        ),
        "shared, not copied"
    );
    assert_eq!(metas[0].namespace.as_deref(), Some("AWS/EC2"));
    let events = lines(writer);
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["kind"], "metric");
    assert_eq!(events[0]["dimensions"]["InstanceId"], "i-1");
    assert_eq!(events[0]["value"]["p99.9"], 1.5);
    assert!(events[0]["value"]["max"].is_null());
    assert_eq!(events[0]["firehose"]["record_index"], 7);
    assert_eq!(events[0]["firehose"]["request_id"], "req-1");
    assert_eq!(events[1]["kind"], "log");
    assert_eq!(events[1]["message"], "kept");
    assert_eq!(events[1]["firehose"]["record_index"], 9);
}

/// A metric event line reads back as the point it was written from, statistics in
/// their order; a value that was not finite (written as `null`) is left out.
#[test]
fn a_metric_line_reads_back_as_its_point() {
    let metric = Metric {
        timestamp: 1_611_929_698_000,
        metric_stream_name: None,
        account_id: Some("123456789012".into()),
        region: None,
        namespace: "AWS/EC2".into(),
        metric_name: "CPUUtilization".into(),
        dimensions: [("InstanceId".to_owned(), "i-1 \"x\"".to_owned())].into(),
        unit: Some("Percent".into()),
        value: Statistics(vec![
            ("p99.9".into(), 0.1 + 0.2),
            ("max".into(), f64::INFINITY),
            ("count".into(), 3.0),
            ("TM(10%:90%)".into(), -1e-300),
        ]),
    };
    let mut writer = EventWriter::new(&delivery(), 0);
    writer.metric(0, &metric);
    let lines = writer.finish().concat();
    let read: Metric = serde_json::from_slice(&lines[..lines.len() - 1]).unwrap();
    let mut finite = metric.clone();
    finite.value.0.remove(1);
    assert_eq!(read, finite);
}

/// Lines are cut into chunks at record boundaries once a chunk is full, undoing
/// a record works right after a cut, and appending moves chunks whole.
#[test]
fn chunks_hold_whole_records() {
    let text = "x".repeat(64 * 1024);
    let mut writer = EventWriter::new(&delivery(), 0);
    let records = 2 * CHUNK_BYTES / (32 * 1024) + 3;
    for record in 0..records {
        let mark = writer.mark();
        writer.record(record, &RecordData::Text(&text[..16 * 1024]));
        writer.record(record, &RecordData::Text(&text[..16 * 1024]));
        if record == records / 2 {
            writer.record(record, &RecordData::Text(&text));
            writer.truncate(mark);
        }
    }
    let mut tail = EventWriter::new(&delivery(), 0);
    tail.mark();
    tail.record(records, &RecordData::Text("last"));
    writer.append(tail);
    assert_eq!(writer.events(), 2 * (records - 1) + 1);
    let lines = writer.finish();
    assert!(lines.chunks.len() >= 3, "{} chunks", lines.chunks.len());
    for chunk in &lines.chunks {
        let first = &chunk.metas[0];
        assert_eq!(first.event_index, 0, "a chunk starts with a record");
        assert!(chunk.bytes.len() < CHUNK_CAPACITY);
    }
    let events = crate::testing::parse_lines(&lines.concat());
    let indexes: Vec<u64> = events
        .iter()
        .map(|event| event["firehose"]["record_index"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (0..records as u64)
        .filter(|&record| record != (records / 2) as u64)
        .flat_map(|record| [record, record])
        .chain([records as u64])
        .collect();
    assert_eq!(indexes, expected);
    assert_eq!(lines.len(), events.len());
}

#[test]
fn absent_facts_are_null() {
    let mut writer = EventWriter::new(&Delivery::default(), 0);
    writer.record(0, &RecordData::Text(""));
    let event = &lines(writer)[0];
    assert!(event["firehose"]["source_arn"].is_null());
    assert!(event["firehose"]["access_key_name"].is_null());
    assert_eq!(
        event["firehose"]["common_attributes"],
        serde_json::json!({})
    );
}

/// Past its budget a writer takes back the line that passed it and writes
/// nothing more; the budget says why.
#[test]
fn a_writer_stops_at_its_budget() {
    let budget = Arc::new(DecodeBudget::new(4096, Box::new(|_| true)));
    let mut writer = EventWriter::with_budget(&delivery(), 0, Arc::clone(&budget));
    let mut written = 0;
    for record in 0..100 {
        writer.record(record, &RecordData::Text("some text of a record"));
        if !writer.is_stopped() {
            written += 1;
        }
    }
    assert!(writer.is_stopped());
    assert!(written > 1 && written < 100, "{written}");
    assert_eq!(writer.events(), written);
    assert_eq!(
        budget.check(),
        Err(crate::limits::DecodeStop::TooLarge { limit: 4096 })
    );
    let lines = writer.finish();
    assert!(lines.byte_len() <= 4096);
    assert_eq!(crate::testing::parse_lines(&lines.concat()).len(), written);
}
