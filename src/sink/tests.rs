use super::*;

fn table(text: &str) -> toml::Table {
    toml::from_str(text).unwrap()
}

fn read(text: &str) -> Result<SinkConfig, String> {
    SinkConfig::from_table(table(text), &mut Vec::new())
}

/// Every name in the one list reads back as the variant of that name, and what is
/// not in the list is refused naming the list.
#[test]
fn each_type_name_reads_as_its_own_variant() {
    assert_eq!(
        SinkConfig::TYPES,
        [
            "file",
            "s3",
            "nats",
            "kafka",
            "prometheus",
            "remote_write",
            "stdout",
            "discard"
        ]
    );
    for (text, kind) in [
        ("type = \"file\"\ndata_dir = \"/srv/x\"\n", "file"),
        ("type = \"stdout\"\n", "stdout"),
        ("type = \"discard\"\n", "discard"),
        ("type = \"prometheus\"\n", "prometheus"),
        #[cfg(feature = "remote_write")]
        (
            "type = \"remote_write\"\nurl = \"http://h/api/v1/write\"\n",
            "remote_write",
        ),
    ] {
        assert_eq!(read(text).unwrap().kind(), kind);
    }
    let message = read("type = \"ftp\"\n").unwrap_err();
    assert!(
        message.contains("unknown type \"ftp\"")
            && message.contains(
                "expected one of file, s3, nats, kafka, prometheus, remote_write, stdout, discard"
            ),
        "{message}"
    );
    let message = read("data_dir = \"/srv/x\"\n").unwrap_err();
    assert!(
        message.contains("needs a type: one of file, s3"),
        "{message}"
    );
    let message = read("type = 5\n").unwrap_err();
    assert!(message.contains("needs a type"), "{message}");
}

/// A sink's own keys are checked by its type: unknown keys, missing keys, and its
/// own checks, each as one line.
#[test]
fn a_sink_type_checks_its_own_settings() {
    for (text, expected) in [
        ("type = \"discard\"\nextra = 1\n", "unknown field `extra`"),
        ("type = \"file\"\n", "missing field `data_dir`"),
        (
            "type = \"file\"\ndata_dir = \"/x\"\nsegment_max_age = \"0s\"\n",
            "greater than 0",
        ),
        (
            "type = \"file\"\ndata_dir = \"/x\"\nsegment_max_age = 5\n",
            "needs a unit",
        ),
        (
            "type = \"prometheus\"\npath = \"/metrics\"\n",
            "admin listener's own",
        ),
        (
            "type = \"prometheus\"\npath = \"cloudwatch\"\n",
            "must start with '/'",
        ),
        (
            "type = \"prometheus\"\npath = \"/cw/{name}\"\n",
            "only letters, digits",
        ),
        (
            "type = \"prometheus\"\nstaleness = \"0s\"\n",
            "greater than 0",
        ),
        ("type = \"prometheus\"\nstaleness = 600\n", "needs a unit"),
        ("type = \"prometheus\"\nmax_series = 0\n", "greater than 0"),
        (
            "type = \"prometheus\"\ninclude_metrics = [\"\"]\n",
            "include_metrics: empty pattern",
        ),
        (
            "type = \"prometheus\"\nnaming = \"grafana\"\n",
            "unknown variant",
        ),
        (
            "type = \"prometheus\"\nlabels = 1\n",
            "unknown field `labels`",
        ),
    ] {
        let message = read(text).unwrap_err();
        assert!(message.contains(expected), "{text:?}: {message}");
        assert!(!message.contains('\n'), "{message:?}");
    }
}

/// A file sink takes what it leaves out from the embedded sink's settings.
#[test]
fn a_file_sink_inherits_what_it_leaves_out() {
    let SinkConfig::File(file) =
        read("type = \"file\"\ndata_dir = \"/srv/x\"\nsegment_max_bytes = \"1MiB\"\n").unwrap()
    else {
        panic!("a file sink")
    };
    let mut shared = file::FileSinkSettings::new("/srv/embedded");
    shared.segment_max_age = std::time::Duration::from_secs(7);
    shared.dedup_capacity = 3;
    let settings = file.settings(&shared);
    assert_eq!(settings.data_dir, std::path::PathBuf::from("/srv/x"));
    assert_eq!(settings.segment_max_bytes, 1 << 20);
    assert_eq!(settings.segment_max_age, shared.segment_max_age);
    assert_eq!(settings.dedup_capacity, 3);
}

/// A type left out of the build is still named, and refused as such.
#[cfg(not(feature = "kafka"))]
#[test]
fn a_type_not_built_in_says_so() {
    let message = read("type = \"kafka\"\nbrokers = [\"k:9092\"]\n").unwrap_err();
    assert!(
        message.contains("built without the kafka feature"),
        "{message}"
    );
}

/// Local sinks gate readiness by default, network sinks do not.
#[test]
fn readiness_gating_follows_the_type() {
    assert!(
        read("type = \"stdout\"\n")
            .unwrap()
            .gates_readiness_by_default()
    );
    assert!(
        !read("type = \"discard\"\n")
            .unwrap()
            .gates_readiness_by_default()
    );
}
