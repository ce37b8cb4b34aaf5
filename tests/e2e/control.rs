//! Control commands against the real driver: features, ADD/DEL, info, params, errors, timeouts.

use std::time::{Duration, Instant};

use ublk::sys::abi::params::{UblkParamBasic, UblkParamDiscard};
use ublk::sys::{Errno, OpEncoding, UblksrvCtrlDevInfo};
use ublk::{Attrs, Controller, DevState, Error, Features, NewDevice, ParamTypes, UblkParams};
use ublk_tests::{
    kernel_version, possible_cpus, sysfs_dev_numbers, ublk_char_device_ids, wait_for_path,
};

use crate::harness::{Test, TestResult, skip};

const NODE_WAIT: Duration = Duration::from_secs(5);

/// The tests of this file, in the order they run.
pub const TESTS: &[Test] = &[
    Test {
        name: "control::features_match_the_kernel_version",
        needs: Features::empty(),
        run: features_match_the_kernel_version,
    },
    Test {
        name: "control::add_dev_with_chosen_id",
        needs: Features::empty(),
        run: add_dev_with_chosen_id,
    },
    Test {
        name: "control::add_dev_with_auto_id",
        needs: Features::empty(),
        run: add_dev_with_auto_id,
    },
    Test {
        name: "control::dev_info_round_trip",
        needs: Features::empty(),
        run: dev_info_round_trip,
    },
    Test {
        name: "control::params_round_trip_basic_and_discard",
        needs: Features::empty(),
        run: params_round_trip_basic_and_discard,
    },
    Test {
        name: "control::rejected_params_give_a_clear_error",
        needs: Features::empty(),
        run: rejected_params_give_a_clear_error,
    },
    Test {
        name: "control::del_dev_removes_the_device",
        needs: Features::empty(),
        run: del_dev_removes_the_device,
    },
    Test {
        name: "control::del_dev_async_removes_the_device",
        needs: Features::empty(),
        run: del_dev_async_removes_the_device,
    },
    Test {
        name: "control::sixteen_devices_added_and_deleted",
        needs: Features::empty(),
        run: sixteen_devices_added_and_deleted,
    },
    Test {
        name: "control::queue_affinity_covers_every_cpu_once",
        needs: Features::empty(),
        run: queue_affinity_covers_every_cpu_once,
    },
    Test {
        name: "control::unknown_device_is_enodev_for_every_command",
        needs: Features::empty(),
        run: unknown_device_is_enodev_for_every_command,
    },
    Test {
        name: "control::invalid_spec_is_refused_before_the_kernel",
        needs: Features::empty(),
        run: invalid_spec_is_refused_before_the_kernel,
    },
    Test {
        name: "control::kernel_rejected_add_dev_names_the_command",
        needs: Features::empty(),
        run: kernel_rejected_add_dev_names_the_command,
    },
    Test {
        name: "control::recovery_commands_refused_without_recovery",
        needs: Features::empty(),
        run: recovery_commands_refused_without_recovery,
    },
    Test {
        name: "control::update_size_needs_a_started_device",
        needs: Features::UPDATE_SIZE,
        run: update_size_needs_a_started_device,
    },
    Test {
        name: "control::try_stop_needs_a_started_device",
        needs: Features::SAFE_STOP_DEV,
        run: try_stop_needs_a_started_device,
    },
    Test {
        name: "control::quiesce_refused_without_the_flag",
        needs: Features::QUIESCE,
        run: quiesce_refused_without_the_flag,
    },
    Test {
        name: "control::legacy_opcodes_work_where_the_kernel_has_them",
        needs: Features::empty(),
        run: legacy_opcodes_work_where_the_kernel_has_them,
    },
    Test {
        name: "control::start_dev_without_queues_times_out",
        needs: Features::empty(),
        run: start_dev_without_queues_times_out,
    },
];

fn ctl() -> Controller {
    Controller::open().expect("open /dev/ublk-control")
}

