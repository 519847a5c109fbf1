//! Lifecycle by polling (spec §5, route A): BYOC has no joined / left /
//! closed callback, so the poller reads each watched contact
//! (`GET /dfo/3.0/contacts/{id}`) and turns changes of `inboxAssignee` and
//! `status` into events.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::domain::SessionState;
use crate::error::Result;
use crate::events::EndedBy;
use crate::providers::{
    AgentInfo, ConversationRef, NotificationSource, ProviderCtx, ProviderEvent, ProviderEventKind,
    WatchedSessions,
};
use crate::store::SessionRecord;

use super::api::{id_string, DfoApi};
use super::{Nice, U_POLL_INTERVAL};

/// Contacts read at once.
const POLL_CONCURRENCY: usize = 8;
/// Longest pause after polls that all failed.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Statuses that end a contact [V S3 values; U which one an agent sets].
pub const CLOSED_STATUSES: [&str; 3] = ["resolved", "closed", "trashed"];

/// What we last saw of one contact.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    pub assignee: Option<String>,
    pub ended: bool,
}

impl Observed {
    /// What the session record already reflects.
    pub fn from_session(session: &SessionRecord) -> Self {
        Self {
            assignee: (session.state == SessionState::Active)
                .then(|| {
                    session.provider_data["agent"]["id"]
                        .as_str()
                        .map(str::to_owned)
                })
                .flatten(),
            ended: session.state.is_terminal(),
        }
    }
}

