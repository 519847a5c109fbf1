//! The MIAW server-sent-events stream (spec §2.4), held by the poller. A
//! stream belongs to one token subject, and every handoff has its own end
//! user, so the holder keeps one stream per watched conversation, all at
//! once, and stops the streams of sessions that leave the watch list.
//!
//! Each stream reconnects with backoff and resumes with `Last-Event-Id`, so a
//! drop loses nothing. When a hold ends, the last id is kept in the session's
//! provider data ([`RESUME_KEY`], through a [`ProviderEventKind::Resume`]
//! event), and the next hold opens its stream from there: the platform
//! replays what came while no poller held the stream, typing indicators
//! included, which *list entries* does not keep. The first stream of a hold
//! is still followed by a reconcile from list entries, in case the id is too
//! old for the platform's replay; if that read fails, the stream is opened
//! again rather than read without it. Entries carry the same dedupe keys on
//! every path, so repeats are harmless.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use eventsource_stream::Eventsource;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use reqwest::StatusCode;
use tokio::sync::{mpsc, watch};

use crate::error::{HandoffError, Result};
use crate::events::EndedBy;
use crate::providers::{
    ConversationRef, NotificationSource, ProviderCtx, ProviderEvent, ProviderEventKind,
    WatchedSessions,
};
use crate::store::SessionRecord;

use super::api::{jwt_exp, AuthMode, ConversationAuth, SalesforceApi};
use super::events::{parse_sse, reconcile_entries, EntryState, Frame};
use super::Salesforce;

/// Provider data key of the last SSE event id seen by a hold.
pub const RESUME_KEY: &str = "sse_last_event_id";

/// Reconnect policy (project): 1 s base, 30 s cap; reset after a good connect.
pub const RECONNECT_BASE: Duration = Duration::from_secs(1);
pub const RECONNECT_CAP: Duration = Duration::from_secs(30);
/// The platform pings about every 30 s [U]; this long without a byte = dead stream.
pub const DEFAULT_SILENCE_SECS: u64 = 75;