fn small(id: Option<u32>) -> NewDevice {
    NewDevice {
        id,
        queues: 1,
        queue_depth: 32,
        max_io_bytes: 256 << 10,
        flags: Features::empty(),
    }
}

/// Basic params for a 64 MiB device with 512-byte logical and 4 KiB physical blocks.
fn basic_params() -> UblkParamBasic {
    UblkParamBasic {
        attrs: Attrs::VOLATILE_CACHE | Attrs::FUA,
        logical_bs_shift: 9,
        physical_bs_shift: 12,
        io_opt_shift: 12,
        io_min_shift: 9,
        max_sectors: (256 << 10) >> 9,
        chunk_sectors: 0,
        dev_sectors: (64 << 20) >> 9,
        virt_boundary_mask: 0,
    }
}

fn expect_errno<T: std::fmt::Debug>(result: Result<T, Error>, errno: Errno) -> Error {
    let err = result.expect_err("the kernel should refuse this");
    assert_eq!(err.errno(), Some(errno), "wrong error: {err}");
    err
}

/// Features and the first kernel that reports them, where that is known with certainty.
const INTRODUCED: &[(Features, (u32, u32))] = &[
    (Features::URING_CMD_COMP_IN_TASK, (6, 0)),
    (Features::NEED_GET_DATA, (6, 0)),
    (Features::USER_RECOVERY, (6, 0)),
    (Features::USER_RECOVERY_REISSUE, (6, 1)),
    (Features::UNPRIVILEGED_DEV, (6, 2)),
    (Features::CMD_IOCTL_ENCODE, (6, 4)),
    (Features::USER_COPY, (6, 5)),
    (Features::ZONED, (6, 6)),
    (Features::USER_RECOVERY_FAIL_IO, (6, 13)),
    (Features::SUPPORT_ZERO_COPY, (6, 15)),
    (Features::PER_IO_DAEMON, (6, 16)),
    (Features::BUF_REG_OFF_DAEMON, (6, 17)),
    (Features::NO_AUTO_PART_SCAN, (7, 0)),
    (Features::SHMEM_ZC, (7, 1)),
];

fn features_match_the_kernel_version() -> TestResult {
    let features = ctl().features()?;
    println!("    kernel features: {features}");
    assert_eq!(
        features.unknown_bits(),
        0,
        "the kernel reports bits this build cannot name: add them to abi/features.rs"
    );
    let version = kernel_version().expect("kernel version");
    for &(feature, since) in INTRODUCED {
        assert_eq!(
            features.contains(feature),
            version >= since,
            "{feature}: added in {}.{}, running {}.{}",
            since.0,
            since.1,
            version.0,
            version.1
        );
    }
    // A device asking for nothing is granted a subset of the driver's features.
    let mut ctl = ctl();
    let dev = ctl.add(&small(None))?;
    let granted = dev.flags();
    ctl.delete(dev.id())?;
    assert!(
        features.contains(granted),
        "granted {granted}, but the driver supports only {features}"
    );
    assert!(granted.contains(Features::CMD_IOCTL_ENCODE));
    Ok(())
}

fn add_dev_with_chosen_id() -> TestResult {
    let mut ctl = ctl();
    let dev = ctl.add(&small(Some(7)))?;
    assert_eq!(dev.id(), 7);
    assert_eq!(dev.state(), Ok(DevState::Dead));
    assert_eq!(dev.server_pid(), None);
    assert!(
        wait_for_path("/dev/ublkc7", true, NODE_WAIT),
        "/dev/ublkc7 did not appear"
    );
    assert!(
        !std::path::Path::new("/dev/ublkb7").exists(),
        "no block device before START_DEV"
    );

    let err = expect_errno(ctl.add(&small(Some(7))), Errno::EEXIST);
    assert_eq!(
        err.to_string(),
        "ADD_DEV for device 7: EEXIST (device id in use)"
    );

    ctl.delete(7)?;
    assert!(wait_for_path("/dev/ublkc7", false, NODE_WAIT));
    Ok(())
}

