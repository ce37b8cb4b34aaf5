//! One of the library's own targets, chosen at run time: what a program that serves whichever
//! target its user names (the `ublk` command) starts a device with, so that the device and
//! queue code is built once for all of them rather than once per target.

use std::io;

use ublk_core::DataPath;

use super::{IoContext, Loop, Mem, Nbd, Null, Properties, QueueInfo, Reply, Request, Target};
use super::{LoopQueue, MemQueue, NbdQueue, NullQueue, TargetQueue};

/// A [`Null`], [`Mem`], [`Loop`] or [`Nbd`] target, served as that target is.
#[derive(Debug)]
pub enum Builtin {
    /// A null device.
    Null(Null),
    /// A RAM disk.
    Mem(Mem),
    /// A file or block device.
    Loop(Loop),
    /// An NBD export.
    Nbd(Nbd),
}

/// A queue of a [`Builtin`] target.
#[derive(Debug)]
pub enum BuiltinQueue {
    /// A [`Null`] queue.
    Null(NullQueue),
    /// A [`Mem`] queue.
    Mem(MemQueue),
    /// A [`Loop`] queue.
    Loop(LoopQueue),
    /// An [`Nbd`] queue (boxed: a connection's state is larger than the others' queues).
    Nbd(Box<NbdQueue>),
}

impl From<Null> for Builtin {
    fn from(t: Null) -> Builtin {
        Builtin::Null(t)
    }
}

impl From<Mem> for Builtin {
    fn from(t: Mem) -> Builtin {
        Builtin::Mem(t)
    }
}

impl From<Loop> for Builtin {
    fn from(t: Loop) -> Builtin {
        Builtin::Loop(t)
    }
}

impl From<Nbd> for Builtin {
    fn from(t: Nbd) -> Builtin {
        Builtin::Nbd(t)
    }
}

impl Target for Builtin {
    type Queue = BuiltinQueue;

    fn open_queue(&self, queue: &QueueInfo) -> io::Result<BuiltinQueue> {
        Ok(match self {
            Builtin::Null(t) => BuiltinQueue::Null(t.open_queue(queue)?),
            Builtin::Mem(t) => BuiltinQueue::Mem(t.open_queue(queue)?),
            Builtin::Loop(t) => BuiltinQueue::Loop(t.open_queue(queue)?),
            Builtin::Nbd(t) => BuiltinQueue::Nbd(Box::new(t.open_queue(queue)?)),
        })
    }

    fn files(&self) -> Vec<std::os::fd::RawFd> {
        match self {
            Builtin::Null(t) => t.files(),
            Builtin::Mem(t) => t.files(),
            Builtin::Loop(t) => t.files(),
            Builtin::Nbd(t) => t.files(),
        }
    }

    fn properties(&self) -> Properties {
        match self {
            Builtin::Null(t) => t.properties(),
            Builtin::Mem(t) => t.properties(),
            Builtin::Loop(t) => t.properties(),
            Builtin::Nbd(t) => t.properties(),
        }
    }

    fn data_paths(&self) -> &'static [DataPath] {
        match self {
            Builtin::Null(t) => t.data_paths(),
            Builtin::Mem(t) => t.data_paths(),
            Builtin::Loop(t) => t.data_paths(),
            Builtin::Nbd(t) => t.data_paths(),
        }
    }

    fn wants_buffers(&self, path: DataPath) -> bool {
        match self {
            Builtin::Null(t) => t.wants_buffers(path),
            Builtin::Mem(t) => t.wants_buffers(path),
            Builtin::Loop(t) => t.wants_buffers(path),
            Builtin::Nbd(t) => t.wants_buffers(path),
        }
    }
}

impl TargetQueue for BuiltinQueue {
    fn serve(&mut self, req: &Request, io: &mut IoContext<'_, '_>) -> Reply {
        match self {
            BuiltinQueue::Null(q) => q.serve(req, io),
            BuiltinQueue::Mem(q) => q.serve(req, io),
            BuiltinQueue::Loop(q) => q.serve(req, io),
            BuiltinQueue::Nbd(q) => q.serve(req, io),
        }
    }

    fn op_done(&mut self, tag: u16, cookie: u32, result: i32, io: &mut IoContext<'_, '_>) {
        match self {
            BuiltinQueue::Null(q) => q.op_done(tag, cookie, result, io),
            BuiltinQueue::Mem(q) => q.op_done(tag, cookie, result, io),
            BuiltinQueue::Loop(q) => q.op_done(tag, cookie, result, io),
            BuiltinQueue::Nbd(q) => q.op_done(tag, cookie, result, io),
        }
    }
}
