use std::io::Write;
use std::path::PathBuf;

use super::file::toml_string;
use super::*;
use crate::limits;
use crate::metrics::DEFAULT_MAX_STREAM_LABELS;
use crate::routing::{EVENT_FORMATS, KINDS, SinkSet};
use crate::server::auth::AccessKey;
use crate::server::listener::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_ADMIN_CONNECTIONS, DEFAULT_MAX_BODY_TIME, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MIN_BODY_RATE, DEFAULT_MIN_BODY_RATE_GRACE,
};
#[cfg(any(feature = "nats", feature = "kafka"))]
use crate::sink::SinkConfig;
use crate::sink::dedup::{DEFAULT_DEDUP_CAPACITY, DEFAULT_DEDUP_WINDOW};
use crate::sink::fanout::{DEFAULT_ATTEMPTS, DEFAULT_BACKOFF, DEFAULT_DEADLINE};
use crate::sink::file::{DEFAULT_SEGMENT_MAX_AGE, DEFAULT_SEGMENT_MAX_BYTES};

/// Parses for serving, with an empty environment for the variables Hydrant
/// reads itself.
fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    parse_env(args, &[])
}

fn invocation(args: &[&str], vars: &[(&str, &str)]) -> Result<Invocation, ConfigError> {
    let env = |name: &str| {
        vars.iter()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| OsString::from(value))
    };
    Invocation::from_args_and_env(std::iter::once("hydrant").chain(args.iter().copied()), &env)
}

fn parse_env(args: &[&str], vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    match invocation(args, vars)? {
        Invocation::Serve(config) => Ok(*config),
        other => panic!("{args:?} does not serve: {other:?}"),
    }
}

/// The error of a config file with this text (and `--no-auth` unless it has keys).
fn file_error(toml: &str, vars: &[(&str, &str)]) -> String {
    match parse_file(toml, vars) {
        Err(error) => error.to_string(),
        Ok(config) => panic!("expected an error for {toml:?}, got {config:?}"),
    }
}

fn parse_file(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hydrant.toml");
    std::fs::write(&path, toml).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    if !toml.contains("access_key") && !toml.contains("no_auth") {
        args.push("--no-auth");
    }
    parse_env(&args, vars)
}

fn error(args: &[&str]) -> String {
    match parse(args) {
        Err(error) => error.to_string(),
        Ok(config) => panic!("expected an error for {args:?}, got {config:?}"),
    }
}

#[test]
fn defaults_apply_when_nothing_is_given() {
    let config = parse(&["--access-key", "prod=secret"]).unwrap();
    assert_eq!(config.listen, default_addr(DEFAULT_LISTEN));
    assert_eq!(config.admin_listen, default_addr(DEFAULT_ADMIN_LISTEN));
    assert_eq!(config.storage, FileSinkSettings::new(DEFAULT_DATA_DIR));
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.connections, ConnectionSettings::default());
    assert_eq!(config.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(config.max_stream_labels, DEFAULT_MAX_STREAM_LABELS);
    assert!(config.warnings.is_empty());
}

#[test]
fn access_keys_split_at_the_first_equals_sign() {
    let config = parse(&["--access-key", "prod=abc==", "--access-key", "old=x=y"]).unwrap();
    let Auth::Keys(keys) = &config.auth else {
        panic!("keys expected")
    };
    assert_eq!(
        keys,
        &[
            AccessKey::new("prod", "abc=="),
            AccessKey::new("old", "x=y")
        ]
    );
    assert_eq!(
        config.auth.check(Some(b"x=y")).unwrap().as_deref(),
        Some("old")
    );
}

#[test]
fn invalid_configurations_are_refused_with_one_line() {
    let table: &[(&[&str], &str)] = &[
        (&[], "no access key configured"),
        (&["--access-key", "novalue"], "expected NAME=KEY"),
        (&["--access-key", "=secret"], "access key name"),
        (&["--access-key", "bad name=secret"], "access key name"),
        (&["--access-key", "a="], "must be 1-4096 bytes"),
        (
            &["--access-key", "a=x", "--access-key", "a=y"],
            "configured twice",
        ),
        (
            &["--access-key", "a=x", "--access-key", "b=x"],
            "same secret",
        ),
        (&["--no-auth", "--access-key", "a=x"], "cannot be combined"),
        (
            &["--no-auth", "--listen", "nowhere"],
            "invalid value 'nowhere'",
        ),
        (
            &["--no-auth", "--max-body-bytes", "12XB"],
            "unknown size unit",
        ),
        (
            &["--no-auth", "--max-records", "0"],
            "max-records must be greater than 0",
        ),
        (
            &["--no-auth", "--max-in-flight-bytes", "1MiB"],
            "max-in-flight-bytes",
        ),
        (&["--no-auth", "--segment-max-age", "0s"], "greater than 0"),
        (
            &["--no-auth", "--header-timeout", "0s"],
            "header-timeout must be greater than 0",
        ),
        (
            &["--no-auth", "--max-connections", "0"],
            "max-connections and max-admin-connections",
        ),
        (
            &["--no-auth", "--shutdown-grace", "soon"],
            "invalid duration",
        ),
        (&["--no-auth", "--log-format", "xml"], "invalid value 'xml'"),
        (
            &["--no-auth", "--config", "/nonexistent/hydrant.toml"],
            "cannot read config file",
        ),
        (
            &["--no-auth", "--access-key-file", "/nonexistent/keys"],
            "cannot read access key file",
        ),
        (&["--no-auth", "--bogus"], "unexpected argument"),
    ];
    for (args, expected) in table {
        let message = error(args);
        assert!(message.contains(expected), "{args:?}: {message:?}");
        assert!(
            !message.contains('\n'),
            "{args:?}: {message:?} is not one line"
        );
    }
}

#[test]
fn secrets_never_appear_in_errors() {
    let message = error(&["--access-key", "a=topsecret", "--access-key", "b=topsecret"]);
    assert!(!message.contains("topsecret"), "{message}");
}