fn add_dev_with_auto_id() -> TestResult {
    let mut ctl = ctl();
    let a = ctl.add(&small(None))?;
    let b = ctl.add(&small(None))?;
    assert_ne!(a.id(), b.id());
    for dev in [&a, &b] {
        assert!(
            wait_for_path(dev.char_dev_path(), true, NODE_WAIT),
            "{} missing",
            dev.char_dev_path().display()
        );
    }
    assert_eq!(ublk_char_device_ids(), {
        let mut ids = vec![a.id(), b.id()];
        ids.sort();
        ids
    });
    ctl.delete(a.id())?;
    ctl.delete(b.id())?;
    Ok(())
}

fn dev_info_round_trip() -> TestResult {
    let mut ctl = ctl();
    let cpus = possible_cpus().len() as u16;
    let asked = UblksrvCtrlDevInfo {
        nr_hw_queues: 4,
        queue_depth: 64,
        // Not a page multiple: the driver rounds it down.
        max_io_buf_bytes: (1 << 20) + 100,
        ublksrv_flags: 0x5eed_cafe,
        ..Default::default()
    };
    let driver = ctl.features()?;
    let added = ctl.control().add_dev(None, &asked)?;
    let id = added.dev_id;
    assert_eq!(
        added.nr_hw_queues,
        4.min(cpus),
        "queues are clamped to the CPU count"
    );
    assert_eq!(added.queue_depth, 64);
    assert_eq!(added.max_io_buf_bytes, 1 << 20);
    assert_eq!(
        added.ublksrv_flags, 0x5eed_cafe,
        "ublksrv_flags is the server's own"
    );
    // Kernels before IO_DESC_SIZE leave the field as sent (0): the size is then always 24.
    let expected_desc_size = if driver.contains(Features::IO_DESC_SIZE) {
        24
    } else {
        0
    };
    assert_eq!(added.io_desc_size, expected_desc_size);
    assert_eq!(ublk::DeviceInfo::from(added).io_desc_size(), 24);
    // No server yet: 7.x resets the pid to -1, 6.12 echoes what was sent (0).
    assert!(added.ublksrv_pid <= 0, "pid {}", added.ublksrv_pid);
    assert_eq!(ublk::DeviceInfo::from(added).server_pid(), None);
    assert_eq!(
        (added.owner_uid, added.owner_gid),
        (0, 0),
        "created by root"
    );

    assert!(wait_for_path(format!("/dev/ublkc{id}"), true, NODE_WAIT));
    let info = ctl.control().get_dev_info(id)?;
    let info2 = ctl.control().get_dev_info2(id)?;
    assert_eq!(
        info, added,
        "GET_DEV_INFO differs from what ADD_DEV returned"
    );
    assert_eq!(
        info2, added,
        "GET_DEV_INFO2 differs from what ADD_DEV returned"
    );
    ctl.delete(id)?;
    Ok(())
}

fn params_round_trip_basic_and_discard() -> TestResult {
    let mut ctl = ctl();
    let dev = ctl.add(&small(None))?;
    let discard = UblkParamDiscard {
        discard_alignment: 0,
        discard_granularity: 4096,
        max_discard_sectors: 2048,
        max_write_zeroes_sectors: 1024,
        max_discard_segments: 1,
        reserved0: 0,
    };
    let params = UblkParams::new()
        .with_basic(basic_params())
        .with_discard(discard);
    ctl.set_params(dev.id(), &params)?;

    let back = ctl.params(dev.id())?;
    assert_eq!(back.len, UblkParams::SIZE);
    assert_eq!(back.basic, params.basic);
    assert_eq!(back.discard, params.discard);
    assert_eq!(
        back.types,
        ParamTypes::BASIC | ParamTypes::DISCARD | ParamTypes::DEVT
    );
    let sysfs = format!("/sys/class/ublk-char/ublkc{}/dev", dev.id());
    let (major, minor) = sysfs_dev_numbers(&sysfs).expect("char device numbers in sysfs");
    assert_eq!((back.devt.char_major, back.devt.char_minor), (major, minor));
    assert_eq!(
        (back.devt.disk_major, back.devt.disk_minor),
        (0, 0),
        "no disk before START_DEV"
    );
    ctl.delete(dev.id())?;
    Ok(())
}

