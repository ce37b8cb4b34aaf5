//! Waiting for what the kernel or another process does in its own time (a device node to
//! appear, a server to exit, the driver to settle a device's state), none of which sends a
//! notification this crate could wait on: by asking again at an interval until a deadline.

use std::time::{Duration, Instant};

/// Asks `probe` until it answers `Some` or `deadline` passes, sleeping `every` in between:
/// its answer, or `None` if it had none by then. `probe` is asked at least once, and once
/// more when the deadline comes, so that a change during the last sleep is not missed.
pub fn poll_until<T>(
    deadline: Instant,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    loop {
        if let Some(answer) = probe() {
            return Some(answer);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(every.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(1);

    #[test]
    fn the_first_answer_is_returned() {
        let mut asked = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let answer = poll_until(deadline, TICK, || {
            asked += 1;
            (asked == 3).then_some(asked * 10)
        });
        assert_eq!((answer, asked), (Some(30), 3));
    }

    #[test]
    fn a_passed_deadline_still_asks_once() {
        let mut asked = 0;
        let answer = poll_until(Instant::now(), Duration::from_secs(60), || {
            asked += 1;
            Some("yes")
        });
        assert_eq!((answer, asked), (Some("yes"), 1));
        let answer: Option<()> = poll_until(Instant::now(), Duration::from_secs(60), || None);
        assert_eq!(answer, None);
    }

    #[test]
    fn no_answer_is_none_after_the_deadline_and_a_last_question() {
        let start = Instant::now();
        let deadline = start + Duration::from_millis(30);
        let mut last = start;
        let answer: Option<()> = poll_until(deadline, Duration::from_secs(60), || {
            last = Instant::now();
            None
        });
        assert_eq!(answer, None);
        // The sleep is cut to the deadline (not 60 s), and the probe is asked at or after it.
        assert!(
            last >= deadline,
            "the last question came before the deadline"
        );
        assert!(start.elapsed() < Duration::from_secs(30));
    }
}
