//! In-memory conversations of the demo runtime: the bot transcript, the handoff
//! state and the client events received from the relay.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use handoff_common::events::{ClientEvent, ClientEventType};
use serde::Serialize;
use serde_json::Value;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;
use tokio::sync::watch;

/// RFC 3339, UTC, milliseconds — the format of `at` throughout the contract.
const TIMESTAMP_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The current time as the contract writes it, e.g. `2026-11-23T10:01:02.123Z`.
pub fn timestamp_now() -> String {
    OffsetDateTime::now_utc()
        .format(TIMESTAMP_FORMAT)
        .unwrap_or_else(|_| OffsetDateTime::now_utc().unix_timestamp().to_string())
}

/// Who said a line of the bot conversation, as start-handoff's transcript names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One line of the conversation, as sent in start-handoff's `transcript`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TranscriptEntry {
    pub role: Role,
    pub text: String,
    pub at: String,
}

/// Whether an event was new or a redelivery of a seq already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    Duplicate,
}

/// What `GET /api/sessions/{id}` shows.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub session_id: String,
    pub user_id: String,
    pub display_name: String,
    /// The integration this conversation hands off to, if not the default.
    pub provider: Option<&'static str>,
    pub handed_off: bool,
    pub ended: bool,
    /// start-handoff's result once the handoff was opened.
    pub handoff: Option<Value>,
    pub transcript: Vec<TranscriptEntry>,
    /// Ordered by seq, one per seq.
    pub events: Vec<ClientEvent>,
}

/// One widget conversation.
pub struct Session {
    pub id: String,
    /// Held for the whole handling of one customer action, so messages reach the
    /// relay in the order typed and a handoff is started once.
    pub turn: tokio::sync::Mutex<()>,
    state: Mutex<SessionState>,
    /// Bumped whenever an event is stored; streams wait on it.
    events_changed: watch::Sender<u64>,
}

struct SessionState {
    user_id: String,
    display_name: String,
    provider: Option<&'static str>,
    transcript: Vec<TranscriptEntry>,
    handoff: Option<Value>,
    ended: bool,
    events: BTreeMap<u64, ClientEvent>,
}

impl Session {
    fn new(id: String, display_name: String) -> Self {
        let user_id = format!("u-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self {
            id,
            turn: tokio::sync::Mutex::new(()),
            state: Mutex::new(SessionState {
                user_id,
                display_name,
                provider: None,
                transcript: Vec::new(),
                handoff: None,
                ended: false,
                events: BTreeMap::new(),
            }),
            events_changed: watch::Sender::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, SessionState> {
        // A panic elsewhere must not take every later request down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn user_id(&self) -> String {
        self.state().user_id.clone()
    }

    pub fn display_name(&self) -> String {
        self.state().display_name.clone()
    }

    pub fn provider(&self) -> Option<&'static str> {
        self.state().provider
    }

    pub fn set_provider(&self, provider: &'static str) {
        self.state().provider = Some(provider);
    }

    pub fn push_transcript(&self, role: Role, text: &str) -> TranscriptEntry {
        let entry = TranscriptEntry {
            role,
            text: text.to_owned(),
            at: timestamp_now(),
        };
        self.state().transcript.push(entry.clone());
        entry
    }

    pub fn transcript(&self) -> Vec<TranscriptEntry> {
        self.state().transcript.clone()
    }

    pub fn is_handed_off(&self) -> bool {
        self.state().handoff.is_some()
    }

    pub fn mark_handed_off(&self, start_handoff_result: Value) {
        self.state().handoff = Some(start_handoff_result);
    }

    pub fn is_ended(&self) -> bool {
        self.state().ended
    }

    pub fn mark_ended(&self) {
        self.state().ended = true;
    }

    /// Stores an event unless its seq is already stored (the relay redelivers
    /// until it sees a 2xx, so the same seq may arrive more than once).
    pub fn record_event(&self, event: ClientEvent) -> Recorded {
        let mut state = self.state();
        if state.events.contains_key(&event.seq) {
            return Recorded::Duplicate;
        }
        if event.event_type == ClientEventType::SessionEnd {
            state.ended = true;
        }
        state.events.insert(event.seq, event);
        drop(state);
        self.events_changed.send_modify(|version| *version += 1);
        Recorded::New
    }

    pub fn event(&self, seq: u64) -> Option<ClientEvent> {
        self.state().events.get(&seq).cloned()
    }

    pub fn subscribe_events(&self) -> watch::Receiver<u64> {
        self.events_changed.subscribe()
    }

    pub fn view(&self) -> SessionView {
        let state = self.state();
        SessionView {
            session_id: self.id.clone(),
            user_id: state.user_id.clone(),
            display_name: state.display_name.clone(),
            provider: state.provider,
            handed_off: state.handoff.is_some(),
            ended: state.ended,
            handoff: state.handoff.clone(),
            transcript: state.transcript.clone(),
            events: state.events.values().cloned().collect(),
        }
    }
}

/// All conversations of this process.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    fn by_id(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn create(&self, display_name: String) -> Arc<Session> {
        let id = format!("conv-{}", uuid::Uuid::new_v4());
        let session = Arc::new(Session::new(id.clone(), display_name));
        self.by_id().insert(id, Arc::clone(&session));
        session
    }

    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.by_id().len()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.by_id().get(id).cloned()
    }

    /// The session an event belongs to. Events for a session this process does
    /// not know (e.g. after a restart) are kept too: the relay must not be told
    /// 2xx for something that was not stored, and a 4xx would make it retry
    /// forever.
    pub fn for_event(&self, id: &str) -> Arc<Session> {
        Arc::clone(
            self.by_id()
                .entry(id.to_owned())
                .or_insert_with(|| Arc::new(Session::new(id.to_owned(), "Customer".to_owned()))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: u64, text: &str) -> ClientEvent {
        ClientEvent {
            session_id: "conv-1".into(),
            seq,
            event_type: ClientEventType::LiveAgentMessage,
            at: timestamp_now(),
            data: json!({ "text": text }),
        }
    }

    #[test]
    fn events_are_kept_once_per_seq_in_seq_order() {
        let sessions = Sessions::default();
        let session = sessions.for_event("conv-1");
        assert_eq!(session.record_event(event(2, "second")), Recorded::New);
        assert_eq!(session.record_event(event(1, "first")), Recorded::New);
        assert_eq!(session.record_event(event(2, "again")), Recorded::Duplicate);
        let view = session.view();
        let seqs: Vec<u64> = view.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(view.events[1].data["text"], "second");
    }

    #[test]
    fn session_end_event_ends_the_session() {
        let sessions = Sessions::default();
        let session = sessions.create("Ada".into());
        assert!(!session.is_ended());
        session.record_event(ClientEvent {
            event_type: ClientEventType::SessionEnd,
            ..event(1, "")
        });
        assert!(session.is_ended());
    }

    #[test]
    fn timestamps_have_milliseconds_and_utc() {
        let at = timestamp_now();
        assert_eq!(at.len(), "2026-11-23T10:01:02.123Z".len(), "{at}");
        assert!(at.ends_with('Z'));
    }
}
