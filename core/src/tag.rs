//! The per-tag state machine.
//!
//! Every tag (request slot) of a queue is, at any moment, either with the kernel (a FETCH_REQ,
//! COMMIT_AND_FETCH_REQ or NEED_GET_DATA is outstanding) or with the server (a request arrived
//! and is being served). Getting this wrong is how a server corrupts data: committing a tag
//! twice answers a request the kernel has already reused for another I/O.
//!
//! ```text
//!            fetch                request                complete
//!   Idle ────────────▶ Fetching ───────────▶ Owned ─────────────────▶ Committing
//!                        │  ▲                 ▲  ▲                      │   │
//!                        │  └─────────────────┼──┼──────── request ─────┘   │
//!                        │   need data        │  │ data                     │
//!                        └──────────▶ GettingData ◀──────── need data ──────┘
//!   Fetching, Committing, GettingData ── abort ──▶ Aborted (the device is going away)
//! ```
//!
//! States live in atomics in memory the caller provides ([`TagSlot`]s, one per tag), so the
//! table needs no allocation and can be observed from other threads without a lock. Each
//! transition is a compare-and-swap from the state the event expects; an event that does not
//! fit the current state is rejected, leaves the state unchanged and is counted. When the
//! server caused it (answering a request twice) debug builds also assert, so tests catch it;
//! when the kernel did (a completion for a tag that has nothing outstanding) it is only
//! counted. It is never undefined behaviour.
//!
//! Only this crate's [`Queue`](crate::Queue) moves tags: its buffer hand-out relies on the
//! states being true, so outside code can read them but not change them.

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Where a tag is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TagState {
    /// Not handed to the kernel yet (or never again).
    Idle = 0,
    /// A FETCH_REQ is outstanding: the next completion of this tag brings a request.
    Fetching = 1,
    /// The server owns a request and its buffer; the kernel does not touch either.
    Owned = 2,
    /// A COMMIT_AND_FETCH_REQ is outstanding: the result was handed back, and the same command
    /// waits for the next request.
    Committing = 3,
    /// A NEED_GET_DATA is outstanding: the kernel is copying a write's data into the buffer.
    GettingData = 4,
    /// The kernel ended the tag (`UBLK_IO_RES_ABORT` or a refused command): it is not fetched
    /// again by this queue.
    Aborted = 5,
}

impl TagState {
    const ALL: [TagState; 6] = [
        TagState::Idle,
        TagState::Fetching,
        TagState::Owned,
        TagState::Committing,
        TagState::GettingData,
        TagState::Aborted,
    ];

    fn from_u8(v: u8) -> TagState {
        // Only this module stores into a slot, and only `TagState as u8` values.
        Self::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(TagState::Aborted)
    }

    /// The state's name, for messages.
    pub const fn name(self) -> &'static str {
        match self {
            TagState::Idle => "idle",
            TagState::Fetching => "fetching",
            TagState::Owned => "owned",
            TagState::Committing => "committing",
            TagState::GettingData => "getting-data",
            TagState::Aborted => "aborted",
        }
    }

    /// True while a command of this tag is with the kernel.
    pub const fn with_kernel(self) -> bool {
        matches!(
            self,
            TagState::Fetching | TagState::Committing | TagState::GettingData
        )
    }
}

impl fmt::Display for TagState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened to a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TagEvent {
    /// The server issued FETCH_REQ.
    Fetch,
    /// A completion delivered a request (or NEED_GET_DATA finished copying).
    Request,
    /// A completion asked for the write's buffer (`UBLK_IO_RES_NEED_GET_DATA`); the server
    /// issues NEED_GET_DATA.
    NeedData,
    /// The server answered the request with COMMIT_AND_FETCH_REQ.
    Complete,
    /// The kernel aborted or refused the outstanding command.
    Abort,
}

impl TagEvent {
    /// The event's name, for messages.
    pub const fn name(self) -> &'static str {
        match self {
            TagEvent::Fetch => "fetch",
            TagEvent::Request => "request",
            TagEvent::NeedData => "need-data",
            TagEvent::Complete => "complete",
            TagEvent::Abort => "abort",
        }
    }
}

/// The transition function: the state `event` leads to from `from`, or `None` if the event is
/// not allowed there.
pub const fn next_state(from: TagState, event: TagEvent) -> Option<TagState> {
    use TagEvent as E;
    use TagState as S;
    match (from, event) {
        (S::Idle, E::Fetch) => Some(S::Fetching),
        (S::Fetching | S::Committing | S::GettingData, E::Request) => Some(S::Owned),
        (S::Fetching | S::Committing, E::NeedData) => Some(S::GettingData),
        (S::Owned, E::Complete) => Some(S::Committing),
        (S::Fetching | S::Committing | S::GettingData, E::Abort) => Some(S::Aborted),
        _ => None,
    }
}

