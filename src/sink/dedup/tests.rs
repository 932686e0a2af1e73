use super::*;

fn k(name: &str) -> DeliveryKey {
    DeliveryKey::new(None, name)
}

#[test]
fn remembers_within_the_window_and_forgets_after() {
    let mut window = DedupWindow::new(1_000, 10);
    window.insert(k("a"), 5_000);
    assert!(window.contains(&k("a"), 5_500));
    assert!(window.contains(&k("a"), 6_000));
    assert!(!window.contains(&k("a"), 6_001));
    assert!(window.is_empty());
}

#[test]
fn capacity_evicts_the_oldest() {
    let mut window = DedupWindow::new(u64::MAX, 2);
    window.insert(k("a"), 1);
    window.insert(k("b"), 2);
    window.insert(k("c"), 3);
    assert_eq!(window.len(), 2);
    assert!(!window.contains(&k("a"), 3));
    assert!(window.contains(&k("b"), 3));
    assert!(window.contains(&k("c"), 3));
}

#[test]
fn inserting_twice_keeps_one_entry() {
    let mut window = DedupWindow::new(u64::MAX, 2);
    window.insert(k("a"), 1);
    window.insert(k("a"), 2);
    window.insert(k("b"), 3);
    assert!(window.contains(&k("a"), 3) && window.contains(&k("b"), 3));
    assert_eq!(
        window.iter().collect::<Vec<_>>(),
        [(k("a"), 1), (k("b"), 3)]
    );
}

/// The remembered keys are always the insertion positions from
/// `oldest_position` to `inserted`, whether keys leave by age or capacity.
#[test]
fn positions_track_what_is_forgotten() {
    let mut window = DedupWindow::new(1_000, 3);
    assert_eq!((window.oldest_position(), window.inserted()), (0, 0));
    assert!(window.insert(k("a"), 10));
    assert!(window.insert(k("b"), 20));
    assert!(!window.insert(k("a"), 30), "already remembered");
    assert_eq!((window.oldest_position(), window.inserted()), (0, 2));
    window.insert(k("c"), 2_000);
    window.insert(k("d"), 2_000);
    assert_eq!((window.oldest_position(), window.inserted()), (1, 4));
    window.expire(2_500);
    assert_eq!((window.oldest_position(), window.inserted()), (2, 4));
    window.expire(10_000);
    assert!(window.is_empty());
    assert_eq!((window.oldest_position(), window.inserted()), (4, 4));
}

/// Across chunk boundaries, by age and by capacity: exactly the newest keys are
/// remembered, in order, and forgotten chunks are dropped.
#[test]
fn keys_span_chunks() {
    let capacity = 2 * CHUNK_KEYS + 10;
    let mut window = DedupWindow::new(1_000, capacity);
    let total = 3 * CHUNK_KEYS;
    for n in 0..total {
        assert!(window.insert(k(&n.to_string()), n as u64));
    }
    assert_eq!(window.len(), capacity);
    assert_eq!(window.oldest_position(), (total - capacity) as u64);
    for n in [0, total - capacity - 1] {
        assert!(!window.remembers(&k(&n.to_string())), "{n}");
    }
    for n in [total - capacity, CHUNK_KEYS, total - 1] {
        assert!(window.remembers(&k(&n.to_string())), "{n}");
    }
    let first = window.iter().next().unwrap();
    assert_eq!(
        first,
        (
            k(&(total - capacity).to_string()),
            (total - capacity) as u64
        )
    );
    assert_eq!(window.iter().count(), capacity);
    assert!(window.chunks.len() <= 3);
    // Expire all but the last 500 by age.
    window.expire(total as u64 - 500 + 1_000);
    assert_eq!(window.len(), 500);
    assert_eq!(window.chunks.len(), 1);
    assert!(!window.remembers(&k(&(total - 501).to_string())));
    assert!(window.remembers(&k(&(total - 500).to_string())));
}

#[test]
fn zero_capacity_remembers_nothing() {
    let mut window = DedupWindow::new(u64::MAX, 0);
    window.insert(k("a"), 1);
    assert!(!window.contains(&k("a"), 1));
}

/// Every pair of (ARN, id) that a separator-joined key would confuse gets its
/// own key; the hex form reads back; old journal keys map to the same key.
#[test]
fn keys_are_unambiguous_and_read_back() {
    let arn = "arn:aws:firehose:us-east-1:123456789012:deliverystream/colX";
    /// An (ARN, request id) pair.
    type Pair<'a> = (Option<&'a str>, &'a str);
    let table: &[(Pair<'_>, Pair<'_>)] = &[
        ((Some("a b"), "c"), (Some("a"), "b c")),
        ((Some("nid|y"), "z"), (Some("nid"), "y|z")),
        ((None, "x"), (Some(""), "x")),
        ((None, "x"), (Some("-"), "x")),
        ((Some("ab"), ""), (Some("a"), "b")),
        ((Some(arn), "1"), (Some(arn), "01")),
    ];
    for (left, right) in table {
        assert_ne!(
            DeliveryKey::new(left.0, left.1),
            DeliveryKey::new(right.0, right.1),
            "{left:?} vs {right:?}"
        );
    }
    let key = DeliveryKey::new(Some(arn), "6a7e8feb-b491-4cf7-a9f1-bf3703467718");
    assert_eq!(
        key,
        DeliveryKey::new(Some(arn), "6a7e8feb-b491-4cf7-a9f1-bf3703467718")
    );
    assert_eq!(key.to_hex().len(), DeliveryKey::HEX_LEN);
    assert_eq!(DeliveryKey::from_hex(&key.to_hex()), Some(key));
    assert_eq!(
        DeliveryKey::from_hex(&key.to_hex().to_uppercase()),
        Some(key)
    );
    for bad in [
        "",
        "xyz",
        &"g".repeat(32),
        &key.to_hex()[1..],
        &format!("+{}", &key.to_hex()[1..]),
    ] {
        assert_eq!(DeliveryKey::from_hex(bad), None, "{bad}");
    }
    assert_eq!(
        DeliveryKey::from_legacy(&format!("{arn} r-1")),
        DeliveryKey::new(Some(arn), "r-1")
    );
    assert_eq!(
        DeliveryKey::from_legacy("- r 2"),
        DeliveryKey::new(None, "r 2")
    );
}

