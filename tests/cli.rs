//! The `hydrant` binary's configuration as an operator meets it: real process runs
//! with flags, environment variables and files; exit codes and what is printed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::body_of;
use common::process::{Hydrant, Stderr, hydrant, run};

/// sysexits.h EX_USAGE, the exit code of an invalid configuration.
const EX_USAGE: i32 = 64;

/// Runs and expects exit 64 with one line on stderr; returns that line. Should the
/// configuration be taken after all, the server it starts binds loopback ports
/// only and writes under a temporary directory, until
/// [`common::process::RUN_LIMIT`] ends it.
fn refused(command: &mut Command) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(command
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(scratch.path()));
    assert_eq!(code, Some(EX_USAGE), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("hydrant: error: "), "{stderr:?}");
    stderr
}

/// Posts one Firehose delivery with `key` to `server`; the status.
fn deliver(server: &Hydrant, request_id: &str, key: &str) -> u16 {
    let body = body_of(request_id, &[br#"{"a":1}"#]);
    let mut stream = TcpStream::connect(server.ingest).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /cli HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Amz-Firehose-Protocol-Version: 1.0\r\nX-Amz-Firehose-Request-Id: {request_id}\r\n\
         X-Amz-Firehose-Access-Key: {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Keys given as flags and keys in HYDRANT_ACCESS_KEYS are both accepted (the
/// variable used to be ignored as soon as one flag was given).
#[test]
fn keys_from_flags_and_the_environment_are_used_together() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hydrant::spawn(
        hydrant()
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--access-key", "flag-key=secret-from-the-flag"])
            .env(
                "HYDRANT_ACCESS_KEYS",
                "env-key=secret-from-the-env\nother=another-env-secret",
            ),
        Stderr::Read,
    );
    assert_eq!(deliver(&server, "by-flag", "secret-from-the-flag"), 200);
    assert_eq!(deliver(&server, "by-env", "secret-from-the-env"), 200);
    assert_eq!(deliver(&server, "by-env-2", "another-env-secret"), 200);
    assert_eq!(deliver(&server, "by-nobody", "not-a-key"), 401);
    let logs = server.logs();
    assert!(!logs.contains("secret-from"), "{logs}");

    let message = refused(
        hydrant()
            .args(["validate", "--access-key", "dup=one"])
            .env("HYDRANT_ACCESS_KEYS", "dup=two"),
    );
    assert!(
        message.contains("\"dup\" is configured twice: by --access-key and by HYDRANT_ACCESS_KEYS"),
        "{message}"
    );
}

/// A tiny admin listener that answers `/readyz` with `status`, once.
fn fake_admin(status: u16) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    address
}

/// `--health-check` needs only the admin address: no keys, and nothing else of the
/// configuration, so a container whose keys are arguments of the server is healthy.
#[test]
fn the_health_check_needs_only_the_admin_address() {
    let ready = fake_admin(200);
    let (code, _, stderr) =
        run(hydrant().args(["--health-check", "--admin-listen", &ready.to_string()]));
    assert_eq!(code, Some(0), "{stderr}");
    let unready = fake_admin(503);
    let (code, _, _) = run(hydrant()
        .arg("--health-check")
        .env("HYDRANT_ADMIN_LISTEN", unready.to_string()));
    assert_eq!(code, Some(1));

    // From the file, which is otherwise unusable without the server's environment.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hydrant.toml");
    let ready = fake_admin(200);
    std::fs::write(
        &config,
        format!(
            "admin_listen = \"{ready}\"\naccess_key_file = \"/run/secrets/absent\"\n\
             [[sinks]]\nname = \"bus\"\ntype = \"nats\"\ntoken = \"${{NATS_TOKEN}}\"\n"
        ),
    )
    .unwrap();
    let (code, _, stderr) = run(hydrant()
        .arg("--health-check")
        .env("HYDRANT_CONFIG", &config));
    assert_eq!(code, Some(0), "{stderr}");
    let nobody = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, stderr) =
        run(hydrant().args(["--health-check", "--admin-listen", &nobody.to_string()]));
    assert_eq!(code, Some(1), "{stderr}");
}

/// A TOML mistake is one line with its place, exit 64.
#[test]
fn toml_errors_name_their_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hydrant.toml");
    for (text, at) in [
        (
            "no_auth = true\nlisten = \"0.0.0.0:8080\n",
            "line 2, column 23",
        ),
        (
            "no_auth = true\n[limits]\nmax_records = \"lots\"\n",
            "line 3, column 15",
        ),
        ("no_auth = true\nshutdown_grace = 30\n", "line 2, column 18"),
    ] {
        std::fs::write(&config, text).unwrap();
        let message = refused(hydrant().arg("--config").arg(&config));
        assert!(message.contains(at), "{text:?}: {message}");
    }
}

/// `hydrant validate` on the shipped files: the example as it is, and the
/// container's file with the keys its compose file passes in the environment.
#[test]
fn the_shipped_configuration_files_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, stdout, stderr) = run(hydrant()
        .args(["validate", "--config"])
        .arg(root.join("docs/hydrant.example.toml")));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("lake (type s3)"), "{stdout}");
    assert!(
        !stdout.contains("replace-with-a-long-random-secret"),
        "{stdout}"
    );
    let (code, stdout, stderr) = run(hydrant()
        .args(["validate", "--config"])
        .arg(root.join("docker/hydrant.toml"))
        .env("HYDRANT_ACCESS_KEYS", "demo=change-me"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("default route (events no route takes): -> file, bus"),
        "{stdout}"
    );
}

