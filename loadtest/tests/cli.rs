//! The `hydrant-loadtest` binary as a user runs it: exit statuses as documented, and
//! `matrix.sh` finding the binaries wherever Cargo builds them.

use std::process::Command;

fn loadtest(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hydrant-loadtest"))
        .args(args)
        .output()
        .unwrap()
}

/// Usage mistakes exit 1, as `--help` and the README say; 2 is kept for a run that
/// delivered nothing.
#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let url = "http://127.0.0.1:1/firehose";
    let table: &[(&[&str], &str)] = &[
        (&["--bogus"], "unexpected argument"),
        (&[], "--url"),
        (&["--url", url, "--duration", "30"], "no unit"),
        (&["--url", url, "--duration", "5M"], "months"),
        (
            &["--url", url, "--request-size", "12XB"],
            "unknown size unit",
        ),
        (&["--url", url, "--rate", "0"], "rate"),
        (
            &["--url", url, "--kind", "metrics-json", "--series", "0"],
            "--series",
        ),
        (
            &[
                "--url",
                url,
                "--kind",
                "metrics-json",
                "--series",
                "10000001",
            ],
            "--series",
        ),
        (
            &["--url", url, "--kind", "raw-json", "--series", "1000"],
            "--series applies to the metric kinds",
        ),
        (
            &["--url", url, "--series", "1000"],
            "not to --kind cloudwatch-logs",
        ),
    ];
    for (args, expected) in table {
        let output = loadtest(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let help = loadtest(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("1 on a usage"), "{text}");
}

/// A run against nothing delivers nothing: exit 2.
#[test]
fn a_run_that_delivers_nothing_exits_2() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/firehose");
    let output = loadtest(&[
        "--url",
        &url,
        "--requests",
        "1",
        "--no-retry",
        "--pool-size",
        "1",
        "--records",
        "1",
    ]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `matrix.sh` runs the binaries Cargo built, in CARGO_TARGET_DIR when it is set.
#[test]
fn matrix_finds_the_binaries_in_cargo_target_dir() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/matrix.sh");
    let elsewhere = tempfile_dir();
    let output = Command::new("bash")
        .args([script, "--binaries"])
        .env("CARGO_TARGET_DIR", &elsewhere)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let paths = String::from_utf8(output.stdout).unwrap();
    let paths: Vec<&str> = paths.lines().collect();
    assert_eq!(
        paths,
        [
            format!("{elsewhere}/release/hydrant"),
            format!("{elsewhere}/release/hydrant-loadtest")
        ]
    );
    let output = Command::new("bash")
        .args([script, "--binaries"])
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let paths = String::from_utf8(output.stdout).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    assert_eq!(
        paths.lines().collect::<Vec<_>>(),
        [
            format!("{root}/target/release/hydrant"),
            format!("{root}/loadtest/target/release/hydrant-loadtest")
        ],
        "without CARGO_TARGET_DIR each crate builds into its own target/"
    );
}

/// A directory name no build uses (nothing is written there: `--binaries` only
/// asks Cargo where it would build).
fn tempfile_dir() -> String {
    std::env::temp_dir()
        .join(format!("hydrant-matrix-target-{}", std::process::id()))
        .display()
        .to_string()
}
