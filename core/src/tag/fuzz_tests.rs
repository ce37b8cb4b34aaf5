//! Randomized test of the tag state machine against a model of the protocol.
//!
//! The model below is written from the driver protocol (which command of a tag is with the
//! kernel), not from [`next_state`]'s table, so that a wrong entry in the table shows up as a
//! disagreement. Random events go to random tags of a table of random size, partly steered
//! toward the events the model allows (otherwise almost every event is refused and the deep
//! states are never reached); after every event the table must agree with the model in its
//! answer, its states, its counts and its count of refusals.

extern crate std;

use super::*;
use crate::testing::{Prng, fuzz};

/// What the ublk protocol says a tag is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    /// Never handed to the kernel.
    Fresh,
    /// This command is with the kernel.
    Out(Cmd),
    /// The server is serving the request the last command brought.
    Serving,
    /// The kernel ended the tag: nothing more happens to it.
    Ended,
}

/// The commands that leave a tag with the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    /// FETCH_REQ.
    Fetch,
    /// COMMIT_AND_FETCH_REQ.
    CommitAndFetch,
    /// NEED_GET_DATA.
    GetData,
}

impl Model {
    /// The protocol's answer to `event`, or `None` if the event cannot happen now.
    fn step(self, event: TagEvent) -> Option<Model> {
        match event {
            // The server fetches a tag once, when it starts.
            TagEvent::Fetch => (self == Model::Fresh).then_some(Model::Out(Cmd::Fetch)),
            // Every outstanding command completes with a request: FETCH and COMMIT_AND_FETCH
            // with the next one, NEED_GET_DATA with the write whose data it fetched.
            TagEvent::Request => matches!(self, Model::Out(_)).then_some(Model::Serving),
            // A write's data is fetched in place of delivering it: only a fetching command can
            // be answered that way, not NEED_GET_DATA itself.
            TagEvent::NeedData => matches!(
                self,
                Model::Out(Cmd::Fetch) | Model::Out(Cmd::CommitAndFetch)
            )
            .then_some(Model::Out(Cmd::GetData)),
            // Only a request being served can be answered, once.
            TagEvent::Complete => {
                (self == Model::Serving).then_some(Model::Out(Cmd::CommitAndFetch))
            }
            // Only the kernel ends a tag, and only by answering a command it holds.
            TagEvent::Abort => matches!(self, Model::Out(_)).then_some(Model::Ended),
        }
    }

    /// The state the table should show.
    fn state(self) -> TagState {
        match self {
            Model::Fresh => TagState::Idle,
            Model::Out(Cmd::Fetch) => TagState::Fetching,
            Model::Out(Cmd::CommitAndFetch) => TagState::Committing,
            Model::Out(Cmd::GetData) => TagState::GettingData,
            Model::Serving => TagState::Owned,
            Model::Ended => TagState::Aborted,
        }
    }

    /// The kernel holds a command of the tag.
    fn with_kernel(self) -> bool {
        matches!(self, Model::Out(_))
    }
}

const EVENTS: [TagEvent; 5] = [
    TagEvent::Fetch,
    TagEvent::Request,
    TagEvent::NeedData,
    TagEvent::Complete,
    TagEvent::Abort,
];

/// The most tags a generated table has: enough for several of each state at once.
const MAX_TAGS: usize = 48;

/// An event for the tag in state `model`: half the time one the model allows (if any), else
/// any event.
fn event_for(p: &mut Prng, model: Model) -> TagEvent {
    let mut allowed = [TagEvent::Fetch; EVENTS.len()];
    let mut n = 0;
    for e in EVENTS {
        if model.step(e).is_some() {
            allowed[n] = e;
            n += 1;
        }
    }
    if n > 0 && p.bool() {
        allowed[p.index(n)]
    } else {
        *p.pick(&EVENTS)
    }
}

/// A tag number: mostly one of the table's, sometimes one past its end or any `u16`.
fn tag_for(p: &mut Prng, len: usize) -> u16 {
    match p.below(10) {
        0 => p.interesting_u16(),
        1 => len as u16, // the first tag that does not exist
        _ => p.index(len) as u16,
    }
}

