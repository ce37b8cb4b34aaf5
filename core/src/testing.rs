//! Test support: a small seeded pseudo-random generator ([`Prng`]) and the driver of the
//! randomized tests ([`fuzz`]), shared by every crate of the workspace so that each test reads
//! the same seeds the same way and a failure is reproduced the same way.
//!
//! A randomized test here is reproducible: each case is generated from one 64-bit seed, and a
//! failing case panics with that seed and a command line that re-runs exactly that case:
//!
//! ```text
//! UBLK_FUZZ_SEED=0x3f2a9c0d17e5b468 UBLK_FUZZ_ITERS=1 cargo test tag::fuzz_tests::fuzz_tag_table
//! ```
//!
//! - `UBLK_FUZZ_SEED` (decimal or `0x` hex): run from this seed instead of the default ones
//!   ([`DEFAULT_SEEDS`]);
//! - `UBLK_FUZZ_ITERS` (decimal, at least 1): cases per seed, instead of each test's default
//!   (chosen so that the whole suite takes seconds in a debug build).
//!
//! Unlike the rest of this crate, this module uses `std` (the environment, catching a failing
//! case's panic to name its seed). It exists only in test builds: this crate's own
//! (`cfg(test)`) and, through the `testing` feature, other crates' tests, which enable it in
//! their `[dev-dependencies]` only (`scripts/check-policy.sh` checks that no normal build does).

extern crate std;

use core::fmt;
use core::ops::RangeInclusive;
use std::panic::{self, AssertUnwindSafe};
use std::string::{String, ToString};
use std::vec::Vec;

/// Seeds run when `UBLK_FUZZ_SEED` is not set. Fixed, so that a plain `cargo test` is
/// deterministic; more than one, so that one unlucky stream does not hide a bug for ever.
pub const DEFAULT_SEEDS: [u64; 3] = [0x5eed_0000_0000_0001, 0x0123_4567_89ab_cdef, 0xdead_beef];

/// The environment variable that picks the seed.
pub const SEED_VAR: &str = "UBLK_FUZZ_SEED";

/// The environment variable that sets the cases per seed.
pub const ITERS_VAR: &str = "UBLK_FUZZ_ITERS";

/// splitmix64's increment: 2^64 divided by the golden ratio, odd, so the state visits every
/// 64-bit value once per period.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A splitmix64 generator (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014; also the generator that seeds xoshiro).
///
/// Its whole state is one `u64`: each step adds a constant and returns a bijective mix of the
/// new state. So every seed gives a different stream of period 2^64, a copy of the value
/// replays it exactly, and the statistics are good enough for tests (it passes BigCrush).
/// It is not cryptographic, which tests do not need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prng {
    state: u64,
}