/// One tag's state word. Make an array of them with [`TagSlot::NEW`] and lend it to a
/// [`TagTable`].
#[derive(Debug)]
#[repr(transparent)]
pub struct TagSlot(AtomicU8);

impl TagSlot {
    /// A slot in state [`TagState::Idle`].
    #[allow(clippy::declare_interior_mutable_const)] // meant to be copied into arrays
    pub const NEW: TagSlot = TagSlot(AtomicU8::new(TagState::Idle as u8));
}

impl Default for TagSlot {
    fn default() -> Self {
        TagSlot::NEW
    }
}

/// A refused transition: the event did not fit the tag's state (or the tag does not exist).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidTransition {
    /// The tag.
    pub tag: u16,
    /// Its state when the event came (`None`: no such tag).
    pub from: Option<TagState>,
    /// The event.
    pub event: TagEvent,
}

impl fmt::Display for InvalidTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.from {
            Some(from) => write!(
                f,
                "tag {}: event '{}' is not allowed in state '{}'",
                self.tag,
                self.event.name(),
                from
            ),
            None => write!(
                f,
                "tag {}: no such tag (event '{}')",
                self.tag,
                self.event.name()
            ),
        }
    }
}

impl core::error::Error for InvalidTransition {}

/// The states of one queue's tags, over caller-provided slots.
#[derive(Debug)]
pub struct TagTable<'a> {
    slots: &'a [TagSlot],
    invalid: AtomicU64,
}