fn rejected_params_give_a_clear_error() -> TestResult {
    let mut ctl = ctl();
    let dev = ctl.add(&small(None))?;
    let id = dev.id();
    let message =
        format!("SET_PARAMS for device {id}: EINVAL (the kernel rejected the parameters)");

    // Logical blocks of 256 bytes: below the 512-byte minimum.
    let tiny_blocks = UblkParams::new().with_basic(UblkParamBasic {
        logical_bs_shift: 8,
        ..basic_params()
    });
    assert_eq!(
        expect_errno(ctl.set_params(id, &tiny_blocks), Errno::EINVAL).to_string(),
        message
    );
    // Requests larger than the I/O buffers ADD_DEV granted.
    let too_large = UblkParams::new().with_basic(UblkParamBasic {
        max_sectors: (1 << 20) >> 9,
        ..basic_params()
    });
    expect_errno(ctl.set_params(id, &too_large), Errno::EINVAL);
    // Discard without granularity.
    let no_granularity = UblkParams::new()
        .with_basic(basic_params())
        .with_discard(UblkParamDiscard::default());
    expect_errno(ctl.set_params(id, &no_granularity), Errno::EINVAL);
    // Nothing at all.
    expect_errno(ctl.set_params(id, &UblkParams::new()), Errno::EINVAL);

    // A rejected set leaves no parameters behind.
    let back = ctl.params(id)?;
    assert_eq!(
        back.types,
        ParamTypes::DEVT,
        "rejected parameters must not stick"
    );
    ctl.delete(id)?;
    Ok(())
}

fn del_dev_removes_the_device() -> TestResult {
    let mut ctl = ctl();
    let dev = ctl.add(&small(None))?;
    let id = dev.id();
    assert!(wait_for_path(dev.char_dev_path(), true, NODE_WAIT));
    ctl.delete(id)?;
    assert!(
        wait_for_path(dev.char_dev_path(), false, NODE_WAIT),
        "char device still there"
    );
    assert!(!std::path::Path::new(&format!("/sys/class/ublk-char/ublkc{id}")).exists());
    let err = expect_errno(ctl.info(id), Errno::ENODEV);
    assert_eq!(
        err.to_string(),
        format!("GET_DEV_INFO for device {id}: ENODEV (no such device)")
    );
    expect_errno(ctl.delete(id), Errno::ENODEV);
    // The id is free again at once: DEL_DEV waits for that.
    let again = ctl.add(&small(Some(id)))?;
    ctl.delete(again.id())?;
    Ok(())
}

fn del_dev_async_removes_the_device() -> TestResult {
    let mut ctl = ctl();
    let dev = ctl.add(&small(None))?;
    ctl.delete_async(dev.id())?;
    assert!(wait_for_path(dev.char_dev_path(), false, NODE_WAIT));
    expect_errno(ctl.info(dev.id()), Errno::ENODEV);
    Ok(())
}

