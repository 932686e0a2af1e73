//! The `hydrant-loadtest` command: see `--help` and the README.

use std::process::ExitCode;

use clap::Parser as _;
use hydrant_loadtest::{Args, execute, prepare};

/// Exit status of a usage or setup error (as documented in `--help` and the README;
/// clap's own default, 2, is this tool's "nothing was delivered").
const EXIT_USAGE: u8 = 1;
/// Exit status of a run that delivered no request at all.
const EXIT_NOTHING_DELIVERED: u8 = 2;

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool reports on stdout and stderr"
)]
fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            // `--help` and `--version` print to stdout and succeed; mistakes go to
            // stderr and exit with the usage status.
            let status = if error.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
            let _printed = error.print();
            return status;
        }
    };
    eprintln!("hydrant-loadtest: generating {} payloads…", args.pool_size);
    let plan = match prepare(&args) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("hydrant-loadtest: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(2, usize::from),
        |threads| threads as usize,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hydrant-loadtest: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let setup = plan.setup();
    eprintln!(
        "hydrant-loadtest: {} {} bodies of {:.0} bytes; {}running…",
        setup.pool_size,
        setup.kind,
        setup.body_bytes,
        if args.warmup.is_zero() {
            String::new()
        } else {
            format!("warming up for {:?}, then ", args.warmup)
        },
    );
    if let (Some(series), Some(in_pool)) = (setup.series, setup.series_in_pool)
        && in_pool < series
    {
        eprintln!(
            "hydrant-loadtest: warning: the pool's data points cover {in_pool} of the {series} \
             series asked for; raise --pool-size or --records to send them all"
        );
    }
    let report = runtime.block_on(execute(plan));
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    if report.requests.ok == 0 {
        ExitCode::from(EXIT_NOTHING_DELIVERED)
    } else {
        ExitCode::SUCCESS
    }
}
