use super::*;

fn config(edit: impl FnOnce(&mut NatsConfig)) -> NatsConfig {
    let mut config = NatsConfig::default();
    edit(&mut config);
    config
}

#[test]
fn defaults_come_from_an_empty_table() {
    let parsed: NatsConfig = toml::from_str("").unwrap();
    assert_eq!(parsed, NatsConfig::default());
    assert_eq!(parsed.url, "nats://127.0.0.1:4222");
    assert_eq!(parsed.subject, "hydrant.{table}.{kind}");
    assert_eq!(parsed.stream, None);
    assert!(!parsed.create_stream);
    assert_eq!(parsed.stream_subjects, ["hydrant.>"]);
    assert_eq!(parsed.duplicate_window, 600);
    assert_eq!(parsed.ack_timeout_ms, 10_000);
    assert_eq!(
        (parsed.user, parsed.password, parsed.token),
        (None, None, None)
    );
    assert_eq!(NatsConfig::default().validate(), Ok(()));

    let full: NatsConfig = toml::from_str(
        r#"
        url = "nats://a:4222,nats://b:4222"
        subject = "logs.{log_group}"
        stream = "LOGS"
        create_stream = true
        stream_subjects = ["logs.>"]
        duplicate_window = 120
        user = "hydrant"
        password = "pw"
        ack_timeout_ms = 500
        "#,
    )
    .unwrap();
    assert_eq!(full.validate(), Ok(()));
    assert_eq!(full.servers().unwrap().len(), 2);
    assert!(
        toml::from_str::<NatsConfig>("subjekt = \"x\"").is_err(),
        "unknown fields are refused"
    );
}

