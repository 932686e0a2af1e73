//! Build script: records the git revision Hydrant is built from, for the
//! `hydrant_build_info` metric. A build without git, or outside a checkout (a
//! source archive, a container build that copies no `.git`), says `unknown`
//! instead of failing; `HYDRANT_GIT_REVISION` in the build's environment wins, so
//! such builds can pass the revision in.

use std::path::PathBuf;
use std::process::Command;

/// What the revision is called when it cannot be known.
const UNKNOWN: &str = "unknown";
/// Hex digits kept of the commit id: enough to be unique in any repository of this
/// size, short enough to read on a dashboard.
const REVISION_DIGITS: &str = "12";

fn main() {
    println!("cargo:rerun-if-env-changed=HYDRANT_GIT_REVISION");
    let revision = std::env::var("HYDRANT_GIT_REVISION")
        .ok()
        .filter(|revision| !revision.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| UNKNOWN.to_owned());
    println!("cargo:rustc-env=HYDRANT_GIT_REVISION={}", revision.trim());
}

/// The commit checked out, and the files whose change means another one is.
fn git_revision() -> Option<String> {
    let revision = git(&["rev-parse", &format!("--short={REVISION_DIGITS}"), "HEAD"])?;
    // Build again when HEAD moves to another branch or commit: HEAD itself, the
    // branch it names, and the packed refs. Only files that exist are named, as
    // Cargo reruns a script on every build for a missing one.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        let path = git(&["rev-parse", "--git-path", &name]).map(PathBuf::from);
        if let Some(path) = path.filter(|path| path.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(revision)
}

/// One line of `git` output, or `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