/// splitmix64's output function (the MurmurHash3 finalizer with better constants): every bit
/// of the input affects every bit of the output, and it is a bijection.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Prng {
    /// A generator whose stream is fixed by `seed` (any value, 0 included).
    pub const fn new(seed: u64) -> Prng {
        Prng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// A value in `0..n`, each equally likely. `n` must not be 0 (an empty range is a bug in
    /// the test, so it panics).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Prng::below(0): the range is empty");
        // Lemire's method: the high half of random * n is in 0..n. The low half below
        // `2^64 mod n` marks the few products that would make some results likelier: those
        // are drawn again (rarely: at most n / 2^64 of the time).
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(n);
            if product as u64 >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// A value in `range` (inclusive), each equally likely. The range must not be empty.
    pub fn range(&mut self, range: RangeInclusive<u64>) -> u64 {
        let (low, high) = range.into_inner();
        assert!(
            low <= high,
            "Prng::range({low}..={high}): the range is empty"
        );
        match (high - low).checked_add(1) {
            Some(n) => low + self.below(n),
            // The whole u64 range.
            None => self.next_u64(),
        }
    }

    /// An index into a slice of `len` elements. `len` must not be 0.
    pub fn index(&mut self, len: usize) -> usize {
        // Lossless both ways: usize is at most 64 bits on every target Linux runs on.
        self.below(len as u64) as usize
    }

    /// One element of `items`, each equally likely. `items` must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// A fair coin.
    pub fn bool(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// True with probability `num / den` (`den` must not be 0).
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// Fills `buf` with random bytes.
    pub fn fill_bytes(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    /// A `bits`-wide unsigned value (1..=64 bits) biased toward the edges where code breaks:
    /// about half the time one of 0, 1, MAX, MAX-1, a power of two or a power of two ±1, or a
    /// small number; otherwise a plain random value. Uniform draws almost never hit these
    /// (the chance of MAX among 2^64 values is nil), and they are where overflow, off-by-one
    /// and sign bugs live. Cast the result to a signed type for the signed edges: MAX is -1,
    /// 2^(bits-1) is MIN, 2^(bits-1)-1 is the signed MAX.
    pub fn interesting(&mut self, bits: u32) -> u64 {
        assert!(
            (1..=64).contains(&bits),
            "Prng::interesting({bits}): 1..=64 bits"
        );
        let max = u64::MAX >> (64 - bits);
        let value = match self.below(16) {
            0 => 0,
            1 => 1,
            2 => max,
            3 => max - 1,
            4..=7 => {
                let power = 1u64 << self.below(u64::from(bits));
                match self.below(3) {
                    0 => power.wrapping_sub(1),
                    1 => power,
                    _ => power.wrapping_add(1),
                }
            }
            8 => self.below(17),
            _ => self.next_u64(),
        };
        value & max
    }

    /// [`interesting`](Self::interesting) for a `u8`.
    pub fn interesting_u8(&mut self) -> u8 {
        self.interesting(8) as u8
    }

    /// [`interesting`](Self::interesting) for a `u16`.
    pub fn interesting_u16(&mut self) -> u16 {
        self.interesting(16) as u16
    }

    /// [`interesting`](Self::interesting) for a `u32` (cast to `i32` for the signed edges).
    pub fn interesting_u32(&mut self) -> u32 {
        self.interesting(32) as u32
    }

    /// [`interesting`](Self::interesting) for a `u64` (cast to `i64` for the signed edges).
    pub fn interesting_u64(&mut self) -> u64 {
        self.interesting(64)
    }

    /// A value within `spread` of `anchor` (wrapping at the ends of `u64`): for the edges a
    /// test computes itself, such as the last sector of a device.
    pub fn near(&mut self, anchor: u64, spread: u64) -> u64 {
        let offset = self.range(0..=spread.saturating_mul(2));
        anchor.wrapping_sub(spread).wrapping_add(offset)
    }
}

/// One case of a randomized test: the seed its generator starts from, and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// The seed of the run this case belongs to (a default seed or `UBLK_FUZZ_SEED`).
    pub run_seed: u64,
    /// Which case of that run, from 0.
    pub iteration: u32,
    /// The seed of this case's own generator. Case 0's is the run seed itself, so a run from
    /// this value with one iteration replays exactly this case.
    pub seed: u64,
}

impl Case {
    /// This case's generator.
    pub fn prng(&self) -> Prng {
        Prng::new(self.seed)
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {:#x}, iteration {} (case seed {:#x})",
            self.run_seed, self.iteration, self.seed
        )
    }
}

/// The cases of run seed `run_seed`: case 0 starts from the run seed itself, each later case
/// from the next output of a generator seeded with it, so cases are independent of one
/// another and of how much randomness each one drew.
pub fn cases(run_seed: u64, iterations: u32) -> impl Iterator<Item = Case> {
    let mut seeds = Prng::new(run_seed);
    (0..iterations).map(move |iteration| Case {
        run_seed,
        iteration,
        seed: if iteration == 0 {
            run_seed
        } else {
            seeds.next_u64()
        },
    })
}

/// Parses a seed: decimal, or hexadecimal after `0x`; `_` separators allowed.
pub fn parse_seed(text: &str) -> Option<u64> {
    let text: String = text.trim().chars().filter(|&c| c != '_').collect();
    let (digits, radix) = match text.strip_prefix("0x").or(text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text.as_str(), 10),
    };
    // `from_str_radix` would also take a leading '+'; a seed is digits only.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Parses an iteration count: a decimal number of at least 1 (0 would pass without testing
/// anything).
pub fn parse_iterations(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&n| n >= 1)
}

/// What a run does: which seeds, and how many cases each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The run seeds.
    pub seeds: Vec<u64>,
    /// Cases per seed.
    pub iterations: u32,
}