/// Silence limit from `SALESFORCE_SSE_SILENCE_SECS`.
fn silence_limit() -> Duration {
    let secs = std::env::var("SALESFORCE_SSE_SILENCE_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEFAULT_SILENCE_SECS);
    Duration::from_secs(secs.max(1))
}

/// Sessions this holder should stream: opened on the platform, not ended.
fn live(sessions: &[SessionRecord]) -> HashMap<String, SessionRecord> {
    sessions
        .iter()
        .filter(|s| !s.state.is_terminal())
        .filter_map(|s| Some((s.provider_conversation_id.clone()?, s.clone())))
        .collect()
}

/// How one stream's life ended.
enum StreamEnd {
    /// Deadline, stop signal, or the sink closed.
    Stop,
    /// The session ended on the platform; nothing more to hold.
    SessionOver,
    /// Reconnect; `connected` says whether the stream got established.
    Reconnect { why: String, connected: bool },
    /// The token was refused or expired: renew, then reconnect.
    TokenRefused,
}

fn token_expired_event(cid: &str) -> ProviderEvent {
    ProviderEvent {
        dedupe_key: format!("token-expired:{cid}"),
        conversation: ConversationRef::Provider(cid.to_owned()),
        kind: ProviderEventKind::Ended(EndedBy::System),
    }
}

impl Salesforce {
    /// Holds one conversation's stream until the deadline or `stop`.
    async fn hold_conversation(
        &self,
        api: &SalesforceApi<'_>,
        session: SessionRecord,
        mut stop: watch::Receiver<bool>,
        sink: mpsc::Sender<ProviderEvent>,
        deadline: Instant,
    ) -> String {
        let Some(auth) = ConversationAuth::of(&session) else {
            return String::new();
        };
        let cid = auth.conversation_id.clone();
        let resumed_from = session.provider_data[RESUME_KEY]
            .as_str()
            .map(str::to_owned);
        let mut last_event_id = resumed_from.clone();
        let over = self
            .stream_until_done(api, &auth, &mut last_event_id, &mut stop, &sink, deadline)
            .await;
        if !over && last_event_id.is_some() && last_event_id != resumed_from {
            let _ = sink
                .send(ProviderEvent {
                    dedupe_key: format!("resume:{cid}"),
                    conversation: ConversationRef::Provider(cid.clone()),
                    kind: ProviderEventKind::Resume {
                        key: RESUME_KEY,
                        value: last_event_id.unwrap_or_default(),
                    },
                })
                .await;
        }
        cid
    }

    /// Streams (reconnecting) until the deadline, `stop`, or the session is
    /// over; true for the last.
    #[allow(clippy::too_many_arguments)]
    async fn stream_until_done(
        &self,
        api: &SalesforceApi<'_>,
        auth: &ConversationAuth,
        last_event_id: &mut Option<String>,
        stop: &mut watch::Receiver<bool>,
        sink: &mpsc::Sender<ProviderEvent>,
        deadline: Instant,
    ) -> bool {
        // Set once this hold has reconciled from list entries.
        let mut caught_up = false;
        let cid = auth.conversation_id.clone();
        let new_backoff = || {
            ExponentialBuilder::default()
                .with_min_delay(RECONNECT_BASE)
                .with_max_delay(RECONNECT_CAP)
                .without_max_times()
                .with_jitter()
                .build()
        };
        let mut backoff = new_backoff();
        let mut state = EntryState::default();
        let mut token: Option<String> = None;
        let mut renewed_for_this_refusal = false;
        loop {
            if Instant::now() >= deadline || *stop.borrow() {
                return false;
            }
            let end = self
                .run_stream(
                    api,
                    auth,
                    &mut token,
                    last_event_id,
                    &mut caught_up,
                    &mut state,
                    stop,
                    sink,
                    deadline,
                )
                .await;
            let why = match end {
                Ok(StreamEnd::Stop) => return false,
                Ok(StreamEnd::SessionOver) => return true,
                Ok(StreamEnd::TokenRefused) => {
                    if renewed_for_this_refusal {
                        tracing::warn!(conversation = %cid, "salesforce stream refused a renewed token");
                    }
                    match api.renew(auth, token.as_deref()).await {
                        Ok(t) => {
                            token = Some(t);
                            renewed_for_this_refusal = true;
                            continue;
                        }
                        Err(HandoffError::ProviderAuth(_))
                            if api.creds.auth_mode == AuthMode::Unauthenticated =>
                        {
                            // An anonymous token cannot outlive its exp (spec §2.5).
                            tracing::info!(conversation = %cid, "salesforce token expired; session over");
                            let _ = sink.send(token_expired_event(&cid)).await;
                            return true;
                        }
                        Err(e) => e.to_string(),
                    }
                }
                Ok(StreamEnd::Reconnect { why, connected }) => {
                    if connected {
                        backoff = new_backoff();
                        renewed_for_this_refusal = false;
                    }
                    why
                }
                Err(e) => e.to_string(),
            };
            let delay = backoff.next().unwrap_or(RECONNECT_CAP);
            tracing::info!(conversation = %cid, reason = %why, delay_ms = delay.as_millis() as u64, "salesforce stream reconnecting");
            let wake = (Instant::now() + delay).min(deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One connection: open, (reconcile), read frames until it ends.
    #[allow(clippy::too_many_arguments)]
    async fn run_stream(
        &self,
        api: &SalesforceApi<'_>,
        auth: &ConversationAuth,
        token: &mut Option<String>,
        last_event_id: &mut Option<String>,
        caught_up: &mut bool,
        state: &mut EntryState,
        stop: &mut watch::Receiver<bool>,
        sink: &mpsc::Sender<ProviderEvent>,
        deadline: Instant,
    ) -> Result<StreamEnd> {
        let cid = auth.conversation_id.as_str();
        let bearer = match token.clone() {
            Some(t) => t,
            None => {
                let t = api.current_token(auth).await?;
                *token = Some(t.clone());
                t
            }
        };
        let url = format!("{}/eventrouter/v1/sse", api.creds.base());
        let mut request = api
            .ctx
            .http
            .get(&url)
            .bearer_auth(&bearer)
            .header("X-Org-Id", api.creds.org_id_short())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            // The shared client's overall timeout would cut a long stream.
            .timeout(deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5));
        if let Some(id) = last_event_id.as_deref() {
            request = request.header("Last-Event-Id", id);
        }
        let resp = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Ok(StreamEnd::Reconnect {
                    why: format!("connect: {}", e.without_url()),
                    connected: false,
                })
            }
        };
        match resp.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Ok(StreamEnd::TokenRefused),
            s if !s.is_success() => {
                return Ok(StreamEnd::Reconnect {
                    why: format!("connect: {s}"),
                    connected: false,
                })
            }
            _ => {}
        }
        if last_event_id.is_none() || !*caught_up {
            // Nothing to resume from, or the first stream of this hold (its id
            // may be older than the platform replays): catch up from the entries.
            match api.recent_entries(auth).await {
                Ok(entries) => {
                    *caught_up = true;
                    for ev in reconcile_entries(cid, &entries) {
                        let over = matches!(ev.kind, ProviderEventKind::Ended(_));
                        if sink.send(ev).await.is_err() {
                            return Ok(StreamEnd::Stop);
                        }
                        if over {
                            return Ok(StreamEnd::SessionOver);
                        }
                    }
                }
                Err(e) => {
                    // Reading on without the catch-up would lose what it holds:
                    // open again (still without an id) and retry it first.
                    return Ok(StreamEnd::Reconnect {
                        why: format!("reconcile: {e}"),
                        connected: false,
                    });
                }
            }
        }
        let bytes = futures_util::stream::unfold(resp, |mut r| async move {
            match r.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), r)),
                Ok(None) => None,
                Err(e) => Some((Err(e), r)),
            }
        });
        let mut events = std::pin::pin!(bytes.eventsource());
        let silence = silence_limit();
        loop {
            let next = tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => return Ok(StreamEnd::Stop),
                _ = stop.changed() => return Ok(StreamEnd::Stop),
                n = tokio::time::timeout(silence, events.next()) => n,
            };
            let event = match next {
                Err(_) => {
                    return Ok(StreamEnd::Reconnect {
                        why: "silent stream".into(),
                        connected: true,
                    })
                }
                Ok(None) => {
                    return Ok(StreamEnd::Reconnect {
                        why: "stream ended".into(),
                        connected: true,
                    })
                }
                Ok(Some(Err(e))) => {
                    return Ok(StreamEnd::Reconnect {
                        why: format!("stream error: {e}"),
                        connected: true,
                    })
                }
                Ok(Some(Ok(event))) => event,
            };
            if !event.id.is_empty() {
                *last_event_id = Some(event.id.clone());
            }
            match parse_sse(cid, &event.event, &event.data, state) {
                Frame::KeepAlive | Frame::Other => {}
                Frame::TokenExpired => return Ok(StreamEnd::TokenRefused),
                Frame::Events(evs) => {
                    for ev in evs {
                        let over = matches!(ev.kind, ProviderEventKind::Ended(_));
                        if sink.send(ev).await.is_err() {
                            return Ok(StreamEnd::Stop);
                        }
                        if over {
                            return Ok(StreamEnd::SessionOver);
                        }
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl NotificationSource for Salesforce {
    async fn hold(
        &self,
        ctx: &ProviderCtx<'_>,
        mut sessions: WatchedSessions,
        sink: mpsc::Sender<ProviderEvent>,
        deadline: Instant,
    ) -> Result<()> {
        let api = self.api(ctx)?;
        let api = &api;
        let mut stops: HashMap<String, watch::Sender<bool>> = HashMap::new();
        // Streams that finished for good in this hold (session over): not reopened.
        let mut finished: HashSet<String> = HashSet::new();
        let mut running = FuturesUnordered::new();
        loop {
            let wanted = live(&sessions.borrow_and_update());
            stops.retain(|cid, stop| {
                let keep = wanted.contains_key(cid);
                if !keep {
                    let _ = stop.send(true);
                }
                keep
            });
            for (cid, session) in wanted {
                if stops.contains_key(&cid) || finished.contains(&cid) {
                    continue;
                }
                let (tx, rx) = watch::channel(false);
                stops.insert(cid, tx);
                running.push(self.hold_conversation(api, session, rx, sink.clone(), deadline));
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => break,
                changed = sessions.changed() => if changed.is_err() { break },
                Some(cid) = running.next(), if !running.is_empty() => {
                    if stops.remove(&cid).is_some() && Instant::now() < deadline {
                        finished.insert(cid);
                    }
                }
            }
        }
        for stop in stops.values() {
            let _ = stop.send(true);
        }
        while running.next().await.is_some() {}
        Ok(())
    }

    async fn reconcile(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
    ) -> Result<Vec<ProviderEvent>> {
        let api = self.api(ctx)?;
        let Some(auth) = ConversationAuth::of(session) else {
            return Ok(vec![]);
        };
        match api.recent_entries(&auth).await {
            Ok(entries) => Ok(reconcile_entries(&auth.conversation_id, &entries)),
            Err(HandoffError::ProviderAuth(_))
                if api.creds.auth_mode == AuthMode::Unauthenticated
                    && auth
                        .stored_token
                        .as_deref()
                        .and_then(jwt_exp)
                        .is_some_and(|exp| exp <= crate::time::now_ms() / 1000) =>
            {
                Ok(vec![token_expired_event(&auth.conversation_id)])
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientEnv, IntegrationKey, SessionId, SessionState, Tenant};
    use serde_json::json;

    fn session(id: &str, cid: Option<&str>, state: SessionState) -> SessionRecord {
        let mut s = SessionRecord::new(
            Tenant::new("acme", "support", ClientEnv::Live).unwrap(),
            SessionId::parse(id).unwrap(),
            IntegrationKey::Salesforce,
            json!({}),
        );
        s.state = state;
        s.provider_conversation_id = cid.map(str::to_owned);
        s
    }

    #[test]
    fn only_opened_unended_sessions_are_streamed() {
        let list = vec![
            session("a", Some("c-a"), SessionState::Queued),
            session("b", None, SessionState::Pending),
            session("c", Some("c-c"), SessionState::Ended),
            session("d", Some("c-d"), SessionState::Active),
        ];
        let mut keys: Vec<String> = live(&list).into_keys().collect();
        keys.sort();
        assert_eq!(keys, vec!["c-a", "c-d"]);
    }

    #[test]
    fn an_expired_anonymous_token_ends_the_session_as_system() {
        let ev = token_expired_event("c-1");
        assert_eq!(ev.kind, ProviderEventKind::Ended(EndedBy::System));
        assert_eq!(ev.dedupe_key, "token-expired:c-1");
    }
}