#[test]
fn no_auth_warns_loudly() {
    let config = parse(&["--no-auth"]).unwrap();
    assert_eq!(config.auth, Auth::Disabled);
    assert!(config.warnings[0].contains("AUTHENTICATION IS OFF"));
}

#[test]
fn key_file_and_config_file_are_read_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "# comment\n\nfile-key=abc=def\r\n").unwrap();
    let toml = dir.path().join("hydrant.toml");
    let mut file = std::fs::File::create(&toml).unwrap();
    writeln!(
        file,
        r#"
listen = "127.0.0.1:7000"
data_dir = "/srv/hydrant"
access_key_file = "{}"
log_format = "json"
[[access_keys]]
name = "toml-key"
key = "t0ml"
[limits]
max_body_bytes = "8MiB"
max_inflated_bytes = 16777216
max_in_flight_bytes = "1GiB"
[connections]
idle_timeout = "90s"
min_body_rate = "1MiB"
max_connections = 64
[storage]
segment_max_age = "1m"
dedup_capacity = 5
"#,
        keys.display()
    )
    .unwrap();
    let config = parse(&[
        "--config",
        toml.to_str().unwrap(),
        "--listen",
        "127.0.0.1:7001",
        "--max-connections",
        "65",
    ])
    .unwrap();
    assert_eq!(config.listen.port(), 7001, "the flag wins over the file");
    assert_eq!(config.storage.data_dir, PathBuf::from("/srv/hydrant"));
    assert_eq!(config.limits.max_body_bytes, 8 << 20);
    assert_eq!(config.limits.max_inflated_bytes, 16 << 20);
    assert_eq!(config.limits.max_in_flight_bytes, 1 << 30);
    assert_eq!(config.storage.segment_max_age, Duration::from_secs(60));
    assert_eq!(config.storage.dedup_capacity, 5);
    assert_eq!(config.connections.idle_timeout, Duration::from_secs(90));
    assert_eq!(config.connections.min_body_rate, 1 << 20);
    assert_eq!(config.connections.max_connections, 65, "the flag wins");
    assert_eq!(
        config.connections.header_timeout, DEFAULT_HEADER_TIMEOUT,
        "what is not given keeps its default"
    );
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(
        config.auth.check(Some(b"t0ml")).unwrap().as_deref(),
        Some("toml-key")
    );
    assert_eq!(
        config.auth.check(Some(b"abc=def")).unwrap().as_deref(),
        Some("file-key")
    );
}

/// The documented example must stay valid as shipped and its "defaults" must be
/// the defaults. (tests/cli.rs also runs `hydrant validate` on it.)
#[test]
fn the_example_config_file_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/hydrant.example.toml");
    let config = parse(&["--config", path]).unwrap();
    let defaults = parse(&["--no-auth"]).unwrap();
    assert_eq!(config.listen, defaults.listen);
    assert_eq!(config.admin_listen, defaults.admin_listen);
    assert_eq!(config.limits, defaults.limits);
    assert_eq!(config.connections, defaults.connections);
    assert_eq!(config.storage, defaults.storage);
    assert_eq!(config.shutdown_grace, defaults.shutdown_grace);
    assert_eq!(config.max_stream_labels, defaults.max_stream_labels);
    assert_eq!(config.decode.default_format, defaults.decode.default_format);
    assert_eq!(config.decode.bad_records, defaults.decode.bad_records);
    assert_eq!(
        config.decode.max_record_inflated_bytes,
        defaults.decode.max_record_inflated_bytes
    );
    assert_eq!(config.decode.rules.len(), 2);
    let names: Vec<&str> = config.sinks.iter().map(|sink| sink.name.as_str()).collect();
    assert_eq!(
        names,
        [
            EMBEDDED_SINK,
            "lake",
            "bus",
            "stream",
            "cloudwatch",
            "mimir"
        ]
    );
    assert_eq!(
        config.sinks[4].config,
        crate::sink::SinkConfig::Prometheus(crate::sink::prometheus::PrometheusConfig::default()),
        "the example's prometheus sink spells out the defaults"
    );
    #[cfg(feature = "remote_write")]
    {
        use crate::sink::remote_write::RemoteWriteConfig;
        let defaults = RemoteWriteConfig {
            headers: [("X-Scope-OrgID".to_owned(), "cloudwatch".to_owned())].into(),
            ..RemoteWriteConfig::new("http://127.0.0.1:9009/api/v1/push")
        };
        assert_eq!(
            config.sinks[5].config,
            crate::sink::SinkConfig::RemoteWrite(defaults),
            "the example's remote_write sink spells out the defaults"
        );
    }
    assert_eq!(config.router.routes.len(), 3);
    assert_eq!(config.router.default_sinks, SinkSet::of(&[0]));
    assert_eq!(config.fanout, defaults.fanout);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(
        config
            .auth
            .check(Some(b"replace-with-a-long-random-secret"))
            .unwrap()
            .as_deref(),
        Some("prod-logs")
    );
}

