//! Building timer SQEs: `IORING_OP_TIMEOUT`, a wake-up after a while on the ring itself.

use super::prep::Target;
use crate::abi::uring::{IORING_OP_TIMEOUT, KernelTimespec, Sqe, SqeLayout};

impl<const CMD: usize> Sqe<CMD>
where
    Sqe<CMD>: SqeLayout,
{
    /// `IORING_OP_TIMEOUT`, relative: completes with `-ETIME` once the time in `*ts` has
    /// passed (or `-ECANCELED` if cancelled). Counts no completions: a pure timer.
    pub fn timeout(ts: *const KernelTimespec, user_data: u64) -> Self {
        let mut sqe = Self::base(IORING_OP_TIMEOUT, None::<Target>, user_data);
        sqe.addr = ts as u64;
        sqe.len = 1;
        sqe
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::uring::Sqe64;

    #[test]
    fn a_timeout_points_at_one_timespec_and_counts_nothing() {
        let ts = KernelTimespec {
            tv_sec: 1,
            tv_nsec: 5,
        };
        let sqe = Sqe64::timeout(&ts, 3);
        assert_eq!(
            (sqe.opcode, sqe.fd, sqe.user_data),
            (IORING_OP_TIMEOUT, -1, 3)
        );
        assert_eq!((sqe.addr, sqe.len, sqe.off), (&ts as *const _ as u64, 1, 0));
    }
}
