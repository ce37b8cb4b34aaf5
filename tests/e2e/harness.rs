//! A small test runner for the end-to-end suite, printing what libtest prints.
//!
//! Why not libtest: a test whose kernel feature is missing must be reported as skipped, by name
//! and reason, never as passed, and libtest cannot skip at run time. Here such a test prints
//! `test name ... ignored, kernel lacks QUIESCE` and counts as ignored. The runner also runs tests
//! one at a time (devices are global), fails a test that leaves a device behind (and removes it,
//! so one failure does not cascade), and fails the run if a test hangs.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ublk::{Controller, Features};
use ublk_tests::ublk_char_device_ids;

/// One end-to-end test.
#[derive(Clone, Copy)]
pub struct Test {
    /// Its name, as filters match it.
    pub name: &'static str,
    /// Kernel features it needs; missing ones make it `ignored`, with their names.
    pub needs: Features,
    /// The test: panics (assert!) or returns an error to fail; [`skip`] to be reported ignored.
    pub run: fn() -> TestResult,
}

/// Why a test did not pass.
#[derive(Debug)]
pub enum NotPassed {
    /// It failed.
    Failed(String),
    /// It cannot run on this kernel; the reason is printed after `ignored,`.
    Skipped(String),
}

impl From<ublk::Error> for NotPassed {
    fn from(e: ublk::Error) -> NotPassed {
        NotPassed::Failed(format!("error: {e}"))
    }
}

impl From<ublk::sys::CtrlError> for NotPassed {
    fn from(e: ublk::sys::CtrlError) -> NotPassed {
        NotPassed::Failed(format!("error: {e}"))
    }
}

/// What a test returns.
pub type TestResult = Result<(), NotPassed>;

/// Ends a test as skipped (reported `ignored, <reason>`): for what the running kernel cannot
/// do that no feature bit tells in advance.
pub fn skip(reason: impl Into<String>) -> TestResult {
    Err(NotPassed::Skipped(reason.into()))
}

/// A test running longer than this has hung: every wait in the library is bounded well below.
const HANG_LIMIT: Duration = Duration::from_secs(300);

struct Options {
    filters: Vec<String>,
    exact: bool,
    list: bool,
}

fn parse_args() -> Options {
    let mut opts = Options {
        filters: Vec::new(),
        exact: false,
        list: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--exact" => opts.exact = true,
            "--list" => opts.list = true,
            // libtest options that cargo or users pass; meaningless for a serial runner.
            "--test-threads" | "--color" | "--format" | "-Z" => {
                args.next();
            }
            a if a.starts_with('-') => {}
            filter => opts.filters.push(filter.to_string()),
        }
    }
    opts
}

fn selected(opts: &Options, name: &str) -> bool {
    opts.filters.is_empty()
        || opts.filters.iter().any(|f| {
            if opts.exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        })
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Why the tests cannot run here at all, if they cannot.
fn environment() -> Result<Features, String> {
    if !std::path::Path::new(Controller::DEFAULT_PATH).exists() {
        return Err(format!(
            "no {} on this machine (scripts/vm-test.sh runs these tests in a VM)",
            Controller::DEFAULT_PATH
        ));
    }
    Controller::open()
        .and_then(|mut c| c.features())
        .map_err(|e| e.to_string())
}

/// Deletes devices a test left behind; returns their ids.
fn remove_leftovers() -> Vec<u32> {
    let left = ublk_char_device_ids();
    if !left.is_empty()
        && let Ok(mut ctl) = Controller::open()
    {
        for &id in &left {
            let _ = ctl.stop(id);
            if let Err(e) = ctl.delete(id) {
                eprintln!("cleanup: {e}");
            }
        }
    }
    left
}

/// Runs the selected tests and prints libtest-style results; fails if any test failed.
pub fn run(tests: &[Test]) -> ExitCode {
    let opts = parse_args();
    if opts.list {
        for t in tests.iter().filter(|t| selected(&opts, t.name)) {
            println!("{}: test", t.name);
        }
        return ExitCode::SUCCESS;
    }
    let env = environment();
    let chosen: Vec<&Test> = tests.iter().filter(|t| selected(&opts, t.name)).collect();
    let filtered_out = tests.len() - chosen.len();
    println!("\nrunning {} tests", chosen.len());
    if let Err(why) = &env {
        println!("note: every test is ignored: {why}");
    }

    // A watchdog ends the run if a test hangs; the log then says which one.
    let current: Arc<Mutex<&'static str>> = Arc::new(Mutex::new(""));
    let started_at = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    {
        let (current, started_at) = (Arc::clone(&current), Arc::clone(&started_at));
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let start = started_at.load(Ordering::Relaxed);
                let now = epoch.elapsed().as_secs();
                if start != 0 && now.saturating_sub(start) > HANG_LIMIT.as_secs() {
                    let name = *current.lock().unwrap_or_else(|p| p.into_inner());
                    println!(
                        "test {name} ... FAILED (hung for more than {}s)",
                        HANG_LIMIT.as_secs()
                    );
                    println!("\ntest result: FAILED. the run was aborted by the hang\n");
                    std::process::exit(101);
                }
            }
        });
    }

    let (mut passed, mut ignored) = (0, 0);
    let mut failures: Vec<(&str, String)> = Vec::new();
    for test in chosen {
        let kernel = match &env {
            Ok(kernel) => *kernel,
            Err(_) => {
                println!("test {} ... ignored, no ublk driver here", test.name);
                ignored += 1;
                continue;
            }
        };
        let missing = test.needs - kernel;
        if !missing.is_empty() {
            println!("test {} ... ignored, kernel lacks {missing}", test.name);
            ignored += 1;
            continue;
        }
        *current.lock().unwrap_or_else(|p| p.into_inner()) = test.name;
        started_at.store(epoch.elapsed().as_secs().max(1), Ordering::Relaxed);
        let t0 = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(test.run));
        started_at.store(0, Ordering::Relaxed);
        let mut skipped = None;
        let mut failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(NotPassed::Failed(why))) => Some(why),
            Ok(Err(NotPassed::Skipped(why))) => {
                skipped = Some(why);
                None
            }
            Err(payload) => Some(format!("panicked: {}", panic_message(&*payload))),
        };
        let left = remove_leftovers();
        if !left.is_empty() && failure.is_none() {
            failure = Some(format!("left devices behind: {left:?} (removed)"));
        }
        let secs = t0.elapsed().as_secs_f64();
        match failure {
            None if skipped.is_some() => {
                println!(
                    "test {} ... ignored, {}",
                    test.name,
                    skipped.unwrap_or_default()
                );
                ignored += 1;
            }
            None => {
                println!("test {} ... ok ({secs:.1}s)", test.name);
                passed += 1;
            }
            Some(why) => {
                println!("test {} ... FAILED ({secs:.1}s)", test.name);
                failures.push((test.name, why));
            }
        }
    }

    if !failures.is_empty() {
        println!("\nfailures:\n");
        for (name, why) in &failures {
            println!("---- {name} ----\n{why}\n");
        }
        println!("failures:");
        for (name, _) in &failures {
            println!("    {name}");
        }
    }
    let status = if failures.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {status}. {passed} passed; {} failed; {ignored} ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
        failures.len(),
        epoch.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}
