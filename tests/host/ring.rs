//! The io_uring against the host kernel: no ublk driver needed.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ublk_core::abi::uring::{Cqe16, Cqe32, Sqe64, Sqe128};
use ublk_core::ring::Read;
use ublk_core::{Errno, FixedIo, QueueRing, Ring, RingConfig, RingError, Target};

fn nop_ring(entries: u32) -> QueueRing {
    Ring::new(entries).expect("io_uring_setup (is io_uring enabled on this host?)")
}

#[test]
fn nop_round_trip_returns_user_data_and_zero() {
    let mut ring = nop_ring(8);
    // SAFETY: a NOP points at no memory.
    unsafe { ring.push(&Sqe64::nop(0xfeed_beef)) }.unwrap();
    assert_eq!(ring.submit_and_wait(1).unwrap(), 1);
    let cqe = ring.pop().expect("one completion");
    assert_eq!(cqe.user_data, 0xfeed_beef);
    assert_eq!(cqe.res, 0);
    assert!(ring.pop().is_none());
}

#[test]
fn wide_entries_work_too() {
    let mut ring: Ring<Sqe128, Cqe32> = Ring::new(4).unwrap();
    assert_eq!(ring.sq_entries(), 4);
    for i in 0..4 {
        // SAFETY: NOPs point at no memory.
        unsafe { ring.push(&Sqe128::nop(i)) }.unwrap();
    }
    ring.submit_and_wait(4).unwrap();
    let mut seen: Vec<u64> = ring.completions().map(|c| c.user_data).collect();
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3]);
}

/// A read filling all of `buf` from `file_offset`.
fn read(file: Target, buf: &mut [u8], file_offset: u64) -> Read {
    Read {
        file,
        buf: buf.as_mut_ptr(),
        len: buf.len() as u32,
        file_offset,
        rw_flags: 0,
    }
}

fn temp_file_with(contents: &[u8]) -> (File, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "ublk-ring-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut f = File::create(&path).unwrap();
    f.write_all(contents).unwrap();
    f.sync_all().unwrap();
    (File::open(&path).unwrap(), path)
}