impl<'a> TagTable<'a> {
    /// A table over `slots`, one per tag (tag `i` is `slots[i]`). The slots keep whatever
    /// state they hold; fresh ones are [`TagState::Idle`].
    pub const fn new(slots: &'a [TagSlot]) -> TagTable<'a> {
        TagTable {
            slots,
            invalid: AtomicU64::new(0),
        }
    }

    /// How many tags.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True for a table of no tags.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Tag `tag`'s state, or `None` if there is no such tag.
    pub fn state(&self, tag: u16) -> Option<TagState> {
        let slot = self.slots.get(usize::from(tag))?;
        Some(TagState::from_u8(slot.0.load(Ordering::Acquire)))
    }

    /// Applies a server action `event` to `tag` and returns the new state. An event the state
    /// does not allow changes nothing, is counted in
    /// [`invalid_transitions`](Self::invalid_transitions), and panics in debug builds (a
    /// server bug must not pass tests unnoticed).
    pub(crate) fn apply(&self, tag: u16, event: TagEvent) -> Result<TagState, InvalidTransition> {
        let result = self.try_apply(tag, event);
        if let Err(e) = result {
            self.invalid.fetch_add(1, Ordering::Relaxed);
            debug_assert!(false, "ublk tag state machine: {e}");
        }
        result
    }

    /// Applies what a kernel completion says happened: like [`apply`](Self::apply) but a
    /// refusal is only counted, since input from the kernel must not panic even in debug
    /// builds.
    pub(crate) fn apply_completion(
        &self,
        tag: u16,
        event: TagEvent,
    ) -> Result<TagState, InvalidTransition> {
        let result = self.try_apply(tag, event);
        if result.is_err() {
            self.invalid.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn try_apply(&self, tag: u16, event: TagEvent) -> Result<TagState, InvalidTransition> {
        let refused = |from| InvalidTransition { tag, from, event };
        let slot = self.slots.get(usize::from(tag)).ok_or(refused(None))?;
        let mut current = slot.0.load(Ordering::Acquire);
        loop {
            let from = TagState::from_u8(current);
            let to = next_state(from, event).ok_or(refused(Some(from)))?;
            // AcqRel: whoever sees the new state also sees what the transition's owner wrote
            // before it (the buffer, for a request handed between threads).
            match slot
                .0
                .compare_exchange(current, to as u8, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(to),
                Err(now) => current = now,
            }
        }
    }

    /// How many events were refused since the table was made.
    pub fn invalid_transitions(&self) -> u64 {
        self.invalid.load(Ordering::Relaxed)
    }

    /// How many tags are in `state`.
    pub fn count(&self, state: TagState) -> usize {
        self.count_where(|s| s == state)
    }

    /// How many tags have a command with the kernel.
    pub fn with_kernel(&self) -> usize {
        self.count_where(TagState::with_kernel)
    }

    fn count_where(&self, f: impl Fn(TagState) -> bool) -> usize {
        self.slots
            .iter()
            .filter(|s| f(TagState::from_u8(s.0.load(Ordering::Acquire))))
            .count()
    }
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_goes_round_the_cycle() {
        let slots = [TagSlot::NEW, TagSlot::NEW];
        let t = TagTable::new(&slots);
        assert_eq!(t.apply(1, TagEvent::Fetch), Ok(TagState::Fetching));
        assert_eq!(t.apply(1, TagEvent::Request), Ok(TagState::Owned));
        assert_eq!(t.apply(1, TagEvent::Complete), Ok(TagState::Committing));
        assert_eq!(t.apply(1, TagEvent::NeedData), Ok(TagState::GettingData));
        assert_eq!(t.apply(1, TagEvent::Request), Ok(TagState::Owned));
        assert_eq!(t.apply(1, TagEvent::Complete), Ok(TagState::Committing));
        assert_eq!(t.apply(1, TagEvent::Abort), Ok(TagState::Aborted));
        assert_eq!(t.state(0), Some(TagState::Idle));
        assert_eq!(t.count(TagState::Aborted), 1);
        assert_eq!(t.invalid_transitions(), 0);
    }

    /// Every (state, event) pair: exactly the documented ones are allowed.
    #[test]
    fn transition_table_is_exactly_the_documented_one() {
        use TagEvent as E;
        use TagState as S;
        let allowed = [
            (S::Idle, E::Fetch, S::Fetching),
            (S::Fetching, E::Request, S::Owned),
            (S::Committing, E::Request, S::Owned),
            (S::GettingData, E::Request, S::Owned),
            (S::Fetching, E::NeedData, S::GettingData),
            (S::Committing, E::NeedData, S::GettingData),
            (S::Owned, E::Complete, S::Committing),
            (S::Fetching, E::Abort, S::Aborted),
            (S::Committing, E::Abort, S::Aborted),
            (S::GettingData, E::Abort, S::Aborted),
        ];
        let events = [E::Fetch, E::Request, E::NeedData, E::Complete, E::Abort];
        let mut seen = 0;
        for from in TagState::ALL {
            for event in events {
                let want = allowed
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                assert_eq!(next_state(from, event), want, "{from} + {}", event.name());
                seen += usize::from(want.is_some());
            }
        }
        assert_eq!(seen, allowed.len());
        // The owner of a request is never the kernel, and vice versa.
        assert!(!S::Owned.with_kernel() && S::Committing.with_kernel());
    }

    #[test]
    fn kernel_completions_that_do_not_fit_are_counted_not_asserted() {
        let slots = [TagSlot::NEW];
        let t = TagTable::new(&slots);
        assert!(t.apply_completion(0, TagEvent::Request).is_err());
        assert!(t.apply_completion(9, TagEvent::Abort).is_err());
        assert_eq!(t.invalid_transitions(), 2);
        assert_eq!(t.state(0), Some(TagState::Idle));
    }

    #[test]
    fn slot_values_round_trip() {
        for s in TagState::ALL {
            assert_eq!(TagState::from_u8(s as u8), s);
        }
    }

    // Refusals panic in debug builds by design; these run in release (`cargo test --release`)
    // and check that the refusal is counted and changes nothing.
    #[cfg(not(debug_assertions))]
    #[test]
    fn refused_events_change_nothing_and_are_counted() {
        let slots = [TagSlot::NEW];
        let t = TagTable::new(&slots);
        let e = t.apply(0, TagEvent::Complete).unwrap_err();
        assert_eq!(e.from, Some(TagState::Idle));
        assert_eq!(t.apply(7, TagEvent::Fetch).unwrap_err().from, None);
        t.apply(0, TagEvent::Fetch).unwrap();
        assert!(t.apply(0, TagEvent::Fetch).is_err()); // a double fetch
        assert_eq!(t.state(0), Some(TagState::Fetching));
        assert_eq!(t.invalid_transitions(), 3);
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "not allowed in state 'idle'")]
    fn refused_events_assert_in_debug_builds() {
        let slots = [TagSlot::NEW];
        let _ = TagTable::new(&slots).apply(0, TagEvent::Complete);
    }

    #[test]
    fn concurrent_completions_of_one_request_let_exactly_one_win() {
        extern crate std;
        // Two threads race to complete the same owned request: the CAS lets one through, and
        // the loser sees a refusal (checked without the debug assertion via try_apply).
        for _ in 0..200 {
            let slots = [TagSlot::NEW];
            let t = TagTable::new(&slots);
            t.apply(0, TagEvent::Fetch).unwrap();
            t.apply(0, TagEvent::Request).unwrap();
            let wins = std::thread::scope(|s| {
                let a = s.spawn(|| t.try_apply(0, TagEvent::Complete).is_ok());
                let b = s.spawn(|| t.try_apply(0, TagEvent::Complete).is_ok());
                usize::from(a.join().unwrap()) + usize::from(b.join().unwrap())
            });
            assert_eq!(wins, 1);
        }
    }
}