/// `validate` binds nothing, locks and creates nothing, connects nowhere: it
/// succeeds with the listen port taken, the data directory absent and the sinks'
/// services down, and prints what it resolved; secrets from the environment stay
/// out of its output, and deprecated keys are warned about.
#[test]
fn validate_prints_the_configuration_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let down = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let data_dir = dir.path().join("never-created");
    let config = dir.path().join("hydrant.toml");
    std::fs::write(
        &config,
        format!(
            "[[access_keys]]\nname = \"prod\"\nkey = \"${{PROD_KEY}}\"\n\
             [[sinks]]\nname = \"bus\"\ntype = \"nats\"\nurl = \"nats://{down}\"\ntoken = \"${{NATS_TOKEN}}\"\nack_timeout_ms = 500\n\
             [[routes]]\nname = \"security\"\nformat = \"cloudtrail\"\nsinks = [\"bus\"]\ncontinue = true\n\
             [[routes]]\nkind = [\"metric\", \"log\"]\nsinks = [\"file\"]\n\
             [routing]\ndefault_sinks = []\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let (code, stdout, stderr) = run(hydrant()
        .args([
            "validate",
            "--listen",
            &taken.local_addr().unwrap().to_string(),
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data_dir)
        .env("PROD_KEY", "prod-secret-value")
        .env("NATS_TOKEN", "nats-secret-value"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "validate waited for something"
    );
    assert!(!data_dir.exists());
    for expected in [
        "prod (from [[access_keys]] in the config file)",
        "bus (type nats): NatsConfig",
        "1. \"security\": format cloudtrail -> bus, then continue",
        "2. \"#2\": kind metric|log -> file",
        "default route (events no route takes): -> (nowhere: dropped and counted)",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in:\n{stdout}");
    }
    for output in [&stdout, &stderr] {
        assert!(!output.contains("secret-value"), "{output}");
    }
    assert!(
        stderr.contains("ack_timeout_ms as a number of milliseconds is deprecated"),
        "{stderr}"
    );

    let message = refused(
        hydrant()
            .args(["validate", "--config"])
            .arg(&config)
            .env("PROD_KEY", "x"),
    );
    assert!(message.contains("NATS_TOKEN is not set"), "{message}");
}

/// Deprecated keys are warned about in the log when Hydrant starts.
#[test]
fn deprecated_keys_are_logged_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let down = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("hydrant.toml");
    std::fs::write(
        &config,
        format!("no_auth = true\n[[sinks]]\nname = \"bus\"\ntype = \"nats\"\nurl = \"nats://{down}\"\nack_timeout_ms = 500\n"),
    )
    .unwrap();
    let server = Hydrant::spawn(
        hydrant()
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data")),
        Stderr::Read,
    );
    let logs = server.logs();
    let warning = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| {
            entry["message"].as_str().is_some_and(|message| {
                message.contains("ack_timeout_ms") && message.contains("deprecated")
            })
        })
        .unwrap_or_else(|| panic!("no deprecation warning in {logs}"));
    assert_eq!(warning["level"], "WARN");
}