impl Plan {
    /// The plan from the values of `UBLK_FUZZ_SEED` and `UBLK_FUZZ_ITERS` (`None`: unset),
    /// with `default_iterations` when the count is not given. A value that does not parse is
    /// an error naming the variable: silently running the defaults instead would hide that
    /// the case asked for never ran.
    pub fn new(
        seed: Option<&str>,
        iterations: Option<&str>,
        default_iterations: u32,
    ) -> Result<Plan, String> {
        let seeds = match seed {
            None => DEFAULT_SEEDS.to_vec(),
            Some(text) => std::vec![parse_seed(text).ok_or_else(|| std::format!(
                "{SEED_VAR}={text:?} is not a seed (decimal, or hex after 0x)"
            ))?],
        };
        let iterations = match iterations {
            None => default_iterations,
            Some(text) => parse_iterations(text).ok_or_else(|| {
                std::format!("{ITERS_VAR}={text:?} is not a count of iterations (1 or more)")
            })?,
        };
        Ok(Plan { seeds, iterations })
    }

    /// The plan the environment asks for.
    pub fn from_env(default_iterations: u32) -> Plan {
        let var = |name| std::env::var(name).ok();
        let (seed, iterations) = (var(SEED_VAR), var(ITERS_VAR));
        Plan::new(seed.as_deref(), iterations.as_deref(), default_iterations)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every case of the plan, seed by seed.
    pub fn cases(&self) -> impl Iterator<Item = Case> + '_ {
        self.seeds
            .iter()
            .flat_map(move |&seed| cases(seed, self.iterations))
    }
}

/// The command line that replays `case` alone, in test `test`.
pub fn reproduce_command(case: &Case, test: &str) -> String {
    let release = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    std::format!(
        "{SEED_VAR}={:#x} {ITERS_VAR}=1 cargo test{release} {test}",
        case.seed
    )
}