/// Checks the table's every state, count and kernel count against the models.
fn check_counts(t: &TagTable<'_>, models: &[Model]) {
    for state in TagState::ALL {
        let want = models.iter().filter(|m| m.state() == state).count();
        assert_eq!(t.count(state), want, "count({state})");
    }
    let with_kernel = models.iter().filter(|m| m.with_kernel()).count();
    assert_eq!(t.with_kernel(), with_kernel, "with_kernel()");
    for (tag, m) in models.iter().enumerate() {
        assert_eq!(t.state(tag as u16), Some(m.state()), "state({tag})");
    }
}

#[test]
fn fuzz_tag_table_agrees_with_the_protocol_model() {
    fuzz(150, |p| {
        let len = match p.below(4) {
            0 => 1,
            _ => p.range(1..=MAX_TAGS as u64) as usize,
        };
        let slots = [const { TagSlot::NEW }; MAX_TAGS];
        let table = TagTable::new(&slots[..len]);
        let mut models = [Model::Fresh; MAX_TAGS];
        let models = &mut models[..len];
        let mut refused = 0u64;
        assert_eq!(table.len(), len);
        for step in 0..p.range(1..=300) {
            let tag = tag_for(p, len);
            let model = models.get(usize::from(tag)).copied();
            let event = event_for(p, model.unwrap_or(Model::Ended));
            let allowed = model.and_then(|m| m.step(event));
            // The server's entry point asserts on a refusal in debug builds (by design: a
            // server bug); there, refused events go through the kernel's entry point, which
            // only counts. Release builds send everything both ways.
            let server_side = p.bool() && (allowed.is_some() || !cfg!(debug_assertions));
            let result = if server_side {
                table.apply(tag, event)
            } else {
                table.apply_completion(tag, event)
            };
            let what = || {
                std::format!(
                    "step {step}: {} on tag {tag} of {len} in {model:?} via {}",
                    event.name(),
                    if server_side {
                        "apply"
                    } else {
                        "apply_completion"
                    }
                )
            };
            match (allowed, result) {
                (Some(next), Ok(state)) => {
                    assert_eq!(state, next.state(), "{}", what());
                    models[usize::from(tag)] = next;
                }
                (None, Err(e)) => {
                    refused += 1;
                    let want = InvalidTransition {
                        tag,
                        from: model.map(Model::state),
                        event,
                    };
                    assert_eq!(e, want, "{}", what());
                    // The message names the tag (and, for a tag that exists, its state).
                    let text = std::format!("{e}");
                    assert!(text.starts_with(&std::format!("tag {tag}: ")), "{text}");
                }
                (want, got) => panic!("{}: model says {want:?}, table says {got:?}", what()),
            }
            assert_eq!(table.invalid_transitions(), refused, "{}", what());
            assert_eq!(table.state(len as u16), None, "{}", what());
            check_counts(&table, models);
        }
    });
}

#[test]
fn fuzz_every_transition_of_the_table_is_one_the_protocol_allows() {
    // Exhaustive over the (state, event) pairs, so no seed can miss one: each state is
    // reached through the model, then every event is tried against a copy of it.
    let paths: [&[TagEvent]; 6] = [
        &[],
        &[TagEvent::Fetch],
        &[TagEvent::Fetch, TagEvent::Request],
        &[TagEvent::Fetch, TagEvent::Request, TagEvent::Complete],
        &[TagEvent::Fetch, TagEvent::NeedData],
        &[TagEvent::Fetch, TagEvent::Abort],
    ];
    for path in paths {
        let model = path
            .iter()
            .fold(Model::Fresh, |m, e| m.step(*e).expect("a valid path"));
        for event in EVENTS {
            let slots = [TagSlot::NEW];
            let table = TagTable::new(&slots);
            for e in path {
                table.apply(0, *e).expect("a valid path");
            }
            assert_eq!(table.state(0), Some(model.state()));
            let got = table.apply_completion(0, event).ok();
            let want = model.step(event).map(Model::state);
            assert_eq!(got, want, "{} in {}", event.name(), model.state());
            assert_eq!(next_state(model.state(), event), want);
        }
    }
}