#[test]
fn reads_a_real_file_by_fd_and_by_registered_index() {
    let contents: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    let (file, path) = temp_file_with(&contents);
    let mut ring = nop_ring(8);

    let mut by_fd = vec![0u8; 4096];
    let sqe = Sqe64::read(read(Target::Fd(file.as_raw_fd()), &mut by_fd, 1000), 1);
    // SAFETY: `by_fd` outlives the read: we wait for its completion before touching it.
    unsafe { ring.push(&sqe) }.unwrap();
    ring.submit_and_wait(1).unwrap();
    let cqe = ring.pop().unwrap();
    assert_eq!((cqe.user_data, cqe.res), (1, 4096));
    assert_eq!(by_fd, contents[1000..5096]);

    ring.register_files(&[file.as_raw_fd()]).unwrap();
    let mut by_index = vec![0u8; 8192];
    let sqe = Sqe64::read(read(Target::Fixed(0), &mut by_index, 0), 2);
    // SAFETY: as above.
    unsafe { ring.push(&sqe) }.unwrap();
    ring.submit_and_wait(1).unwrap();
    let cqe = ring.pop().unwrap();
    assert_eq!((cqe.user_data, cqe.res), (2, 8192));
    assert_eq!(by_index, contents);

    // A short read at the end of the file reports what it got; past the end, zero.
    let mut tail = vec![0u8; 100];
    let sqe = Sqe64::read(read(Target::Fixed(0), &mut tail, 8150), 3);
    // SAFETY: as above.
    unsafe { ring.push(&sqe) }.unwrap();
    ring.submit_and_wait(1).unwrap();
    assert_eq!(ring.pop().unwrap().res, 42);
    ring.unregister_files().unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn errors_come_back_as_negative_errno() {
    let mut ring = nop_ring(4);
    let mut buf = [0u8; 16];
    // An fd that is certainly not open.
    let sqe = Sqe64::read(read(Target::Fd(987_654), &mut buf, 0), 5);
    // SAFETY: `buf` outlives the operation (we wait for it).
    unsafe { ring.push(&sqe) }.unwrap();
    ring.submit_and_wait(1).unwrap();
    let cqe = ring.pop().unwrap();
    assert_eq!(Errno::from_result(cqe.res), Err(Errno::EBADF));
}

#[test]
fn full_submission_queue_is_an_error_not_an_overwrite() {
    let mut ring = nop_ring(4);
    let entries = ring.sq_entries();
    for i in 0..entries {
        // SAFETY: NOPs point at no memory.
        unsafe { ring.push(&Sqe64::nop(u64::from(i))) }.unwrap();
    }
    assert_eq!(ring.sq_space(), 0);
    // SAFETY: as above.
    let refused = unsafe { ring.push(&Sqe64::nop(99)) };
    assert_eq!(refused, Err(RingError::SqFull));
    ring.submit_and_wait(entries).unwrap();
    let mut seen: Vec<u64> = ring.completions().map(|c| c.user_data).collect();
    seen.sort();
    // Exactly the entries pushed before the refusal: 99 never reached the kernel.
    assert_eq!(seen, (0..u64::from(entries)).collect::<Vec<_>>());
    assert_eq!(ring.sq_space(), entries);
}

#[test]
fn thousands_of_submissions_all_complete_once() {
    let mut ring = nop_ring(64);
    const TOTAL: u64 = 100_000;
    let mut next = 0u64;
    let mut seen = vec![false; TOTAL as usize];
    let mut done = 0u64;
    while done < TOTAL {
        while next < TOTAL && ring.sq_space() > 0 {
            // SAFETY: NOPs point at no memory.
            unsafe { ring.push(&Sqe64::nop(next)) }.unwrap();
            next += 1;
        }
        ring.submit_and_wait(1).unwrap();
        for cqe in ring.completions() {
            assert_eq!(cqe.res, 0);
            let slot = &mut seen[cqe.user_data as usize];
            assert!(!*slot, "completion {} delivered twice", cqe.user_data);
            *slot = true;
            done += 1;
        }
    }
    assert!(seen.iter().all(|&s| s));
    assert_eq!(ring.lost_completions(), 0);
}

#[test]
fn completion_overflow_is_detected_and_nothing_is_lost() {
    // A CQ of 4 entries and 16 completions in flight: 12 must wait in the kernel's backlog.
    let mut ring: Ring<Sqe64, Cqe16> = Ring::with_config(RingConfig {
        sq_entries: 4,
        cq_entries: Some(4),
        flags: 0,
    })
    .unwrap();
    assert_eq!(ring.cq_entries(), 4);
    for round in 0..4u64 {
        for i in 0..4 {
            // SAFETY: NOPs point at no memory.
            unsafe { ring.push(&Sqe64::nop(round * 4 + i)) }.unwrap();
        }
        ring.submit().unwrap();
    }
    assert_eq!(ring.cq_ready(), 4);
    assert!(
        ring.cq_backlogged(),
        "the kernel should report the CQ overflow"
    );

    let mut seen = Vec::new();
    while seen.len() < 16 {
        seen.extend(ring.completions().map(|c| c.user_data));
        if seen.len() < 16 {
            // Waiting flushes the backlog into the freed slots.
            ring.submit_and_wait_timeout(1, Duration::from_secs(5))
                .unwrap();
        }
    }
    seen.sort();
    assert_eq!(seen, (0..16).collect::<Vec<_>>());
    assert!(!ring.cq_backlogged());
    assert_eq!(ring.lost_completions(), 0);
}

#[test]
fn waits_are_bounded() {
    let mut ring = nop_ring(4);
    let start = Instant::now();
    // Nothing in flight: waiting for one completion can only time out.
    assert_eq!(
        ring.submit_and_wait_timeout(1, Duration::from_millis(200)),
        Err(RingError::TimedOut)
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(190),
        "returned early after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "overslept: {waited:?}");
}

#[test]
fn bad_sizes_are_typed_errors() {
    assert_eq!(
        Ring::<Sqe64, Cqe16>::new(0).err(),
        Some(RingError::Setup(Errno::EINVAL))
    );
    assert_eq!(
        Ring::<Sqe64, Cqe16>::new(1 << 20).err(),
        Some(RingError::Setup(Errno::EINVAL))
    );
}

/// The queue's stop signal: a poll on an eventfd completes once another thread writes it.
#[test]
fn poll_add_completes_when_an_eventfd_is_written() {
    // SAFETY: eventfd takes no pointers; we own the returned descriptor and close it below.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(efd >= 0);
    let mut ring = nop_ring(4);
    // SAFETY: a poll points at no memory.
    unsafe { ring.push(&Sqe64::poll_add(Target::Fd(efd), libc::POLLIN as u16, 7)) }.unwrap();
    ring.submit().unwrap();
    let pending = ring.submit_and_wait_timeout(1, Duration::from_millis(50));
    assert_eq!(pending, Err(RingError::TimedOut), "nothing written yet");
    let writer = std::thread::spawn(move || {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live array to the eventfd.
        unsafe { libc::write(efd, one.as_ptr().cast(), 8) }
    });
    assert_eq!(writer.join().unwrap(), 8);
    ring.submit_and_wait_timeout(1, Duration::from_secs(5))
        .unwrap();
    let cqe = ring.pop().unwrap();
    assert_eq!(cqe.user_data, 7);
    assert!(
        cqe.res & i32::from(libc::POLLIN) != 0,
        "POLLIN fired: {}",
        cqe.res
    );
    // SAFETY: closes the descriptor created above, used by nothing else now.
    unsafe { libc::close(efd) };
}

/// The zero-copy buffer table: registered empty, its slots reach no memory until a driver
/// fills them, so a fixed-buffer read of an empty slot fails instead of writing anywhere.
#[test]
fn a_sparse_buffer_table_has_empty_slots_only() {
    let (file, path) = temp_file_with(&[7u8; 4096]);
    let mut ring = nop_ring(8);
    ring.register_files(&[file.as_raw_fd()]).unwrap();
    ring.register_buffers_sparse(16).unwrap();
    assert_eq!(
        ring.register_buffers_sparse(16),
        Err(RingError::Register(Errno::EBUSY)),
        "one table per ring"
    );
    for (slot, user_data) in [(0u16, 1u64), (15, 2), (16, 3)] {
        let io = FixedIo {
            file: Target::Fixed(0),
            buf_index: slot,
            buf_addr: 0,
            len: 4096,
            file_offset: 0,
            rw_flags: 0,
        };
        // SAFETY: the operation names a slot of the sparse table, which holds no memory of
        // this process: the kernel refuses it.
        unsafe { ring.push(&Sqe64::read_fixed(io, user_data)) }.unwrap();
        ring.submit_and_wait(1).unwrap();
        let cqe = ring.pop().unwrap();
        assert_eq!(cqe.user_data, user_data);
        // An empty slot is EFAULT; one past the table EINVAL (kernels differ in which).
        assert!(
            cqe.res == -libc::EFAULT || cqe.res == -libc::EINVAL,
            "slot {slot}: {}",
            cqe.res
        );
    }
    let _ = std::fs::remove_file(path);
}

/// Defect 1 of issue 18: `RingConfig::flags` (and `QueueConfig::ring_flags`) are safe to set,
/// so a flag that changes the entry layout (SQE128 on a ring typed for 64-byte entries, CQE32,
/// NO_SQARRAY, NO_MMAP) or how the ring must be driven (SQPOLL, IOPOLL, a disabled ring) must
/// be refused before io_uring_setup, not set up under a ring that reads its entries wrongly.
#[test]
fn ring_flags_that_change_the_entry_layout_are_refused() {
    use ublk_core::abi::uring::*;
    let refused = [
        IORING_SETUP_SQE128,
        IORING_SETUP_CQE32,
        IORING_SETUP_NO_SQARRAY,
        IORING_SETUP_NO_MMAP,
        IORING_SETUP_REGISTERED_FD_ONLY,
        1 << 18, // IORING_SETUP_CQE_MIXED
        1 << 19, // IORING_SETUP_SQE_MIXED
        IORING_SETUP_SQPOLL,
        IORING_SETUP_IOPOLL,
        IORING_SETUP_CQSIZE, // set through cq_entries
        1 << 6,              // IORING_SETUP_R_DISABLED
        1 << 31,             // no flag yet
    ];
    for flag in refused {
        let config = RingConfig {
            flags: IORING_SETUP_COOP_TASKRUN | flag,
            ..RingConfig::new(4)
        };
        match QueueRing::with_config(config) {
            Err(RingError::UnsupportedFlags(bits)) => assert_eq!(bits, flag, "{flag:#x}"),
            Err(e) => panic!("flag {flag:#x}: {e}, not UnsupportedFlags"),
            Ok(ring) => panic!(
                "flag {flag:#x} was accepted: the ring was set up with {:#x}",
                ring.setup_flags()
            ),
        }
    }
    // On the wide ring its own entry sizes are fine, and so is every flag that keeps the
    // layout; what the kernel echoes is what was asked.
    let keeps = IORING_SETUP_COOP_TASKRUN
        | IORING_SETUP_SINGLE_ISSUER
        | IORING_SETUP_DEFER_TASKRUN
        | IORING_SETUP_CLAMP
        | IORING_SETUP_SUBMIT_ALL;
    let mut ring: Ring<Sqe128, Cqe32> = Ring::with_config(RingConfig {
        flags: keeps | IORING_SETUP_SQE128 | IORING_SETUP_CQE32,
        ..RingConfig::new(4)
    })
    .unwrap();
    assert_eq!(
        ring.setup_flags() & !(IORING_SETUP_SQE128 | IORING_SETUP_CQE32),
        keeps
    );
    // SAFETY: a NOP points at no memory.
    unsafe { ring.push(&Sqe128::nop(3)) }.unwrap();
    ring.submit_and_wait(1).unwrap();
    assert_eq!(ring.pop().map(|c| (c.user_data, c.res)), Some((3, 0)));
}