/// `inboxAssigneeUser` (or `inboxAssignee`) as an agent.
fn assignee(contact: &Value) -> Option<AgentInfo> {
    let user = if contact["inboxAssigneeUser"].is_object() {
        &contact["inboxAssigneeUser"]
    } else {
        &contact["inboxAssignee"]
    };
    let id = id_string(&user["id"]).or_else(|| id_string(user))?;
    let first = user["firstName"].as_str().unwrap_or_default();
    let last = user["surname"].as_str().unwrap_or_default();
    let full = format!("{first} {last}").trim().to_owned();
    let name = user["nickname"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .or((!full.is_empty()).then_some(full));
    Some(AgentInfo {
        id: Some(id),
        display_name: name,
    })
}

/// The events a contact's current state implies, given what was seen before
/// (`None` contact = 404, treated as ended [U]). Updates `seen`.
pub fn transitions(
    session: &SessionRecord,
    contact: Option<&Value>,
    seen: &mut Observed,
) -> Vec<ProviderEvent> {
    let Some(cid) = session.provider_conversation_id.as_deref() else {
        return vec![];
    };
    if seen.ended {
        return vec![];
    }
    let event = |key: String, kind| ProviderEvent {
        dedupe_key: key,
        conversation: ConversationRef::Provider(cid.to_owned()),
        kind,
    };
    let Some(contact) = contact else {
        seen.ended = true;
        return vec![event(
            format!("poll:{cid}:ended"),
            ProviderEventKind::Ended(EndedBy::System),
        )];
    };
    let now = assignee(contact);
    let now_id = now.as_ref().and_then(|a| a.id.clone());
    let epoch = session.next_seq;
    let mut out = Vec::new();
    if now_id != seen.assignee {
        // The record may already know this agent (an agent message came first).
        let known = session.state == SessionState::Active
            && now_id.is_some()
            && session.provider_data["agent"]["id"].as_str() == now_id.as_deref();
        if !known {
            if let Some(prev) = &seen.assignee {
                out.push(event(
                    format!("poll:{cid}:left:{prev}:{epoch}"),
                    ProviderEventKind::AgentLeft {
                        agent: AgentInfo {
                            id: Some(prev.clone()),
                            display_name: None,
                        },
                        transfer: now.is_some(),
                    },
                ));
            }
            if let (Some(agent), Some(id)) = (&now, &now_id) {
                out.push(event(
                    format!("poll:{cid}:joined:{id}:{epoch}"),
                    ProviderEventKind::AgentJoined(agent.clone()),
                ));
            }
        }
        seen.assignee = now_id;
    }
    let status = contact["status"].as_str().unwrap_or_default();
    if CLOSED_STATUSES.contains(&status) {
        seen.ended = true;
        // Closed while someone had it: the agent closed it. Our own close
        // becomes `user` in the state machine (end_requested).
        let by = if seen.assignee.is_some() || now.is_some() {
            EndedBy::Agent
        } else {
            EndedBy::System
        };
        out.push(event(
            format!("poll:{cid}:ended"),
            ProviderEventKind::Ended(by),
        ));
    }
    out
}

fn contact_id(session: &SessionRecord) -> Option<&str> {
    session.provider_conversation_id.as_deref()
}

impl Nice {
    async fn poll_once(
        &self,
        api: &DfoApi<'_>,
        sessions: &[SessionRecord],
        seen: &mut HashMap<String, Observed>,
        sink: &mpsc::Sender<ProviderEvent>,
    ) -> (usize, usize) {
        let live: Vec<SessionRecord> = sessions
            .iter()
            .filter(|s| contact_id(s).is_some() && !s.state.is_terminal())
            .cloned()
            .collect();
        let results: Vec<(SessionRecord, Result<Option<Value>>)> = futures_util::stream::iter(live)
            .map(|s: SessionRecord| async move {
                let contact = api.contact(contact_id(&s).unwrap_or_default()).await;
                (s, contact)
            })
            .buffer_unordered(POLL_CONCURRENCY)
            .collect()
            .await;
        let (mut ok, mut failed) = (0, 0);
        for (session, result) in results {
            let session = &session;
            let cid = contact_id(session).unwrap_or_default().to_owned();
            match result {
                Ok(contact) => {
                    ok += 1;
                    let entry = seen
                        .entry(cid)
                        .or_insert_with(|| Observed::from_session(session));
                    for ev in transitions(session, contact.as_ref(), entry) {
                        let _ = sink.send(ev).await;
                    }
                }
                Err(e) => {
                    failed += 1;
                    tracing::warn!(session = %session.session_id, error = %e, "nice contact poll failed");
                }
            }
        }
        (ok, failed)
    }
}

#[async_trait::async_trait]
impl NotificationSource for Nice {
    async fn hold(
        &self,
        ctx: &ProviderCtx<'_>,
        mut sessions: WatchedSessions,
        sink: mpsc::Sender<ProviderEvent>,
        deadline: Instant,
    ) -> Result<()> {
        let api = self.api(ctx)?;
        let interval = poll_interval();
        let mut seen: HashMap<String, Observed> = HashMap::new();
        let mut pause = interval;
        loop {
            if sink.is_closed() {
                // Whoever stored the events is gone: end, so the poller starts anew.
                return Ok(());
            }
            let current = sessions.borrow_and_update().clone();
            // Forget contacts no longer watched; a returning one starts from its record.
            seen.retain(|cid, _| current.iter().any(|s| contact_id(s) == Some(cid)));
            let (ok, failed) = self.poll_once(&api, &current, &mut seen, &sink).await;
            pause = if failed > 0 && ok == 0 {
                (pause * 2).min(MAX_BACKOFF)
            } else {
                interval
            };
            let wake = (Instant::now() + pause).min(deadline);
            if wake >= deadline {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                changed = sessions.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    // A new handoff is polled at once; then the regular pace.
                    tokio::time::sleep_until((Instant::now() + Duration::from_millis(200)).min(deadline).into()).await;
                }
            }
        }
    }

    async fn reconcile(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
    ) -> Result<Vec<ProviderEvent>> {
        let Some(cid) = contact_id(session) else {
            return Ok(vec![]);
        };
        let api = self.api(ctx)?;
        let contact = api.contact(cid).await?;
        let mut seen = Observed::from_session(session);
        Ok(transitions(session, contact.as_ref(), &mut seen))
    }
}