fn sixteen_devices_added_and_deleted() -> TestResult {
    let mut ctl = ctl();
    let mut ids = Vec::new();
    for _ in 0..16 {
        ids.push(ctl.add(&small(None))?.id());
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 16, "ids must be distinct: {ids:?}");
    for id in &ids {
        assert!(
            wait_for_path(format!("/dev/ublkc{id}"), true, NODE_WAIT),
            "/dev/ublkc{id} missing"
        );
    }
    assert_eq!(ublk_char_device_ids(), unique);
    for id in &ids {
        ctl.delete(*id)?;
    }
    for id in &ids {
        assert!(
            wait_for_path(format!("/dev/ublkc{id}"), false, NODE_WAIT),
            "/dev/ublkc{id} left"
        );
    }
    let left: Vec<_> = std::fs::read_dir("/dev")
        .expect("/dev")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ublkc"))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in /dev: {left:?}");
    assert!(ublk_char_device_ids().is_empty());
    Ok(())
}

fn queue_affinity_covers_every_cpu_once() -> TestResult {
    let mut ctl = ctl();
    let cpus = possible_cpus();
    let dev = ctl.add(&NewDevice {
        queues: cpus.len() as u16,
        ..small(None)
    })?;
    let mut seen = Vec::new();
    for q in 0..dev.queues() {
        let mask = ctl.queue_affinity(dev.id(), q)?;
        assert!(!mask.is_empty(), "queue {q} serves no CPU");
        seen.extend(mask);
    }
    seen.sort();
    assert_eq!(seen, cpus, "every possible CPU maps to exactly one queue");
    let err = expect_errno(ctl.queue_affinity(dev.id(), dev.queues()), Errno::EINVAL);
    assert!(err.to_string().ends_with("EINVAL (no such queue)"), "{err}");
    ctl.delete(dev.id())?;
    Ok(())
}

fn unknown_device_is_enodev_for_every_command() -> TestResult {
    let mut ctl = ctl();
    let id = 999_999;
    let params = UblkParams::new().with_basic(basic_params());
    expect_errno(ctl.info(id), Errno::ENODEV);
    expect_errno(ctl.params(id), Errno::ENODEV);
    expect_errno(ctl.set_params(id, &params), Errno::ENODEV);
    expect_errno(ctl.start(id, std::process::id() as i32), Errno::ENODEV);
    expect_errno(ctl.stop(id), Errno::ENODEV);
    expect_errno(ctl.delete(id), Errno::ENODEV);
    expect_errno(ctl.delete_async(id), Errno::ENODEV);
    expect_errno(ctl.queue_affinity(id, 0), Errno::ENODEV);
    let err = expect_errno(ctl.start_user_recovery(id), Errno::ENODEV);
    assert_eq!(
        err.to_string(),
        "START_USER_RECOVERY for device 999999: ENODEV (no such device)"
    );
    Ok(())
}

fn invalid_spec_is_refused_before_the_kernel() -> TestResult {
    let mut ctl = ctl();
    let before = ublk_char_device_ids();
    for bad in [
        NewDevice {
            queue_depth: 0,
            ..small(None)
        },
        NewDevice {
            queues: 0,
            ..small(None)
        },
        NewDevice {
            max_io_bytes: 512,
            ..small(None)
        },
        NewDevice {
            flags: Features::USER_RECOVERY_FAIL_IO,
            ..small(None)
        },
    ] {
        let err = ctl.add(&bad).expect_err("invalid spec accepted");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    }
    assert_eq!(ublk_char_device_ids(), before, "no device may be created");
    Ok(())
}

fn kernel_rejected_add_dev_names_the_command() -> TestResult {
    let mut ctl = ctl();
    // Zoned devices need user copy: the kernel refuses, not our validation.
    let zoned = UblksrvCtrlDevInfo {
        nr_hw_queues: 1,
        queue_depth: 8,
        max_io_buf_bytes: 64 << 10,
        flags: Features::ZONED,
        ..Default::default()
    };
    let err = ctl
        .control()
        .add_dev(None, &zoned)
        .expect_err("ZONED without USER_COPY must fail");
    assert_eq!(err.errno(), Some(Errno::EINVAL));
    assert_eq!(
        err.to_string(),
        "ADD_DEV: EINVAL (the kernel rejected the device settings (queues, depth, id or flags))"
    );
    assert!(ublk_char_device_ids().is_empty());
    Ok(())
}

