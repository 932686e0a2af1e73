//! The `hydrant` binary as a child process: a command that sees only the test's own
//! settings, a run to completion under a time limit, and a running server found by
//! the addresses it logs, with its standard output and error collected.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A command running the binary under test. The variables Hydrant reads
/// (`HYDRANT_*`) are removed, so a run depends on the test alone.
pub fn hydrant() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hydrant"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HYDRANT_") {
            command.env_remove(name);
        }
    }
    command
}

/// Longest a run that should exit by itself may take; past it the process is
/// killed and the test fails (a mistake that is not refused starts serving).
pub const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Runs `command` to its end with nothing on standard input: its exit code (`None`
/// when a signal ended it), standard output and standard error.
pub fn run(command: &mut Command) -> (Option<i32>, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{command:?} did not exit within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        status.code(),
        stdout.join().unwrap(),
        stderr.join().unwrap(),
    )
}

/// Waits for `child` to exit; fails the test after `limit`.
pub fn wait_with_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "hydrant did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` (a `kill` name such as `HUP`) to the process.
pub fn send_signal(child: &Child, signal: &str) {
    assert!(
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// What the harness does with the process's standard error once it listens.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stderr {
    /// Reads every line into [`Hydrant::logs`].
    Read,
    /// Closes its end of the pipe: every later write fails.
    Close,
    /// Keeps the pipe open and reads nothing: once the pipe is full, a write
    /// would wait for ever.
    Unread,
}

/// A running `hydrant` process with the addresses it bound. Dropping it stops the
/// process (SIGTERM, then SIGKILL if it has not exited within 30 s).
pub struct Hydrant {
    pub child: Child,
    pub ingest: SocketAddr,
    pub admin: SocketAddr,
    /// Its log lines (JSON), each ending in a newline: every line up to the
    /// listeners', and with [`Stderr::Read`] every later one.
    pub logs: Arc<Mutex<String>>,
    /// What the process wrote to standard output (the `stdout` sink).
    pub output: Arc<Mutex<String>>,
    /// Standard error's pipe, kept open and never read ([`Stderr::Unread`]).
    _unread: Option<std::io::Lines<BufReader<ChildStderr>>>,
}

impl Hydrant {
    /// Starts `command` listening on loopback ports the system picks, logging JSON,
    /// and waits until both listeners are bound.
    pub fn spawn(command: &mut Command, stderr: Stderr) -> Self {
        let mut child = command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let collected = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let mut output = collected.lock().unwrap();
                output.push_str(&line);
                output.push('\n');
            }
        });
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let logs = Arc::new(Mutex::new(String::new()));
        let (mut ingest, mut admin) = (None, None);
        while ingest.is_none() || admin.is_none() {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!("hydrant exited before listening: {}", logs.lock().unwrap())
                })
                .unwrap();
            {
                let mut logs = logs.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if entry["message"] == "Listening." {
                let address: SocketAddr = entry["address"].as_str().unwrap().parse().unwrap();
                match entry["listener"].as_str() {
                    Some("ingest") => ingest = Some(address),
                    Some("admin") => admin = Some(address),
                    _ => {}
                }
            }
        }
        let mut unread = None;
        match stderr {
            Stderr::Read => {
                let sink = Arc::clone(&logs);
                std::thread::spawn(move || {
                    for line in lines.map_while(Result::ok) {
                        let mut logs = sink.lock().unwrap();
                        logs.push_str(&line);
                        logs.push('\n');
                    }
                });
            }
            Stderr::Close => drop(lines),
            Stderr::Unread => unread = Some(lines),
        }
        Self {
            child,
            ingest: ingest.unwrap(),
            admin: admin.unwrap(),
            logs,
            output,
            _unread: unread,
        }
    }

    /// The log lines collected so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Stops the process with SIGTERM; its exit status and every log line.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        send_signal(&self.child, "TERM");
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(30));
        // Let the log reader drain.
        std::thread::sleep(Duration::from_millis(100));
        (status, self.logs())
    }
}

impl Drop for Hydrant {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