fn window() -> Arc<SinkWindow> {
    Arc::new(SinkWindow::new(DEFAULT_DEDUP_WINDOW, 10))
}

fn claimed(window: &Arc<SinkWindow>, key: DeliveryKey) -> Claim {
    match window.admit(key) {
        Admission::Claimed(claim) => claim,
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn waiting(window: &Arc<SinkWindow>, key: DeliveryKey) -> Waiting {
    match window.admit(key) {
        Admission::Wait(waiting) => waiting,
        other => panic!("expected to wait, got {other:?}"),
    }
}

/// One request per delivery commits it; an identical one meanwhile waits and is
/// answered "duplicate" only once the first is committed; later ones are duplicates
/// at once.
#[tokio::test]
async fn a_delivery_is_committed_by_one_request_at_a_time() {
    let window = window();
    let claim = claimed(&window, k("a"));
    assert_eq!(claim.key(), k("a"));
    let copy = tokio::spawn(waiting(&window, k("a")).outcome());
    tokio::task::yield_now().await;
    assert!(!copy.is_finished(), "no answer before the original's");
    assert!(!window.has_committed(&k("a")), "in flight is not committed");
    assert!(matches!(window.admit(k("b")), Admission::Claimed(_)));
    claim.finish(&Ok(Committed::Written { events: 1 }));
    assert_eq!(copy.await.unwrap(), Ok(Committed::Duplicate));
    assert!(window.has_committed(&k("a")));
    assert!(matches!(window.admit(k("a")), Admission::Duplicate));
    assert_eq!(window.len(), 1, "b was dropped unfinished: not remembered");
}

/// A failed original fails the requests that waited for it, and is not
/// remembered: the next request commits it again.
#[tokio::test]
async fn a_failed_claim_fails_its_copies_and_is_not_remembered() {
    let window = window();
    let claim = claimed(&window, k("a"));
    let copies = [waiting(&window, k("a")), waiting(&window, k("a"))];
    let error = SinkError::Write("disk full".into());
    claim.finish(&Err(error.clone()));
    for copy in copies {
        assert_eq!(copy.outcome().await, Err(error.clone()));
    }
    assert!(window.is_empty());
    let again = claimed(&window, k("a"));
    drop(claim);
    assert!(
        matches!(window.admit(k("a")), Admission::Wait(_)),
        "the old claim's end does not end the new one"
    );
    drop(again);
    assert!(matches!(window.admit(k("a")), Admission::Claimed(_)));
}

/// A claim dropped without an outcome ends with its last clone (a file sink keeps
/// one while the batch is queued), and its copies are told to retry.
#[tokio::test]
async fn a_claim_ends_with_its_last_clone() {
    let window = window();
    let claim = claimed(&window, k("a"));
    let queued = claim.clone();
    let copy = waiting(&window, k("a"));
    drop(claim);
    assert!(matches!(window.admit(k("a")), Admission::Wait(_)));
    drop(queued);
    assert!(matches!(
        copy.outcome().await,
        Err(SinkError::Unavailable(_))
    ));
    assert!(matches!(window.admit(k("a")), Admission::Claimed(_)));
}

/// A sink that records deliveries itself (the file writer, as its journal line is
/// synced) answers their copies; the claim's own success then changes nothing, and
/// positions follow what was inserted.
#[tokio::test]
async fn a_sink_commit_answers_the_copies() {
    let window = window();
    let claim = claimed(&window, k("a"));
    let copy = waiting(&window, k("a"));
    assert_eq!(window.commit([(k("a"), now_ms()), (k("b"), now_ms())]), 2);
    assert_eq!(copy.outcome().await, Ok(Committed::Duplicate));
    claim.finish(&Ok(Committed::Written { events: 1 }));
    assert_eq!(window.inserted(), 2);
    let (keys, end) = window.snapshot();
    assert_eq!(
        keys.iter().map(|(key, _)| *key).collect::<Vec<_>>(),
        [k("a"), k("b")]
    );
    assert_eq!(end, 2);
    assert_eq!(window.expire(now_ms()), 0);
    assert_eq!(window.expire(now_ms() + 3 * 3_600_000), 2);
    assert!(window.is_empty());
}