/// Runs the randomized test `body` once per case of the plan the environment asks for
/// ([`Plan::from_env`]), `default_iterations` cases per seed unless `UBLK_FUZZ_ITERS` says
/// otherwise. Each call gets the case's own generator.
///
/// When a case fails (panics), the test fails with the case's seed, its iteration and the
/// command that replays it, followed by the case's own message. Call it from a `#[test]`
/// whose name starts with `fuzz_`, so that `cargo test fuzz` runs them all.
pub fn fuzz(default_iterations: u32, mut body: impl FnMut(&mut Prng)) {
    let plan = Plan::from_env(default_iterations);
    // libtest runs each test on a thread named after it: the name a re-run filters on.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<this test>");
    for case in plan.cases() {
        let mut prng = case.prng();
        // AssertUnwindSafe: a failed case ends the test, so nothing observes the state it
        // left behind.
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| body(&mut prng))) {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(a panic without a message)".into());
            panic!(
                "randomized test {test} failed at {case}\n  reproduce: {}\n  failure: {why}",
                reproduce_command(&case, test)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published splitmix64 reference outputs for seed 1234567 (from the reference C code
    /// by Vigna, used in many ports' tests): the generator is the real one.
    #[test]
    fn splitmix64_matches_the_reference_outputs() {
        let mut p = Prng::new(1_234_567);
        let want = [
            6_457_827_717_110_365_317,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ];
        for w in want {
            assert_eq!(p.next_u64(), w);
        }
    }

    #[test]
    fn below_and_range_stay_in_bounds_and_reach_both_ends() {
        let mut p = Prng::new(7);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = p.below(5);
            assert!(v < 5);
            seen[v as usize] = true;
            let r = p.range(10..=12);
            assert!((10..=12).contains(&r));
        }
        assert_eq!(seen, [true; 5]);
        assert_eq!(p.range(3..=3), 3);
        assert_eq!(p.below(1), 0);
        // The full range does not overflow.
        let _ = p.range(0..=u64::MAX);
    }

    #[test]
    fn interesting_values_hit_the_edges_and_fit_their_width() {
        let mut p = Prng::new(99);
        let (mut zero, mut max, mut max_less_one, mut power) = (false, false, false, false);
        for _ in 0..2000 {
            let v = p.interesting_u16();
            zero |= v == 0;
            max |= v == u16::MAX;
            max_less_one |= v == u16::MAX - 1;
            power |= v.is_power_of_two() && v > 1;
            assert!(p.interesting(5) < 32);
        }
        assert!(zero && max && max_less_one && power);
        assert!((0..200).any(|_| p.interesting_u64() == u64::MAX));
    }

    #[test]
    fn fill_bytes_fills_odd_lengths() {
        let mut p = Prng::new(5);
        let mut buf = [0u8; 13];
        p.fill_bytes(&mut buf);
        // 13 zero bytes from a good generator: 2^-104.
        assert!(buf.iter().any(|&b| b != 0));
        let mut again = [0u8; 13];
        Prng::new(5).fill_bytes(&mut again);
        assert_eq!(buf, again);
    }

    #[test]
    fn near_wraps_and_stays_within_the_spread() {
        let mut p = Prng::new(11);
        for _ in 0..100 {
            let v = p.near(1000, 3);
            assert!((997..=1003).contains(&v));
            let w = p.near(0, 1);
            assert!(w == u64::MAX || w <= 1);
        }
    }

    #[test]
    fn case_zero_is_the_run_seed_so_a_case_seed_replays_its_case() {
        let all: Vec<Case> = cases(42, 4).collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].seed, 42);
        assert_eq!(all[3].iteration, 3);
        assert!(all.iter().all(|c| c.run_seed == 42));
        // Replaying case 2 from its own seed gives the same generator.
        let replay = cases(all[2].seed, 1).next().unwrap();
        assert_eq!(replay.prng(), all[2].prng());
        assert_ne!(all[1].seed, all[2].seed);
    }

    #[test]
    fn seeds_and_counts_parse_strictly() {
        assert_eq!(parse_seed("0x1f"), Some(31));
        assert_eq!(parse_seed("0X1F"), Some(31));
        assert_eq!(parse_seed(" 17 "), Some(17));
        assert_eq!(parse_seed("0xdead_beef"), Some(0xdead_beef));
        assert_eq!(parse_seed("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "0x", "+5", "0x+5", "-1", "12a", "18446744073709551616"] {
            assert_eq!(parse_seed(bad), None, "{bad:?}");
        }
        assert_eq!(parse_iterations("250"), Some(250));
        for bad in ["0", "", "-3", "+3", "1e3", "4294967296"] {
            assert_eq!(parse_iterations(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_plan_takes_the_environment_values_or_the_defaults() {
        assert_eq!(
            Plan::new(None, None, 50),
            Ok(Plan {
                seeds: DEFAULT_SEEDS.to_vec(),
                iterations: 50
            })
        );
        assert_eq!(
            Plan::new(Some("0x10"), Some("3"), 50),
            Ok(Plan {
                seeds: std::vec![16],
                iterations: 3
            })
        );
        let e = Plan::new(Some("x"), None, 50).unwrap_err();
        assert!(e.contains("UBLK_FUZZ_SEED=\"x\""), "{e}");
        let e = Plan::new(None, Some("0"), 50).unwrap_err();
        assert!(e.contains("UBLK_FUZZ_ITERS=\"0\""), "{e}");
        let plan = Plan::new(None, Some("2"), 50).unwrap();
        assert_eq!(plan.cases().count(), 2 * DEFAULT_SEEDS.len());
    }

    #[test]
    fn a_failing_case_names_its_seed_and_how_to_replay_it() {
        let case = Case {
            run_seed: 1,
            iteration: 2,
            seed: 0xabc,
        };
        assert_eq!(
            std::format!("{case}"),
            "seed 0x1, iteration 2 (case seed 0xabc)"
        );
        let cmd = reproduce_command(&case, "x::fuzz_y");
        assert!(
            cmd.starts_with("UBLK_FUZZ_SEED=0xabc UBLK_FUZZ_ITERS=1 cargo test"),
            "{cmd}"
        );
        assert!(cmd.ends_with(" x::fuzz_y"), "{cmd}");
    }

    #[test]
    fn the_driver_runs_every_case_and_reports_a_failure_with_its_seed() {
        let mut runs = 0;
        fuzz(4, |_| runs += 1);
        let plan = Plan::from_env(4);
        assert_eq!(runs, plan.seeds.len() * plan.iterations as usize);

        // Fails on the second case of the first seed: the message names that case.
        let mut calls = 0;
        let failed = panic::catch_unwind(AssertUnwindSafe(|| {
            fuzz(4, |p| {
                calls += 1;
                assert!(calls < 2, "boom {}", p.below(10));
            })
        }));
        let payload = failed.expect_err("a failing case fails the test");
        let message = payload
            .downcast_ref::<String>()
            .expect("a formatted message");
        let case = plan.cases().nth(1).expect("two cases");
        assert!(
            message.contains(&std::format!("failed at {case}")),
            "{message}"
        );
        assert!(
            message.contains(&reproduce_command(&case, "testing::tests::")),
            "{message}"
        );
        assert!(message.contains("failure: boom "), "{message}");
    }
}