/// `NICE_POLL_MS`, default [`U_POLL_INTERVAL`].
fn poll_interval() -> Duration {
    std::env::var("NICE_POLL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.max(200)))
        .unwrap_or(U_POLL_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientEnv, IntegrationKey, SessionId, Tenant};
    use serde_json::json;

    fn session(state: SessionState, agent: Option<&str>) -> SessionRecord {
        let mut s = SessionRecord::new(
            Tenant::new("acme", "support", ClientEnv::Live).unwrap(),
            SessionId::parse("conv-1").unwrap(),
            IntegrationKey::Nice,
            json!({}),
        );
        s.state = state;
        s.provider_conversation_id = Some("5001".into());
        s.next_seq = 3;
        if let Some(a) = agent {
            s.provider_data = json!({"agent": {"id": a, "display_name": "x"}});
        }
        s
    }

    fn contact(status: &str, agent: Option<(u64, &str)>) -> Value {
        match agent {
            Some((id, nick)) => json!({"id": "5001", "status": status, "inboxAssignee": id,
                "inboxAssigneeUser": {"id": id, "firstName": nick, "surname": "", "nickname": nick}}),
            None => {
                json!({"id": "5001", "status": status, "inboxAssignee": null, "inboxAssigneeUser": null})
            }
        }
    }

    fn kinds(evs: &[ProviderEvent]) -> Vec<&ProviderEventKind> {
        evs.iter().map(|e| &e.kind).collect()
    }

    #[test]
    fn queued_contact_then_assignment_is_a_join() {
        let s = session(SessionState::Queued, None);
        let mut seen = Observed::from_session(&s);
        assert!(transitions(&s, Some(&contact("new", None)), &mut seen).is_empty());
        let evs = transitions(&s, Some(&contact("open", Some((55, "Sam")))), &mut seen);
        assert_eq!(
            kinds(&evs),
            vec![&ProviderEventKind::AgentJoined(AgentInfo {
                id: Some("55".into()),
                display_name: Some("Sam".into())
            })]
        );
        assert_eq!(
            evs[0].conversation,
            ConversationRef::Provider("5001".into())
        );
        // Seen once: the next poll adds nothing.
        assert!(transitions(&s, Some(&contact("open", Some((55, "Sam")))), &mut seen).is_empty());
    }

    #[test]
    fn reassignment_is_a_transfer_and_unassignment_a_leave() {
        let s = session(SessionState::Active, Some("55"));
        let mut seen = Observed::from_session(&s);
        let evs = transitions(&s, Some(&contact("open", Some((56, "Kim")))), &mut seen);
        assert!(matches!(
            evs[0].kind,
            ProviderEventKind::AgentLeft { transfer: true, .. }
        ));
        assert!(
            matches!(&evs[1].kind, ProviderEventKind::AgentJoined(a) if a.display_name.as_deref() == Some("Kim"))
        );
        let evs = transitions(&s, Some(&contact("open", None)), &mut seen);
        assert!(matches!(
            evs[..],
            [ProviderEvent {
                kind: ProviderEventKind::AgentLeft {
                    transfer: false,
                    ..
                },
                ..
            }]
        ));
    }

    #[test]
    fn a_join_already_derived_from_a_message_is_not_repeated() {
        let s = session(SessionState::Active, Some("55"));
        let mut seen = Observed::default(); // this holder never saw the agent
        assert!(transitions(&s, Some(&contact("open", Some((55, "Sam")))), &mut seen).is_empty());
        assert_eq!(seen.assignee.as_deref(), Some("55"));
    }

    #[test]
    fn closing_ends_once_with_who() {
        let s = session(SessionState::Active, Some("55"));
        let mut seen = Observed::from_session(&s);
        let evs = transitions(&s, Some(&contact("closed", Some((55, "Sam")))), &mut seen);
        assert_eq!(kinds(&evs), vec![&ProviderEventKind::Ended(EndedBy::Agent)]);
        assert_eq!(evs[0].dedupe_key, "poll:5001:ended");
        assert!(transitions(&s, Some(&contact("closed", None)), &mut seen).is_empty());

        let q = session(SessionState::Queued, None);
        let mut seen = Observed::from_session(&q);
        let evs = transitions(&q, Some(&contact("trashed", None)), &mut seen);
        assert_eq!(
            kinds(&evs),
            vec![&ProviderEventKind::Ended(EndedBy::System)]
        );
        let mut seen = Observed::from_session(&q);
        let evs = transitions(&q, None, &mut seen);
        assert_eq!(
            kinds(&evs),
            vec![&ProviderEventKind::Ended(EndedBy::System)]
        );
        // pending / escalated are still open.
        let mut seen = Observed::from_session(&s);
        assert!(
            transitions(&s, Some(&contact("pending", Some((55, "Sam")))), &mut seen).is_empty()
        );
    }
}