fn recovery_commands_refused_without_recovery() -> TestResult {
    let mut ctl = ctl();
    let dev = ctl.add(&small(None))?;
    // Without USER_RECOVERY the device cannot be recovered at all.
    expect_errno(ctl.start_user_recovery(dev.id()), Errno::EINVAL);
    ctl.delete(dev.id())?;
    Ok(())
}

fn update_size_needs_a_started_device() -> TestResult {
    let mut ctl = ctl();
    let dev = ctl.add(&small(None))?;
    let err = expect_errno(ctl.update_size(dev.id(), 1 << 20), Errno::ENODEV);
    assert_eq!(
        err.to_string(),
        format!(
            "UPDATE_SIZE for device {}: ENODEV (device not started)",
            dev.id()
        )
    );
    ctl.delete(dev.id())?;
    Ok(())
}

fn try_stop_needs_a_started_device() -> TestResult {
    let mut ctl = ctl();
    let dev = ctl.add(&small(None))?;
    expect_errno(ctl.try_stop(dev.id()), Errno::ENODEV);
    ctl.delete(dev.id())?;
    Ok(())
}

fn quiesce_refused_without_the_flag() -> TestResult {
    let mut ctl = ctl();
    let dev = ctl.add(&small(None))?;
    let err = expect_errno(
        ctl.quiesce(dev.id(), Duration::from_secs(1)),
        Errno::EOPNOTSUPP,
    );
    assert!(
        err.to_string()
            .ends_with("(the device was created without QUIESCE)"),
        "{err}"
    );
    ctl.delete(dev.id())?;
    Ok(())
}

fn start_dev_without_queues_times_out() -> TestResult {
    let mut ctl = ctl();
    let dev = ctl.add(&small(None))?;
    let id = dev.id();
    ctl.set_params(id, &UblkParams::new().with_basic(basic_params()))?;
    // No queue ever fetches: the driver waits for them, and only our timeout ends the wait.
    ctl.set_timeout(Duration::from_secs(2));
    let t0 = Instant::now();
    let err = ctl
        .start(id, std::process::id() as i32)
        .expect_err("START_DEV cannot complete");
    let waited = t0.elapsed();
    assert!(matches!(&err, Error::Command(e) if e.is_timeout()), "{err}");
    // The timed-out START_DEV was cancelled, so it no longer pins the device...
    assert_eq!(
        err.to_string(),
        format!("START_DEV for device {id}: no answer within 2.000s (cancelled)")
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "waited {waited:?}"
    );
    // ...and the same controller goes on working: the device is still there, and deletes.
    assert_eq!(ctl.info(id)?.state(), Ok(DevState::Dead));
    ctl.set_timeout(Duration::from_secs(20));
    ctl.delete(id)?;
    assert!(wait_for_path(format!("/dev/ublkc{id}"), false, NODE_WAIT));
    Ok(())
}

fn legacy_opcodes_work_where_the_kernel_has_them() -> TestResult {
    let mut ctl = ctl();
    ctl.control().set_encoding(OpEncoding::Legacy);
    let info = UblksrvCtrlDevInfo {
        nr_hw_queues: 1,
        queue_depth: 16,
        max_io_buf_bytes: 64 << 10,
        ..Default::default()
    };
    let added = match ctl.control().add_dev(None, &info) {
        Err(e) if e.errno() == Some(Errno::EOPNOTSUPP) => {
            return skip("kernel built without CONFIG_BLKDEV_UBLK_LEGACY_OPCODES");
        }
        other => other?,
    };
    assert_eq!(ctl.control().get_dev_info(added.dev_id)?, added);
    ctl.control().del_dev(added.dev_id)?;
    expect_errno(ctl.info(added.dev_id), Errno::ENODEV);
    Ok(())
}