/// Sink and route mistakes stop startup with one clear line.
#[test]
fn bad_sinks_and_routes_are_refused() {
    let table: &[(&str, &str)] = &[
        ("[[sinks]]\ntype = \"discard\"\n", "needs a name"),
        ("[[sinks]]\nname = \"x\"\n", "needs a type"),
        (
            "[[sinks]]\nname = \"x\"\ntype = \"ftp\"\n",
            "unknown type \"ftp\"",
        ),
        (
            "[[sinks]]\nname = \"file\"\ntype = \"discard\"\n",
            "used twice",
        ),
        (
            "[[sinks]]\nname = \"bad name\"\ntype = \"discard\"\n",
            "letters, digits",
        ),
        (
            "[[sinks]]\nname = \"x\"\ntype = \"discard\"\nextra = 1\n",
            "unknown field `extra`",
        ),
        (
            "[[sinks]]\nname = \"x\"\ntype = \"s3\"\n",
            "missing field `bucket`",
        ),
        (
            "[[sinks]]\nname = \"a\"\ntype = \"discard\"\n\n[[sinks]]\nname = \"x\"\ntype = \"s3\"\nbucket = \"b\"\ncompression = \"lzma\"\n",
            "sink \"x\" (line 6, column 1): s3: unknown compression \"lzma\"",
        ),
        (
            "[[sinks]]\nname = \"a\"\ntype = \"prometheus\"\n\n[[sinks]]\nname = \"b\"\ntype = \"prometheus\"\npath = \"/cloudwatch/metrics\"\n",
            "sink \"b\" (line 6, column 1): path \"/cloudwatch/metrics\" is served by another prometheus sink",
        ),
        (
            "[[routes]]\nsinks = [\"nowhere\"]\n",
            "unknown sink \"nowhere\"",
        ),
        ("[[routes]]\nsinks = []\n", "names no sinks"),
        (
            "[[routes]]\nsinks = [\"file\"]\nkind = \"trace\"\n",
            "unknown event kind",
        ),
        (
            "[[routes]]\nsinks = [\"file\"]\nlog_group = \"\"\n",
            "empty pattern",
        ),
        (
            "[[routes]]\nsinks = [\"file\"]\nkind = 5\n",
            "line 4, column 8: invalid type: integer `5`, expected a string or a list of strings",
        ),
        (
            "[[routes]]\nsinks = [\"file\"]\nlogroup = \"x\"\n",
            "unknown field `logroup`",
        ),
        (
            "[routing]\ndefault_sinks = [\"gone\"]\n",
            "unknown sink \"gone\"",
        ),
        ("[fanout]\ndeadline = \"200s\"\n", "delivery-deadline"),
        (
            "[[sinks]]\nname = \"x\"\ntype = \"discard\"\ngates_readiness = \"no\"\n",
            "gates_readiness must be true or false",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (toml, expected) in table {
        let path = dir.path().join("hydrant.toml");
        std::fs::write(&path, format!("no_auth = true\n{toml}")).unwrap();
        let message = error(&["--config", path.to_str().unwrap()]);
        assert!(message.contains(expected), "{toml:?}: {message:?}");
        assert!(!message.contains('\n'), "{message:?} is not one line");
    }
}

/// Local sinks gate `/readyz` and network sinks do not, unless a sink says.
#[cfg(feature = "nats")]
#[test]
fn sinks_gate_readiness_by_type_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hydrant.toml");
    std::fs::write(
        &path,
        "no_auth = true\n[[sinks]]\nname = \"out\"\ntype = \"stdout\"\n\
             [[sinks]]\nname = \"out2\"\ntype = \"stdout\"\ngates_readiness = false\n\
             [[sinks]]\nname = \"bus\"\ntype = \"nats\"\n\
             [[sinks]]\nname = \"bus2\"\ntype = \"nats\"\ngates_readiness = true\n",
    )
    .unwrap();
    let config = parse(&["--config", path.to_str().unwrap()]).unwrap();
    let gates: Vec<(&str, bool)> = config
        .sinks
        .iter()
        .map(|sink| (sink.name.as_str(), sink.gates_readiness))
        .collect();
    assert_eq!(
        gates,
        [
            ("file", true),
            ("out", true),
            ("out2", false),
            ("bus", false),
            ("bus2", true)
        ]
    );
}

#[test]
fn routes_resolve_sink_names_to_positions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hydrant.toml");
    std::fs::write(
            &path,
            "no_auth = true\n[[sinks]]\nname = \"null\"\ntype = \"discard\"\n[[sinks]]\nname = \"out\"\ntype = \"stdout\"\n\
             [[routes]]\nkind = [\"metric\", \"log\"]\nsinks = [\"out\", \"null\"]\ncontinue = true\ncommon_attributes = { env = \"prod\" }\n\
             [routing]\ndefault_sinks = []\n",
        )
        .unwrap();
    let config = parse(&["--config", path.to_str().unwrap()]).unwrap();
    let route = &config.router.routes[0];
    assert_eq!(route.sinks, SinkSet::of(&[1, 2]));
    assert!(route.continue_matching);
    assert_eq!(route.matcher.kinds, ["metric", "log"]);
    assert_eq!(route.matcher.common_attributes.len(), 1);
    assert!(config.router.default_sinks.is_empty());
}

/// The configuration shipped with docker-compose.yml must stay valid.
#[test]
fn the_docker_config_file_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/hydrant.toml");
    let config = parse(&["--no-auth", "--config", path]).unwrap();
    assert_eq!(config.sinks.len(), 2);
    assert_eq!(config.router.default_sinks, SinkSet::of(&[0, 1]));
}

#[test]
fn unknown_config_file_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("hydrant.toml");
    std::fs::write(&toml, "no_auth = true\nlisten_addr = \"x\"\n").unwrap();
    let message = error(&["--config", toml.to_str().unwrap()]);
    assert!(message.contains("unknown field `listen_addr`"), "{message}");
}

/// Sizes and durations in flags and in the file are read by `units`: the shared
/// table through the TOML types (the parser itself is checked in `units`).
#[test]
fn sizes_and_durations_follow_the_shared_table() {
    #[derive(Deserialize)]
    struct Size {
        value: ByteSize,
    }
    #[derive(Deserialize)]
    struct Time {
        value: HumanDuration,
    }
    let table = include_str!("../../tests/units.tsv");
    for line in table
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let fields: Vec<&str> = line.split('\t').collect();
        let (kind, input, expected) = (fields[0], fields[1], fields[2].parse::<u128>().ok());
        let toml = format!("value = {}", toml_string(input, 0));
        let got = match kind {
            "size" => toml::from_str::<Size>(&toml)
                .map(|v| u128::from(v.value.0))
                .map_err(|e| e.to_string()),
            _ => toml::from_str::<Time>(&toml)
                .map(|v| v.value.0.as_nanos())
                .map_err(|e| e.to_string()),
        };
        assert_eq!(got.ok(), expected, "{kind} {input:?}");
    }
    // A bare integer is bytes for a size, and refused for a duration.
    assert_eq!(
        toml::from_str::<Size>("value = 4096").unwrap().value,
        ByteSize(4096)
    );
    for bare in ["value = 250", "value = 1.5", "value = 0"] {
        let error = toml::from_str::<Time>(bare).err().unwrap().to_string();
        assert!(error.contains("needs a unit"), "{bare}: {error}");
    }
}

