use super::*;

/// A validation case: its name, a change to a valid config, and `None` or a
/// part of the expected error.
type Case = (&'static str, fn(&mut S3Config), Option<&'static str>);

fn config(bucket: &str) -> S3Config {
    S3Config {
        bucket: bucket.into(),
        ..S3Config::default()
    }
}

fn delivery() -> Delivery {
    Delivery {
        request_id: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
        // 2023-11-14T22:13:20.123Z
        received_at: 1_700_000_000_123,
        delivery_stream: Some("logs-prod".into()),
        path: "/firehose".into(),
        ..Delivery::default()
    }
}

#[test]
fn defaults_from_the_smallest_config() {
    let parsed: S3Config = toml::from_str(r#"bucket = "lake""#).unwrap();
    assert_eq!(parsed, config("lake"));
    assert_eq!(parsed.prefix, "");
    assert_eq!(parsed.endpoint, None);
    assert_eq!(parsed.region, "us-east-1");
    assert_eq!(parsed.key_template, DEFAULT_KEY_TEMPLATE);
    assert_eq!(parsed.compression, "gzip");
    assert!(!parsed.virtual_hosted_style);
    assert_eq!(parsed.validate(), Ok(()));
}

#[test]
fn bucket_is_required_and_unknown_fields_are_refused() {
    assert!(toml::from_str::<S3Config>(r#"prefix = "p""#).is_err());
    let error = toml::from_str::<S3Config>("bucket = \"b\"\nbukcet = \"c\"").unwrap_err();
    assert!(error.to_string().contains("bukcet"), "{error}");
}

#[test]
fn validation() {
    // (case, change to a valid config, None or a part of the error)
    let table: [Case; 18] = [
        ("defaults", |_| {}, None),
        (
            "empty bucket",
            |c| c.bucket = " ".into(),
            Some("bucket must be set"),
        ),
        (
            "custom template",
            |c| c.key_template = "{delivery_stream}/{date}/{request_id}-{table}.json".into(),
            None,
        ),
        (
            "template without request id",
            |c| c.key_template = "{table}/{date}/{hour}.ndjson".into(),
            Some("must contain {request_id}"),
        ),
        (
            "per-event template",
            |c| c.key_template = "{table}/{log_group}/{request_id}".into(),
            Some("per-event placeholder"),
        ),
        (
            "unknown placeholder",
            |c| c.key_template = "{nope}/{request_id}".into(),
            Some("unknown placeholder {nope}"),
        ),
        (
            "unclosed brace",
            |c| c.key_template = "{request_id}/{table".into(),
            Some("unclosed"),
        ),
        ("compression none", |c| c.compression = "none".into(), None),
        (
            "compression zstd",
            |c| c.compression = "zstd".into(),
            Some("unknown compression \"zstd\""),
        ),
        (
            "endpoint without scheme",
            |c| c.endpoint = Some("minio:9000".into()),
            Some("must start with http://"),
        ),
        (
            "http endpoint",
            |c| c.endpoint = Some("http://127.0.0.1:9000".into()),
            None,
        ),
        (
            "key id without secret",
            |c| c.access_key_id = Some("AKIA".into()),
            Some("must be given together"),
        ),
        (
            "empty region",
            |c| c.region = String::new(),
            Some("region must not be empty"),
        ),
        (
            "delivery key instead of request id",
            |c| c.key_template = "{table}/{delivery_key}.ndjson".into(),
            None,
        ),
        (
            "escape character in the text",
            |c| c.key_template = "{table}/50%/{request_id}".into(),
            Some("reserved"),
        ),
        (
            "empty segment in the text",
            |c| c.key_template = "{table}//{request_id}".into(),
            Some("refuses"),
        ),
        (
            "prefix too long",
            |c| c.prefix = "p".repeat(MAX_KEY_BYTES),
            Some("prefix"),
        ),
        (
            "leading slash",
            |c| c.key_template = "/{table}/{request_id}".into(),
            None,
        ),
    ];
    for (case, edit, expected) in table {
        let mut config = config("lake");
        edit(&mut config);
        match (expected, config.validate()) {
            (None, Ok(())) => {}
            (Some(part), Err(message)) => {
                assert!(message.contains(part), "{case}: {message}");
                assert!(!message.contains('\n'), "{case}: one line");
            }
            (expected, result) => panic!("{case}: expected {expected:?}, got {result:?}"),
        }
    }
}

#[test]
fn debug_output_hides_credentials() {
    let config = S3Config {
        access_key_id: Some("AKIAEXAMPLEKEYID".into()),
        secret_access_key: Some("wJalrXUtnFEMI/K7MDENG".into()),
        ..config("lake")
    };
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("AKIAEXAMPLEKEYID") && !shown.contains("wJalrXUtnFEMI"),
        "{shown}"
    );
    assert!(
        shown.contains(REDACTED) && shown.contains("lake"),
        "{shown}"
    );
}

#[tokio::test]
async fn the_sink_debug_output_hides_credentials_and_connect_stays_offline() {
    let config = S3Config {
        access_key_id: Some("AKIAEXAMPLEKEYID".into()),
        secret_access_key: Some("wJalrXUtnFEMI/K7MDENG".into()),
        // Nothing listens there: connect must not notice.
        endpoint: Some("http://127.0.0.1:9".into()),
        ..config("lake")
    };
    let sink = S3Sink::connect(config).await.unwrap();
    let shown = format!("{sink:?}");
    assert!(
        !shown.contains("AKIAEXAMPLEKEYID") && !shown.contains("wJalrXUtnFEMI"),
        "{shown}"
    );
    assert!(matches!(sink.probe().await, Err(SinkError::Unavailable(_))));
    assert!(matches!(
        S3Sink::connect(S3Config::default()).await,
        Err(SinkError::Config(_))
    ));
}

#[test]
fn keys_are_rendered_per_delivery_and_table() {
    let layout = |edit: fn(&mut S3Config)| {
        let mut config = config("lake");
        edit(&mut config);
        KeyLayout::new(&config).unwrap()
    };
    let request = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    let table = [
        (
            layout(|_| {}),
            "events",
            format!("events/dt=2023-11-14/hour=22/logs-prod/{request}.ndjson.gz"),
        ),
        (
            layout(|c| c.prefix = "/raw/firehose/".into()),
            "dead_letter",
            format!("raw/firehose/dead_letter/dt=2023-11-14/hour=22/logs-prod/{request}.ndjson.gz"),
        ),
        (
            layout(|c| c.compression = "none".into()),
            "events",
            format!("events/dt=2023-11-14/hour=22/logs-prod/{request}.ndjson"),
        ),
        (
            layout(|c| c.key_template = "{path}/{account_id}/{request_id}".into()),
            "events",
            format!("firehose/none/{request}.gz"),
        ),
    ];
    let key = DeliveryKey::new(
        Some("arn:aws:firehose:eu-west-1:1:deliverystream/s"),
        request,
    );
    for (layout, name, expected) in table {
        assert_eq!(
            layout.key(&delivery(), &key, name),
            (Path::from(expected), false)
        );
    }
    let mut odd = delivery();
    odd.path = "/../../etc".into();
    let (path, fallback) =
        layout(|c| c.key_template = "{path}/{request_id}".into()).key(&odd, &key, "events");
    assert_eq!(path.as_ref(), format!("..%2F..%2Fetc/{request}.gz"));
    assert!(path.parts().all(|part| part.as_ref() != ".."), "{path}");
    assert!(!fallback);
    odd.path = "/..".into();
    let (path, _) =
        layout(|c| c.key_template = "{path}/{request_id}".into()).key(&odd, &key, "events");
    assert_eq!(path.as_ref(), format!("%2E%2E/{request}.gz"));
    let (path, _) =
        layout(|c| c.key_template = "{delivery_key}.json".into()).key(&delivery(), &key, "events");
    assert_eq!(path.as_ref(), format!("{}.json.gz", key.to_hex()));
    assert_eq!(
        layout(|c| c.prefix = "p".into()).probe_folder().as_ref(),
        "p/.hydrant-probe"
    );
}

/// Request ids that replacing `/`, dropping empty segments or escaping twice
/// would merge each get their own key; keys S3 or a file-system-backed store
/// would refuse take the fallback under the delivery key.
#[test]
fn keys_are_injective_and_always_usable() {
    let layout = KeyLayout::new(&S3Config {
        prefix: "raw".into(),
        ..config("lake")
    })
    .unwrap();
    let key_of_stream = |request_id: &str, stream: &str| {
        let mut delivery = delivery();
        delivery.request_id = request_id.into();
        delivery.delivery_stream = Some(stream.into());
        let key = DeliveryKey::new(None, request_id);
        layout.key(&delivery, &key, "events")
    };
    let key_of = |request_id: &str| key_of_stream(request_id, "logs-prod");
    let ids = [
        "x/y", "x//y", "/x/y", "x/y/", "x_y", "x%2Fy", "x y", "x+y", ".", "..", "none",
    ];
    let keys: std::collections::BTreeSet<String> = ids
        .iter()
        .map(|id| {
            let (path, fallback) = key_of(id);
            assert!(!fallback, "{id}: {path}");
            path.to_string()
        })
        .collect();
    assert_eq!(keys.len(), ids.len(), "{keys:?}");
    assert_eq!(
        key_of("x/y").0.as_ref(),
        "raw/events/dt=2023-11-14/hour=22/logs-prod/x%2Fy.ndjson.gz"
    );

    let long = "r".repeat(MAX_SEGMENT_BYTES);
    for (id, stream, reason) in [
        (long.as_str(), "logs-prod", "segment"),
        (&"r".repeat(2 * MAX_KEY_BYTES), "logs-prod", "length"),
        ("r-1", "", "empty segment"),
    ] {
        let (path, fallback) = key_of_stream(id, stream);
        assert!(fallback, "{reason}");
        let hex = DeliveryKey::new(None, id).to_hex();
        assert_eq!(
            path.as_ref(),
            format!("raw/%keys-by-delivery/events/{hex}.ndjson.gz"),
            "{reason}"
        );
        assert_eq!(check_key(path.as_ref()), Ok(()));
    }
    // One byte under the segment limit with the suffix still fits.
    let fits = "r".repeat(MAX_SEGMENT_BYTES - ".ndjson.gz".len());
    assert!(!key_of(&fits).1);
}

#[test]
fn gzip_round_trips() {
    let lines = b"{\"a\":1}\n{\"b\":2}\n".repeat(100);
    let (first, second) = lines.split_at(40);
    let packed = gzip(&[
        Bytes::copy_from_slice(first),
        Bytes::copy_from_slice(second),
    ])
    .unwrap();
    assert!(packed.len() < lines.len());
    let unpacked = crate::limits::gunzip_capped(&packed, 1 << 20).unwrap();
    assert_eq!(unpacked, lines);
}