#[test]
fn validate_table() {
    let table: [(&str, NatsConfig, Option<&str>); 22] = [
        ("defaults", config(|_| {}), None),
        (
            "empty url",
            config(|c| c.url = String::new()),
            Some("url is empty"),
        ),
        (
            "bad url",
            config(|c| c.url = "http://x:4222".into()),
            Some("url"),
        ),
        (
            "unknown placeholder",
            config(|c| c.subject = "a.{nope}".into()),
            Some("unknown placeholder"),
        ),
        (
            "empty token",
            config(|c| c.subject = "a..{kind}".into()),
            Some("empty token"),
        ),
        (
            "trailing dot",
            config(|c| c.subject = "a.{kind}.".into()),
            Some("empty token"),
        ),
        (
            "wildcard",
            config(|c| c.subject = "a.>".into()),
            Some("wildcard"),
        ),
        (
            "space",
            config(|c| c.subject = "a b.{kind}".into()),
            Some("whitespace"),
        ),
        (
            "create without stream",
            config(|c| c.create_stream = true),
            Some("needs a stream name"),
        ),
        (
            "bad stream name",
            config(|c| c.stream = Some("a.b".into())),
            Some("stream name"),
        ),
        (
            "create with stream",
            config(|c| {
                c.stream = Some("HYDRANT".into());
                c.create_stream = true;
            }),
            None,
        ),
        (
            "no window",
            config(|c| {
                c.stream = Some("HYDRANT".into());
                c.create_stream = true;
                c.duplicate_window = 0;
            }),
            Some("duplicate_window"),
        ),
        (
            "password alone",
            config(|c| c.password = Some("pw".into())),
            Some("together"),
        ),
        (
            "no timeout",
            config(|c| c.ack_timeout_ms = 0),
            Some("ack_timeout_ms"),
        ),
        (
            "many free values",
            config(|c| {
                c.subject =
                    "h.{log_group}.{namespace}.{source}.{detail_type}.{region}.{path}".into();
            }),
            Some("may render"),
        ),
        (
            "token and nkey",
            config(|c| {
                c.token = Some("t".into());
                c.nkey = Some(nkeys::KeyPair::new_user().seed().unwrap());
            }),
            Some("choose one"),
        ),
        (
            "nkey seed",
            config(|c| c.nkey = Some(nkeys::KeyPair::new_user().seed().unwrap())),
            None,
        ),
        (
            "public key as seed",
            config(|c| c.nkey = Some(nkeys::KeyPair::new_user().public_key())),
            Some("not an nkey seed"),
        ),
        (
            "missing credentials file",
            config(|c| c.credentials_file = Some("/nonexistent/user.creds".into())),
            Some("credentials_file /nonexistent/user.creds"),
        ),
        (
            "missing CA",
            config(|c| c.tls_ca_file = Some("/nonexistent/ca.pem".into())),
            Some("tls_ca_file /nonexistent/ca.pem"),
        ),
        (
            "certificate without key",
            config(|c| c.tls_cert_file = Some("/nonexistent/client.pem".into())),
            Some("go together"),
        ),
        (
            "fixed forms are short",
            config(|c| {
                c.subject = "h.{table}.{kind}.{format}.{date}.{hour}.{record_index}.{event_index}.{delivery_key}.{log_group}".into();
            }),
            None,
        ),
    ];
    for (name, config, expected) in table {
        match (config.validate(), expected) {
            (Ok(()), None) => {}
            (Err(error), Some(part)) => assert!(error.contains(part), "{name}: {error}"),
            (result, _) => panic!("{name}: {result:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn values_are_cleaned_into_one_subject_token() {
    let table = [
        ("/aws/lambda/my-fn", "/aws/lambda/my-fn"),
        ("AWS/EC2", "AWS/EC2"),
        ("my.app", "my_app"),
        ("a b\tc\nd", "a_b_c_d"),
        ("*", "_"),
        (">", "_"),
        ("a.*.>", "a____"),
        ("", "none"),
        ("héllo", "héllo"),
    ];
    for (value, expected) in table {
        assert_eq!(clean_token(value), expected, "{value:?}");
    }
    let template = Template::parse("hydrant.logs.{log_group}").unwrap();
    let meta = EventMeta {
        log_group: Some(Arc::from("/aws/lambda/my.fn x")),
        ..EventMeta::default()
    };
    let key = DeliveryKey::new(None, "r");
    let subject = template.render(
        &Delivery::default(),
        &key,
        "events",
        Some(&meta),
        subject_token,
    );
    assert_eq!(subject, "hydrant.logs./aws/lambda/my_fn_x");
    assert_eq!(check_subject(&subject), Ok(()));
}

/// A value whose token would be over the cap becomes `~` and its digest; one at
/// the cap stays as it is.
#[test]
fn over_long_values_become_a_digest_token() {
    let at_cap = "a".repeat(MAX_SUBJECT_TOKEN_BYTES);
    assert_eq!(subject_token(&at_cap), at_cap);
    let over = format!("{at_cap}.");
    let token = subject_token(&over);
    assert_eq!(token, format!("~{}", digest_hex(over.as_bytes())));
    assert_eq!(token.len(), 33);
    assert_ne!(subject_token(&format!("{at_cap}b")), token);
    assert_eq!(check_subject(&format!("hydrant.{token}")), Ok(()));
}

#[test]
fn header_sizes_are_counted_as_the_client_writes_them() {
    // "NATS/1.0\r\n" + "Nats-Msg-Id: abc\r\n" + "\r\n"
    assert_eq!(headers_wire_len(&[("Nats-Msg-Id", "abc")]), 10 + 18 + 2);
    assert_eq!(headers_wire_len(&[]), 12);
    // The documented header names, which consumers depend on.
    assert_eq!(
        [HEADER_PART, HEADER_PARTS, HEADER_EVENT_ID],
        ["Hydrant-Part", "Hydrant-Parts", "Hydrant-Msg-Id"]
    );
}

#[test]
fn message_ids_name_the_event_within_its_delivery() {
    let mut delivery = Delivery {
        request_id: "req-1".into(),
        source_arn: Some("arn:aws:firehose:eu-west-1:123456789012:deliverystream/s".into()),
        ..Delivery::default()
    };
    let meta = EventMeta {
        record_index: 3,
        event_index: 7,
        ..EventMeta::default()
    };
    let key = |delivery: &Delivery| {
        DeliveryKey::new(delivery.source_arn.as_deref(), &delivery.request_id)
    };
    let with_arn = key(&delivery);
    assert_eq!(
        message_id(&with_arn, "events", &meta),
        format!("{}:events:3:7", with_arn.to_hex())
    );
    delivery.source_arn = None;
    let without = key(&delivery);
    assert_eq!(
        message_id(&without, "dead_letter", &meta),
        format!("{}:dead_letter:3:7", without.to_hex())
    );
    assert_ne!(with_arn, without);
    // Ids that joining the parts with `|` made equal are now different.
    let arn = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/nidX";
    assert_ne!(
        message_id(
            &DeliveryKey::new(Some(&format!("{arn}|y")), "z"),
            "events",
            &meta
        ),
        message_id(&DeliveryKey::new(Some(arn), "y|z"), "events", &meta)
    );
}

#[test]
fn debug_redacts_secrets() {
    let config = config(|c| {
        c.url = "nats://alice:hunter2@nats.example:4222,tls://tok3n@other:4443,plain:4222".into();
        c.user = Some("alice".into());
        c.password = Some("pa55word".into());
        c.token = Some("t0ken".into());
    });
    let text = format!("{config:?}");
    for secret in ["hunter2", "pa55word", "t0ken", "tok3n"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(
        text.contains("nats://<redacted>@nats.example:4222"),
        "{text}"
    );
    assert!(text.contains("plain:4222"), "{text}");
    assert!(
        text.contains("alice"),
        "the user name is not a secret: {text}"
    );
    assert_eq!(redact_url("user:pw@host:4222"), "<redacted>@host:4222");
}

#[tokio::test]
async fn a_server_that_is_down_is_not_a_startup_error() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sink = NatsSink::connect(config(|c| {
        c.url = format!("nats://127.0.0.1:{port}");
        c.stream = Some("HYDRANT".into());
        c.create_stream = true;
    }))
    .await
    .expect("connects in the background");
    let error = sink.probe().await.unwrap_err();
    assert!(matches!(error, SinkError::Unavailable(_)), "{error:?}");
    let invalid = NatsSink::connect(config(|c| c.url = String::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(invalid, SinkError::Config(ref reason) if reason.contains("url")),
        "{invalid:?}"
    );
}
