//! Builders of history entries shared by the checkers' unit tests.

use crate::history::{Entry, Event, Outcome, Phase, Request};

/// `event` at `ms` milliseconds.
pub(crate) fn at(ms: u64, event: Event) -> Entry {
    Entry {
        at_us: ms * 1_000,
        event,
    }
}

/// Client `client` sends `request` to `node` (a patient caller on a fresh connection).
pub(crate) fn invoke(
    op: u64,
    client: &str,
    node: &str,
    request: Request,
    phase: Phase,
    as_peer: bool,
) -> Event {
    Event::Invoke {
        op,
        client: client.into(),
        node: node.into(),
        request,
        phase,
        conn_since_us: 0,
        deadline_ms: 4_500,
        as_peer,
    }
}

/// Op `op` got `outcome`.
pub(crate) fn ret(op: u64, outcome: Outcome) -> Event {
    Event::Return { op, outcome }
}

/// Incarnation 1 of `node` started.
pub(crate) fn started(node: &str) -> Event {
    Event::NodeStarted {
        node: node.into(),
        inc: 1,
    }
}

/// `node` (incarnation 1) records a view of `members` (each incarnation 1).
pub(crate) fn view(node: &str, members: &[&str]) -> Event {
    Event::View {
        node: node.into(),
        inc: 1,
        members: members.iter().map(|m| ((*m).to_owned(), 1)).collect(),
    }
}