/// Durations and sizes in every place: flags, the file, fractions, a bare number.
#[test]
fn durations_need_a_unit_everywhere() {
    let config = parse(&[
        "--no-auth",
        "--shutdown-grace",
        "1.5m",
        "--segment-max-bytes",
        "1.5MiB",
    ])
    .unwrap();
    assert_eq!(config.shutdown_grace, Duration::from_secs(90));
    assert_eq!(config.storage.segment_max_bytes, 1536 << 10);
    let message = error(&["--no-auth", "--shutdown-grace", "30"]);
    assert!(
        message.contains("no unit") && message.contains("30s"),
        "{message}"
    );
    let config = parse_file(
        "shutdown_grace = \"1.5h\"\n[fanout]\nbackoff = \"100ms\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(config.shutdown_grace, Duration::from_secs(5400));
    assert_eq!(config.fanout.backoff, Duration::from_millis(100));
    for toml in [
        "shutdown_grace = 30\n",
        "[fanout]\nbackoff = 250\n",
        "[storage]\nsegment_max_age = 5\n",
    ] {
        let message = file_error(toml, &[]);
        assert!(message.contains("needs a unit"), "{toml}: {message}");
        assert!(message.contains("line "), "{toml}: {message}");
    }
}

/// The fan-out's options are flags and variables too, and the 5 s cap holds for
/// the first wait as for the others.
#[test]
fn fanout_options_are_flags_and_are_checked() {
    let config = parse(&[
        "--no-auth",
        "--fanout-attempts",
        "5",
        "--fanout-backoff",
        "1s",
    ])
    .unwrap();
    assert_eq!(
        (config.fanout.attempts, config.fanout.backoff),
        (5, Duration::from_secs(1))
    );
    let config = parse_file("[fanout]\nattempts = 2\n", &[]).unwrap();
    assert_eq!(config.fanout.attempts, 2);
    for (args, expected) in [
        (&["--no-auth", "--fanout-backoff", "6s"][..], "at most 5s"),
        (&["--no-auth", "--fanout-attempts", "0"][..], "at least 1"),
    ] {
        let message = error(args);
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    let message = file_error("[fanout]\nbackoff = \"10s\"\n", &[]);
    assert!(message.contains("at most 5s"), "{message}");
    let message = file_error("[fanout]\nattempts = 0\n", &[]);
    assert!(message.contains("at least 1"), "{message}");
}

/// Every enumerated setting refuses an unknown value with exit 64's one line,
/// naming the value and the valid ones.
#[test]
fn unknown_values_of_enumerated_settings_are_refused() {
    // (how it is given, the unknown value, two of the valid values)
    type Case = (&'static str, &'static str, [&'static str; 2]);
    let files: &[Case] = &[
        (
            "[[routes]]\nsinks = [\"file\"]\nformat = \"cloudtrial\"\n",
            "cloudtrial",
            ["cloudtrail", "vpc_flow"],
        ),
        (
            "[[routes]]\nsinks = [\"file\"]\nformat = [\"json\", \"jsonl\"]\n",
            "jsonl",
            ["json", "text"],
        ),
        (
            "[[routes]]\nsinks = [\"file\"]\nkind = \"logs\"\n",
            "logs",
            ["log", "metric"],
        ),
        (
            "[[sinks]]\nname = \"x\"\ntype = \"ftp\"\n",
            "ftp",
            ["s3", "discard"],
        ),
        (
            "[[sinks]]\nname = \"x\"\ntype = \"s3\"\nbucket = \"b\"\ncompression = \"zstd\"\n",
            "zstd",
            ["gzip", "none"],
        ),
        (
            "[[sinks]]\nname = \"x\"\ntype = \"kafka\"\nbrokers = [\"k:9092\"]\ncompression = \"brotli\"\n",
            "brotli",
            ["lz4", "zstd"],
        ),
        ("log_format = \"xml\"\n", "xml", ["text", "json"]),
        (
            "[decode]\nbad_records = \"drop\"\n",
            "drop",
            ["dead_letter", "reject"],
        ),
        (
            "[decode]\ndefault_format = \"cloudwatch\"\n",
            "cloudwatch",
            ["cloudwatch_logs", "raw"],
        ),
        (
            "[[decode.rules]]\npath = \"/x\"\nformat = \"otel\"\n",
            "otel",
            ["metric_stream_otel10", "auto"],
        ),
    ];
    for (toml, value, valid) in files {
        let message = file_error(toml, &[]);
        assert!(message.contains(value), "{toml:?}: {message}");
        for name in valid {
            assert!(
                message.contains(name),
                "{toml:?} should name {name}: {message}"
            );
        }
        assert!(!message.contains('\n'), "{message:?}");
    }
    let flags: &[(&[&str], &str, [&str; 2])] = &[
        (&["--log-format", "xml"], "xml", ["text", "json"]),
        (
            &["--bad-records", "drop"],
            "drop",
            ["dead_letter", "reject"],
        ),
        (
            &["--format", "cloudwatch"],
            "cloudwatch",
            ["cloudwatch_logs", "raw"],
        ),
        (
            &["--path-format", "/x=otel"],
            "otel",
            ["metric_stream_otel10", "auto"],
        ),
        (
            &["--stream-format", "s=otel"],
            "otel",
            ["metric_stream_otel07", "eventbridge"],
        ),
    ];
    for (args, value, valid) in flags {
        let mut args = args.to_vec();
        args.push("--no-auth");
        let message = error(&args);
        assert!(message.contains(value), "{args:?}: {message}");
        for name in valid {
            assert!(
                message.contains(name),
                "{args:?} should name {name}: {message}"
            );
        }
    }
    // Every known value is taken.
    for format in EVENT_FORMATS {
        parse_file(
            &format!("[[routes]]\nsinks = [\"file\"]\nformat = \"{format}\"\n"),
            &[],
        )
        .unwrap();
    }
    for kind in KINDS {
        parse_file(
            &format!("[[routes]]\nsinks = [\"file\"]\nkind = \"{kind}\"\n"),
            &[],
        )
        .unwrap();
    }
}

/// Keys from every source are used together: every combination of the five
/// sources gives exactly the keys of those sources.
#[test]
fn access_keys_from_every_source_are_used_together() {
    let dir = tempfile::tempdir().unwrap();
    let flag_file = dir.path().join("flag-keys");
    std::fs::write(&flag_file, "from-flag-file=secret-flag-file\n").unwrap();
    let env_file = dir.path().join("env-keys");
    std::fs::write(&env_file, "from-env-file=secret-env-file\n").unwrap();
    let toml_file = dir.path().join("toml-keys");
    std::fs::write(&toml_file, "from-toml-file=secret-toml-file\n").unwrap();
    let config_path = dir.path().join("hydrant.toml");
    // The sources: --access-key, HYDRANT_ACCESS_KEYS, --access-key-file,
    // HYDRANT_ACCESS_KEY_FILE, [[access_keys]] and access_key_file in the file.
    let sources = 6;
    for mask in 1u32..(1 << sources) {
        let on = |source: u32| mask & (1 << source) != 0;
        let mut args: Vec<String> = Vec::new();
        let mut vars: Vec<(&str, String)> = Vec::new();
        let mut expected: Vec<&str> = Vec::new();
        if on(0) {
            args.extend(["--access-key".into(), "from-flag=secret-flag".into()]);
            expected.push("from-flag");
        }
        if on(1) {
            vars.push((
                ENV_ACCESS_KEYS,
                "from-env=secret-env\nfrom-env-2=secret-env-2\n".into(),
            ));
            expected.extend(["from-env", "from-env-2"]);
        }
        if on(2) {
            args.extend(["--access-key-file".into(), flag_file.display().to_string()]);
            expected.push("from-flag-file");
        }
        if on(3) {
            vars.push((ENV_ACCESS_KEY_FILE, env_file.display().to_string()));
            expected.push("from-env-file");
        }
        let mut toml = String::new();
        if on(5) {
            toml.push_str(&format!("access_key_file = \"{}\"\n", toml_file.display()));
            expected.push("from-toml-file");
        }
        if on(4) {
            toml.push_str("[[access_keys]]\nname = \"from-toml\"\nkey = \"secret-toml\"\n");
            expected.push("from-toml");
        }
        std::fs::write(&config_path, &toml).unwrap();
        args.extend(["--config".into(), config_path.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let config = parse_env(&args, &vars).unwrap_or_else(|e| panic!("{mask:b}: {e}"));
        let Auth::Keys(keys) = &config.auth else {
            panic!("keys expected")
        };
        let mut names: Vec<&str> = keys.iter().map(AccessKey::name).collect();
        names.sort_unstable();
        expected.sort_unstable();
        assert_eq!(names, expected, "sources {mask:06b}");
        for name in &expected {
            let secret = format!("secret-{}", name.trim_start_matches("from-"));
            assert_eq!(
                config
                    .auth
                    .check(Some(secret.as_bytes()))
                    .unwrap()
                    .as_deref(),
                Some(*name)
            );
        }
    }
}

/// A name given by two sources is an error naming both; the same file named
/// twice is read once.
#[test]
fn a_key_name_in_two_sources_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "dup=secret-file\n").unwrap();
    let keys = keys.to_str().unwrap();
    let toml = dir.path().join("hydrant.toml");
    std::fs::write(
        &toml,
        "[[access_keys]]\nname = \"dup\"\nkey = \"secret-toml\"\n",
    )
    .unwrap();
    let toml = toml.to_str().unwrap();
    /// Arguments, variables, the two sources the message must name.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], [&'a str; 2]);
    let cases: &[Case<'_>] = &[
        (
            &["--access-key", "dup=a"],
            &[(ENV_ACCESS_KEYS, "dup=b")],
            ["--access-key", "HYDRANT_ACCESS_KEYS"],
        ),
        (
            &["--access-key", "dup=a", "--access-key-file", keys],
            &[],
            ["--access-key", "access key file"],
        ),
        (
            &["--config", toml],
            &[(ENV_ACCESS_KEYS, "dup=b")],
            ["HYDRANT_ACCESS_KEYS", "[[access_keys]]"],
        ),
        (
            &["--config", toml],
            &[(ENV_ACCESS_KEY_FILE, keys)],
            ["HYDRANT_ACCESS_KEY_FILE", "[[access_keys]]"],
        ),
    ];
    for (args, vars, sources) in cases {
        let message = match parse_env(args, vars) {
            Err(error) => error.to_string(),
            Ok(_) => panic!("{args:?} {vars:?} should clash"),
        };
        assert!(message.contains("\"dup\" is configured twice"), "{message}");
        for source in sources {
            assert!(message.contains(source), "{message} should name {source}");
        }
        assert!(!message.contains("secret"), "{message}");
    }
    let config = parse_env(&["--access-key-file", keys], &[(ENV_ACCESS_KEY_FILE, keys)]).unwrap();
    assert_eq!(
        config.auth.check(Some(b"secret-file")).unwrap().as_deref(),
        Some("dup")
    );
    let message = match parse_env(&["--no-auth"], &[(ENV_ACCESS_KEYS, "a=b")]) {
        Err(error) => error.to_string(),
        Ok(_) => panic!("--no-auth with keys"),
    };
    assert!(
        message.contains("cannot be combined") && message.contains(ENV_ACCESS_KEYS),
        "{message}"
    );
}

/// `--health-check` needs only the admin address, from the flag, its variable or
/// the file; nothing else is read or checked.
#[test]
fn the_health_check_needs_only_the_admin_address() {
    let check = |args: &[&str], vars: &[(&str, &str)]| match invocation(args, vars) {
        Ok(Invocation::HealthCheck(address)) => address.to_string(),
        other => panic!("{args:?}: {other:?}"),
    };
    assert_eq!(check(&["--health-check"], &[]), DEFAULT_ADMIN_LISTEN);
    assert_eq!(
        check(&["--health-check", "--admin-listen", "127.0.0.1:1234"], &[]),
        "127.0.0.1:1234"
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("hydrant.toml");
    // Everything but the admin address is wrong or unresolvable here.
    std::fs::write(
            &toml,
            "admin_listen = \"127.0.0.1:${ADMIN_PORT:-9999}\"\nbogus = 1\naccess_key_file = \"/nonexistent\"\n\
             [[sinks]]\nname = \"x\"\ntype = \"ftp\"\ntoken = \"${UNSET_SECRET}\"\n",
        )
        .unwrap();
    let toml = toml.to_str().unwrap();
    assert_eq!(
        check(&["--health-check", "--config", toml], &[]),
        "127.0.0.1:9999"
    );
    assert_eq!(
        check(
            &["--health-check", "--config", toml],
            &[("ADMIN_PORT", "7777")]
        ),
        "127.0.0.1:7777"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "admin_listen = \"nowhere\"\n").unwrap();
    let message = invocation(&["--health-check", "--config", bad.to_str().unwrap()], &[])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("admin_listen") && message.contains("line 1"),
        "{message}"
    );
}

/// A TOML syntax error gives toml's message with its line and column, on one line.
#[test]
fn toml_syntax_errors_name_their_line_and_column() {
    for (toml, at) in [
        (
            "listen = \"0.0.0.0:8080\"\nno_auth = tru\n",
            "line 2, column 11",
        ),
        ("[limits]\nmax_records = 10\n[limits\n", "line 3, column 8"),
        (
            "no_auth = true\n\n  listen_addr = \"x\"\n",
            "line 3, column 3",
        ),
        (
            "no_auth = true\n[storage]\ndedup_capacity = \"many\"\n",
            "line 3, column 18",
        ),
    ] {
        let message = file_error(toml, &[]);
        assert!(message.contains(at), "{toml:?}: {message}");
        assert!(!message.contains('\n'), "{message:?}");
    }
}

#[test]
fn interpolation_expands_variables_in_strings() {
    let env_of = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(var, _)| *var == name)
                .map(|(_, value)| OsString::from(value))
        }
    };
    let env = env_of(&[("HOST", "nats.internal"), ("EMPTY", ""), ("PORT", "4222")]);
    let table: &[(&str, Result<&str, &str>)] = &[
        ("nats://${HOST}:${PORT}", Ok("nats://nats.internal:4222")),
        ("${MISSING:-fallback}", Ok("fallback")),
        ("${EMPTY:-fallback}", Ok("fallback")),
        ("[${EMPTY}]", Ok("[]")),
        ("${MISSING:-}", Ok("")),
        (
            "$${HOST} and $$ and $5 and $",
            Ok("${HOST} and $$ and $5 and $"),
        ),
        ("cost: $HOST", Ok("cost: $HOST")),
        ("${MISSING}", Err("MISSING is not set")),
        ("${HOST", Err("not closed")),
        ("${1X}", Err("variable name")),
        ("${}", Err("variable name")),
    ];
    for (text, expected) in table {
        match (interpolate(text, &env), expected) {
            (Ok(got), Ok(want)) => assert_eq!(&got, want, "{text}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
            (got, want) => panic!("{text}: got {got:?}, expected {want:?}"),
        }
    }
}

/// In the file: string values only (not keys, not comments), secrets never in a
/// message, and line numbers unchanged after a multi-line value.
#[test]
fn the_config_file_takes_variables_in_string_values() {
    let vars = [
        ("NATS_TOKEN", "s3cr3t-t0ken"),
        ("DATA", "/srv/data"),
        ("PORT", "7000"),
    ];
    let config = parse_file(
            "# ${NOT_A_VARIABLE} in a comment\n\
             data_dir = \"${DATA}\"\nlisten = '0.0.0.0:${PORT}'\n\
             [[sinks]]\nname = \"bus\"\ntype = \"nats\"\ntoken = \"${NATS_TOKEN}\"\nstream_subjects = [\"a.$${literal}\"]\n",
            &vars,
        )
        .unwrap();
    assert_eq!(config.storage.data_dir, PathBuf::from("/srv/data"));
    assert_eq!(config.listen.port(), 7000);
    #[cfg(feature = "nats")]
    {
        let SinkConfig::Nats(nats) = &config.sinks[1].config else {
            panic!()
        };
        assert_eq!(nats.token.as_deref(), Some("s3cr3t-t0ken"));
        assert_eq!(nats.stream_subjects, ["a.${literal}"]);
    }
    assert!(
        !config.describe().contains("s3cr3t"),
        "{}",
        config.describe()
    );
    let message = file_error("no_auth = true\ndata_dir = \"${UNSET_DIR}\"\n", &[]);
    assert!(
        message.contains("UNSET_DIR") && message.contains("line 2"),
        "{message}"
    );
    let message = file_error("no_auth = true\n\"${PORT}\" = 1\n", &vars);
    assert!(
        message.contains("unknown field `${PORT}`"),
        "keys are not expanded: {message}"
    );
    // An expanded value shown by a message is shown as written.
    let message = file_error("no_auth = true\nlog_format = \"${NATS_TOKEN}\"\n", &vars);
    assert!(
        !message.contains("s3cr3t") && message.contains("${NATS_TOKEN}"),
        "{message}"
    );
    // A multi-line string keeps the lines after it where they were.
    let message = file_error(
        "no_auth = true\n[[sinks]]\nname = \"\"\"${PORT}\nx\ny\"\"\"\ntype = \"discard\"\n[storage]\ndedup_capacity = \"many\"\n",
        &vars,
    );
    assert!(message.contains("line 8, column 18"), "{message}");
}

/// The Kafka sink's SASL password comes from the environment and is never shown;
/// its TLS and SASL mistakes are refused with the file.
#[cfg(feature = "kafka")]
#[test]
fn kafka_secrets_come_from_the_environment_and_stay_hidden() {
    let vars = [("KAFKA_PASSWORD", "s3cr3t-kafka")];
    let sink = "[[sinks]]\nname = \"k\"\ntype = \"kafka\"\nbrokers = [\"k:9093\"]\n";
    let config = parse_file(
            &format!(
                "no_auth = true\n{sink}sasl_mechanism = \"scram-sha-512\"\nsasl_username = \"hydrant\"\nsasl_password = \"${{KAFKA_PASSWORD}}\"\n"
            ),
            &vars,
        )
        .unwrap();
    let SinkConfig::Kafka(kafka) = &config.sinks[1].config else {
        panic!()
    };
    assert_eq!(kafka.sasl_password.as_deref(), Some("s3cr3t-kafka"));
    let described = config.describe();
    assert!(!described.contains("s3cr3t"), "{described}");
    assert!(described.contains("<redacted>"), "{described}");
    for (settings, expected) in [
        (
            "tls = true\ntls_cert_file = \"/nonexistent.pem\"\n",
            "tls_cert_file needs tls_key_file",
        ),
        (
            "tls = true\ntls_ca_file = \"/nonexistent.pem\"\n",
            "/nonexistent.pem",
        ),
        ("sasl_mechanism = \"plain\"\n", "needs sasl_username"),
        (
            "sasl_mechanism = \"oauthbearer\"\n",
            "sasl_mechanism: unknown",
        ),
    ] {
        let message = file_error(&format!("no_auth = true\n{sink}{settings}"), &vars);
        assert!(message.contains(expected), "{settings}: {message}");
    }
}

/// The sinks' integer-unit keys still work, with a warning; the new keys take a
/// unit; sizes take a unit.
#[cfg(all(feature = "nats", feature = "kafka"))]
#[test]
fn deprecated_integer_unit_keys_warn_and_new_keys_take_units() {
    let nats = "[[sinks]]\nname = \"bus\"\ntype = \"nats\"\nstream = \"S\"\ncreate_stream = true\n";
    let kafka = "[[sinks]]\nname = \"k\"\ntype = \"kafka\"\nbrokers = [\"k:9092\"]\n";
    let config = parse_file(
            &format!("{nats}ack_timeout = \"2.5s\"\nduplicate_window = \"2m\"\n{kafka}timeout = \"3s\"\nmax_batch_bytes = \"512KiB\"\n"),
            &[],
        )
        .unwrap();
    assert!(
        config.warnings.iter().all(|w| !w.contains("deprecated")),
        "{:?}",
        config.warnings
    );
    let (SinkConfig::Nats(n), SinkConfig::Kafka(k)) =
        (&config.sinks[1].config, &config.sinks[2].config)
    else {
        panic!()
    };
    assert_eq!((n.ack_timeout_ms, n.duplicate_window), (2500, 120));
    assert_eq!((k.timeout_ms, k.max_batch_bytes), (3000, 512 << 10));
    let config = parse_file(
        &format!("{nats}ack_timeout_ms = 500\nduplicate_window = 60\n{kafka}timeout_ms = 700\n"),
        &[],
    )
    .unwrap();
    let (SinkConfig::Nats(n), SinkConfig::Kafka(k)) =
        (&config.sinks[1].config, &config.sinks[2].config)
    else {
        panic!()
    };
    assert_eq!(
        (n.ack_timeout_ms, n.duplicate_window, k.timeout_ms),
        (500, 60, 700)
    );
    let deprecated: Vec<&String> = config
        .warnings
        .iter()
        .filter(|w| w.contains("deprecated"))
        .collect();
    assert_eq!(deprecated.len(), 3, "{deprecated:?}");
    for key in ["ack_timeout_ms", "duplicate_window", "timeout_ms"] {
        assert!(
            deprecated.iter().any(|w| w.contains(key)),
            "{key}: {deprecated:?}"
        );
    }
    for (extra, expected) in [
        (
            format!("{nats}ack_timeout = \"1s\"\nack_timeout_ms = 5\n"),
            "not both",
        ),
        (
            format!("{nats}duplicate_window = \"1500ms\"\n"),
            "whole number of seconds",
        ),
        (format!("{nats}ack_timeout = \"250\"\n"), "no unit"),
        (
            format!("{kafka}max_batch_bytes = \"1 parsec\"\n"),
            "unknown size unit",
        ),
    ] {
        let message = file_error(&extra, &[]);
        assert!(message.contains(expected), "{extra}: {message}");
    }
}

/// `validate` resolves everything and describes it: sinks with type and
/// settings, routes in order, the default route; keys by name only.
#[test]
fn validate_describes_the_resolved_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("hydrant.toml");
    std::fs::write(
            &toml,
            "[[access_keys]]\nname = \"prod\"\nkey = \"hunter2-secret\"\n\
             [[sinks]]\nname = \"out\"\ntype = \"stdout\"\n[[sinks]]\nname = \"null\"\ntype = \"discard\"\n\
             [[routes]]\nname = \"metrics\"\nkind = \"metric\"\nsinks = [\"out\"]\ncontinue = true\n\
             [[routes]]\nlog_group = \"/aws/lambda/*\"\nformat = [\"json\", \"text\"]\nsinks = [\"null\", \"file\"]\n\
             [routing]\ndefault_sinks = []\n",
        )
        .unwrap();
    let Invocation::Validate(config) =
        invocation(&["validate", "--config", toml.to_str().unwrap()], &[]).unwrap()
    else {
        panic!("validate")
    };
    let text = config.describe();
    for expected in [
        "prod (from [[access_keys]] in the config file)",
        "decoding: default format auto, bad records dead_letter, 0 rule(s)",
        "file (type file): data_dir ./data, segment_max_bytes 128MiB",
        "out (type stdout)",
        "null (type discard)",
        "1. \"metrics\": kind metric -> out, then continue",
        "2. \"#2\": log_group /aws/lambda/*, format json|text -> file, null",
        "default route (events no route takes): -> (nowhere: dropped and counted)",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
    // validate takes the same flags, and refuses the same mistakes.
    assert!(matches!(
        invocation(&["validate", "--no-auth"], &[]),
        Ok(Invocation::Validate(_))
    ));
    assert!(
        invocation(&["validate"], &[])
            .unwrap_err()
            .to_string()
            .contains("no access key")
    );
}

/// The help text quotes the defaults; this keeps it honest.
#[test]
fn help_quotes_the_real_defaults() {
    let ConfigError::Display(help) = parse(&["--help"]).unwrap_err() else {
        panic!("--help should display")
    };
    let expected = [
        format!("[default: {DEFAULT_LISTEN}]"),
        format!("[default: {DEFAULT_ADMIN_LISTEN}]"),
        format!("[default: {DEFAULT_DATA_DIR}]"),
        format!("[default: {}MiB]", limits::DEFAULT_MAX_BODY_BYTES >> 20),
        format!("[default: {}MiB]", limits::DEFAULT_MAX_INFLATED_BYTES >> 20),
        format!("[default: {}]", limits::DEFAULT_MAX_RECORDS),
        format!(
            "[default: {}MiB]",
            limits::DEFAULT_MAX_IN_FLIGHT_BYTES >> 20
        ),
        format!("[default: {}]", limits::DEFAULT_MAX_DECODED_RATIO),
        format!("[default: {}GiB]", limits::DEFAULT_MAX_DECODED_BYTES >> 30),
        format!("(but at least {}MiB)", limits::DECODED_FLOOR_BYTES >> 20),
        format!("[default: {}MiB]", DEFAULT_SEGMENT_MAX_BYTES >> 20),
        format!("[default: {}m]", DEFAULT_SEGMENT_MAX_AGE.as_secs() / 60),
        format!("[default: {}h]", DEFAULT_DEDUP_WINDOW.as_secs() / 3600),
        format!("[default: {DEFAULT_DEDUP_CAPACITY}]"),
        format!("[default: {}s]", DEFAULT_SHUTDOWN_GRACE.as_secs()),
        format!("[default: {DEFAULT_MAX_STREAM_LABELS}]"),
        format!("[default: {}s]", DEFAULT_HEADER_TIMEOUT.as_secs()),
        format!("[default: {}s]", DEFAULT_IDLE_TIMEOUT.as_secs()),
        format!("[default: {}s]", DEFAULT_BODY_TIMEOUT.as_secs()),
        format!("[default: {}KiB]", DEFAULT_MIN_BODY_RATE >> 10),
        format!("[default: {}s]", DEFAULT_MIN_BODY_RATE_GRACE.as_secs()),
        format!("[default: {}s]", DEFAULT_MAX_BODY_TIME.as_secs()),
        format!("[default: {DEFAULT_MAX_CONNECTIONS}]"),
        format!("[default: {DEFAULT_MAX_ADMIN_CONNECTIONS}]"),
        format!("before the delivery is answered 503 [default: {DEFAULT_ATTEMPTS}]"),
        format!("[default: {}ms]", DEFAULT_BACKOFF.as_millis()),
        format!("every wait is at most {}s", MAX_BACKOFF.as_secs()),
        format!("[default: {}s]", DEFAULT_DEADLINE.as_secs()),
    ];
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for text in expected {
        assert!(flat.contains(&text), "--help lacks {text}");
    }
    for flag in [
        "--listen",
        "--admin-listen",
        "--data-dir",
        "--access-key",
        "--access-key-file",
        "--config",
        "--no-auth",
        "--header-timeout",
        "--idle-timeout",
        "--body-timeout",
        "--min-body-rate",
        "--min-body-rate-grace",
        "--max-body-time",
        "--max-connections",
        "--max-admin-connections",
        "--fanout-attempts",
        "--fanout-backoff",
        "HYDRANT_ACCESS_KEYS",
        "HYDRANT_ACCESS_KEY_FILE",
    ] {
        assert!(flat.contains(flag), "--help lacks {flag}");
    }
}

/// `hydrant validate` says whether the ingest listener serves HTTPS, and with
/// which files; `[tls]` in the file works as the flags do.
#[test]
fn validate_shows_whether_https_is_on() {
    let plain = parse(&["--no-auth"]).unwrap();
    assert!(plain.tls.is_none());
    assert!(
        plain.describe().contains("https: off"),
        "{}",
        plain.describe()
    );

    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let (cert, key) = (
        format!("{fixtures}/client.pem"),
        format!("{fixtures}/client.key"),
    );
    let flags = parse(&["--no-auth", "--tls-cert", &cert, "--tls-key", &key]).unwrap();
    let file = parse_file(
        &format!("no_auth = true\n[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\nhandshake_timeout = \"3s\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(
        flags.tls.as_ref().map(|tls| &tls.certificate),
        file.tls.as_ref().map(|tls| &tls.certificate)
    );
    assert_eq!(
        file.tls.as_ref().map(|tls| tls.handshake_timeout),
        Some(Duration::from_secs(3))
    );
    let described = file.describe();
    assert!(
        described.contains(&format!("https: certificate {cert}, key {key}"))
            && described.contains("handshake timeout 3s"),
        "{described}"
    );
}