/// Unknown values of enumerated settings, bare durations and unset variables stop
/// startup with exit 64 and one line naming what is valid.
#[test]
fn mistakes_in_values_exit_64_naming_what_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hydrant.toml");
    let files = [
        (
            "[[routes]]\nformat = \"cloudtrial\"\nsinks = [\"file\"]\n",
            "expected one of json, text",
        ),
        (
            "[[routes]]\nkind = \"logs\"\nsinks = [\"file\"]\n",
            "expected one of log, metric",
        ),
        (
            "[[sinks]]\nname = \"x\"\ntype = \"sftp\"\n",
            "expected one of file, s3",
        ),
        ("log_format = \"xml\"\n", "expected `text` or `json`"),
        (
            "[decode]\nbad_records = \"drop\"\n",
            "expected dead_letter or reject",
        ),
        ("[fanout]\nbackoff = 250\n", "needs a unit"),
        ("[fanout]\nbackoff = \"6s\"\n", "at most 5s"),
        (
            "data_dir = \"${HYDRANT_TEST_UNSET_VARIABLE}\"\n",
            "HYDRANT_TEST_UNSET_VARIABLE is not set",
        ),
    ];
    for (text, expected) in files {
        std::fs::write(&config, format!("no_auth = true\n{text}")).unwrap();
        let message = refused(hydrant().arg("--config").arg(&config));
        assert!(message.contains(expected), "{text:?}: {message}");
    }
    /// Flags, variables, and what the message must say.
    type Case = (
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let flags: [Case; 4] = [
        (&["--shutdown-grace", "30"], &[], "has no unit"),
        (&["--log-format", "xml"], &[], "expected one of text, json"),
        (
            &[],
            &[("HYDRANT_LOG_FORMAT", "xml")],
            "expected one of text, json",
        ),
        (&[], &[("HYDRANT_FANOUT_BACKOFF", "1.5")], "has no unit"),
    ];
    for (args, vars, expected) in flags {
        let message = refused(
            hydrant()
                .arg("--no-auth")
                .args(args)
                .envs(vars.iter().copied()),
        );
        assert!(message.contains(expected), "{args:?} {vars:?}: {message}");
    }
}

/// `--help` says what a 200 means for every sink, not only the file sink.
#[test]
fn help_says_what_a_200_means() {
    let (code, help, _) = run(hydrant().arg("--help"));
    assert_eq!(code, Some(0));
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("answered 200 only once every sink it was routed to has it durably"),
        "{flat}"
    );
    assert!(!flat.contains("only once it is on disk"), "{flat}");
    for text in [
        "validate",
        "--fanout-attempts",
        "--fanout-backoff",
        "${VAR:-default}",
    ] {
        assert!(flat.contains(text), "--help lacks {text}");
    }
}

/// `hydrant check` opens every routed sink and probes its service, before a
/// deploy: a usable data directory and a NATS server that answers give exit 0
/// with each sink's answer; a remote write receiver nobody runs gives exit 69
/// naming it; a data directory a running Hydrant holds is reported, not taken.
#[test]
fn check_probes_every_routed_sink() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("hydrant.toml");
    let down = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(&config, "[routing]\ndefault_sinks = [\"file\"]\n").unwrap();
    let check = |data_dir: &Path| {
        run(hydrant()
            .args(["check", "--no-auth", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(data_dir))
    };
    let (code, stdout, stderr) = check(&data_dir);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("  file (file): ok"), "{stdout}");
    assert!(stdout.contains("Every sink answered."), "{stdout}");
    assert!(data_dir.exists(), "the data directory was opened");

    // The same data directory while a Hydrant serves from it.
    let server = Hydrant::spawn(
        hydrant().arg("--no-auth").arg("--data-dir").arg(&data_dir),
        Stderr::Read,
    );
    let (code, stdout, stderr) = check(&data_dir);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("file (file): in use by a running Hydrant"),
        "{stdout}"
    );
    drop(server);

    if cfg!(feature = "remote_write") {
        std::fs::write(
            &config,
            format!(
                "[[sinks]]\nname = \"mimir\"\ntype = \"remote_write\"\nurl = \"http://{down}/api/v1/push\"\n\
                 [[routes]]\nkind = \"metric\"\nsinks = [\"mimir\"]\n\
                 [routing]\ndefault_sinks = [\"file\"]\n"
            ),
        )
        .unwrap();
        let started = Instant::now();
        let (code, stdout, stderr) = check(&dir.path().join("other"));
        assert_eq!(code, Some(69), "{stdout}{stderr}");
        assert!(
            stdout.contains("  mimir (remote_write): FAILED: receiver did not answer"),
            "{stdout}"
        );
        assert!(stdout.contains("  file (file): ok"), "{stdout}");
        assert!(
            stderr.contains("hydrant: error: 1 sink(s) did not answer"),
            "{stderr}"
        );
        assert!(started.elapsed() < Duration::from_secs(20), "bounded wait");
    }
}
