//! The Notifications API WebSocket (spec §7): agent joined / left and
//! conversation ended. Held by the poller, one channel per up to 333 handoffs
//! (three topics each), reconnecting with backoff and reconciling every
//! watched conversation after each (re)connect, since Genesys does not replay
//! events missed while no socket was open.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::domain::SessionState;
use crate::error::{HandoffError, Result};
use crate::events::EndedBy;
use crate::providers::{
    AgentInfo, ConversationRef, NotificationSource, ProviderCtx, ProviderEvent, ProviderEventKind,
    WatchedSessions,
};
use crate::store::SessionRecord;

use super::api::GenesysApi;
use super::Genesys;

/// Genesys: 1,000 topics per notification channel [V].
pub const MAX_TOPICS_PER_CHANNEL: usize = 1000;
/// Genesys: 20 channels per OAuth client; a 21st evicts one [V].
pub const MAX_CHANNELS_PER_CLIENT: usize = 20;
/// user.start, user.end, customer.end.
pub const TOPICS_PER_SESSION: usize = 3;
/// Handoffs one channel can watch.
pub const SESSIONS_PER_CHANNEL: usize = MAX_TOPICS_PER_CHANNEL / TOPICS_PER_SESSION;
/// Reconnect policy (project): 1 s base, 30 s cap, 10 tries, then a new channel.
pub const RECONNECT_BASE: Duration = Duration::from_secs(1);
pub const RECONNECT_CAP: Duration = Duration::from_secs(30);
pub const RECONNECT_TRIES: usize = 10;
/// Reconciliations run at once after a reconnect.
const RECONCILE_CONCURRENCY: usize = 8;

/// Keep-alive timing; from `GENESYS_PING_SECS` / `GENESYS_SILENCE_SECS`.
#[derive(Debug, Clone, Copy)]
pub struct SocketTuning {
    /// How often we send `{"message":"ping"}`.
    pub ping_every: Duration,
    /// No heartbeat/pong/event for this long = dead socket (spec: 60 s).
    pub silence_limit: Duration,
}

impl SocketTuning {
    pub fn from_env() -> Self {
        let secs = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        Self {
            ping_every: Duration::from_secs(secs("GENESYS_PING_SECS", 20).max(1)),
            silence_limit: Duration::from_secs(secs("GENESYS_SILENCE_SECS", 60).max(1)),
        }
    }
}

/// The three topics of one conversation.
pub fn topics_for(conversation_id: &str) -> [String; TOPICS_PER_SESSION] {
    let base = format!("v2.detail.events.conversation.{conversation_id}");
    [
        format!("{base}.user.start"),
        format!("{base}.user.end"),
        format!("{base}.customer.end"),
    ]
}

/// What one WebSocket text frame says.
#[derive(Debug, PartialEq)]
pub enum Frame {
    KeepAlive,
    SocketClosing,
    Event(ProviderEvent),
    /// A topic event for a conversation we do not map, or a system message.
    Other,
}

/// Parses a frame. A user.start's agent name is filled in later (one REST call).
pub fn parse_frame(text: &str) -> Frame {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Frame::Other;
    };
    let topic = v["topicName"].as_str().unwrap_or_default();
    if topic == "channel.metadata" {
        return Frame::KeepAlive;
    }
    if topic == "v2.system.socket_closing" {
        return Frame::SocketClosing;
    }
    let Some(rest) = topic.strip_prefix("v2.detail.events.conversation.") else {
        return Frame::Other;
    };
    let body = &v["eventBody"];
    let Some((cid, suffix)) = rest.split_once('.') else {
        return Frame::Other;
    };
    let participant = body["participantId"].as_str().unwrap_or("-");
    let agent = AgentInfo {
        id: body["userId"].as_str().map(str::to_owned),
        display_name: None,
    };
    let kind = match suffix {
        "user.start" => ProviderEventKind::AgentJoined(agent),
        "user.end" => ProviderEventKind::AgentLeft {
            agent,
            transfer: body["disconnectType"] == "TRANSFER",
        },
        "customer.end" => ProviderEventKind::Ended(EndedBy::Agent),
        _ => return Frame::Other,
    };
    Frame::Event(ProviderEvent {
        dedupe_key: format!("notification:{cid}:{suffix}:{participant}"),
        conversation: ConversationRef::Provider(cid.to_owned()),
        kind,
    })
}

/// Events implied by a conversation's participants, given our session state.
pub fn reconcile_events(session: &SessionRecord, conversation: &Value) -> Vec<ProviderEvent> {
    let Some(cid) = session.provider_conversation_id.as_deref() else {
        return vec![];
    };
    let participants: Vec<&Value> = conversation["participants"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let event = |key: String, kind| ProviderEvent {
        dedupe_key: key,
        conversation: ConversationRef::Provider(cid.to_owned()),
        kind,
    };
    let customer_gone = participants
        .iter()
        .any(|p| p["purpose"] == "customer" && p["state"] == "disconnected");
    if customer_gone {
        return vec![event(
            format!("reconcile:{cid}:ended"),
            ProviderEventKind::Ended(EndedBy::Agent),
        )];
    }
    let agent = participants
        .iter()
        .rev()
        .find(|p| p["purpose"] == "agent" && p["state"] == "connected");
    match (agent, session.state) {
        (Some(a), SessionState::Pending | SessionState::Queued) => vec![event(
            format!("reconcile:{cid}:joined:{}", a["id"].as_str().unwrap_or("-")),
            ProviderEventKind::AgentJoined(AgentInfo {
                id: a["user"]["id"].as_str().map(str::to_owned),
                display_name: a["name"].as_str().map(str::to_owned),
            }),
        )],
        (None, SessionState::Active) => {
            let last = participants
                .iter()
                .rev()
                .find(|p| p["purpose"] == "agent")
                .and_then(|p| p["id"].as_str())
                .unwrap_or("-");
            vec![event(
                format!("reconcile:{cid}:left:{last}"),
                ProviderEventKind::AgentLeft {
                    agent: AgentInfo::default(),
                    transfer: false,
                },
            )]
        }
        _ => vec![],
    }
}

fn shard_sessions(sessions: &[SessionRecord], shards: usize) -> Vec<Vec<SessionRecord>> {
    let mut live: Vec<&SessionRecord> = sessions
        .iter()
        .filter(|s| s.provider_conversation_id.is_some() && !s.state.is_terminal())
        .collect();
    live.sort_by_key(|s| s.created_at_ms);
    let mut out = vec![Vec::new(); shards];
    for (i, s) in live.into_iter().enumerate() {
        let shard = i / SESSIONS_PER_CHANNEL;
        if shard < shards {
            out[shard].push(s.clone());
        }
    }
    out
}

fn shards_needed(sessions: &[SessionRecord]) -> usize {
    let n = sessions
        .iter()
        .filter(|s| s.provider_conversation_id.is_some() && !s.state.is_terminal())
        .count();
    n.div_ceil(SESSIONS_PER_CHANNEL)
}

enum SocketEnd {
    Deadline,
    Reconnect(&'static str),
}

impl Genesys {
    async fn agent_name(
        &self,
        api: &GenesysApi<'_>,
        names: &mut HashMap<String, Option<String>>,
        id: &str,
    ) -> Option<String> {
        if let Some(n) = names.get(id) {
            return n.clone();
        }
        let name = api.user_name(id).await.ok().flatten();
        names.insert(id.to_owned(), name.clone());
        name
    }

    async fn reconcile_all(
        &self,
        api: &GenesysApi<'_>,
        sessions: &[SessionRecord],
        sink: &mpsc::Sender<ProviderEvent>,
    ) {
        let results: Vec<Vec<ProviderEvent>> = futures_util::stream::iter(sessions.to_vec())
            .map(|s: SessionRecord| async move {
                let Some(cid) = s.provider_conversation_id.as_deref() else {
                    return vec![];
                };
                match api.conversation(cid).await {
                    Ok(conv) => reconcile_events(&s, &conv),
                    Err(e) => {
                        tracing::warn!(session = %s.session_id, error = %e, "reconcile failed");
                        vec![]
                    }
                }
            })
            .buffer_unordered(RECONCILE_CONCURRENCY)
            .collect()
            .await;
        for ev in results.into_iter().flatten() {
            let _ = sink.send(ev).await;
        }
    }

    /// Holds one channel for one shard of sessions until the deadline.
    async fn hold_shard(
        &self,
        ctx: &ProviderCtx<'_>,
        mut shard: watch::Receiver<Vec<SessionRecord>>,
        sink: mpsc::Sender<ProviderEvent>,
        deadline: Instant,
    ) -> Result<()> {
        let api = self.api(ctx)?;
        let tuning = SocketTuning::from_env();
        let mut names = HashMap::new();
        let mut channel: Option<(String, String)> = None;
        let new_backoff = || {
            ExponentialBuilder::default()
                .with_min_delay(RECONNECT_BASE)
                .with_max_delay(RECONNECT_CAP)
                .with_max_times(RECONNECT_TRIES)
                .with_jitter()
                .build()
        };
        let mut backoff = new_backoff();
        loop {
            if Instant::now() >= deadline {
                return Ok(());
            }
            let attempt = self
                .connect_and_run(
                    &api,
                    &mut channel,
                    &mut shard,
                    &sink,
                    deadline,
                    tuning,
                    &mut names,
                )
                .await;
            let reason = match attempt {
                Ok((SocketEnd::Deadline, _)) => return Ok(()),
                Ok((SocketEnd::Reconnect(why), connected)) => {
                    if connected {
                        backoff = new_backoff();
                    }
                    why.to_owned()
                }
                Err(e) => e.to_string(),
            };
            let delay = match backoff.next() {
                Some(d) => d,
                None => {
                    tracing::warn!("genesys notifications: retries spent; new channel");
                    channel = None;
                    backoff = new_backoff();
                    RECONNECT_BASE
                }
            };
            tracing::info!(reason = %reason, delay_ms = delay.as_millis() as u64, "genesys notifications reconnecting");
            let wake = (Instant::now() + delay).min(deadline);
            tokio::time::sleep_until(wake.into()).await;
        }
    }

    /// One socket's life. Returns how it ended and whether it got connected.
    #[allow(clippy::too_many_arguments)]
    async fn connect_and_run(
        &self,
        api: &GenesysApi<'_>,
        channel: &mut Option<(String, String)>,
        shard: &mut watch::Receiver<Vec<SessionRecord>>,
        sink: &mpsc::Sender<ProviderEvent>,
        deadline: Instant,
        tuning: SocketTuning,
        names: &mut HashMap<String, Option<String>>,
    ) -> Result<(SocketEnd, bool)> {
        let (channel_id, connect_uri) = match channel.clone() {
            Some(c) => c,
            None => {
                let c = api.create_channel().await?;
                *channel = Some(c.clone());
                c
            }
        };
        let sessions = shard.borrow_and_update().clone();
        let mut topics: Vec<String> = sessions
            .iter()
            .filter_map(|s| s.provider_conversation_id.as_deref())
            .flat_map(topics_for)
            .collect();
        if let Err(e) = api.replace_subscriptions(&channel_id, &topics).await {
            // An evicted or expired channel answers 404: start over with a new one.
            *channel = None;
            return Err(e);
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(connect_uri.as_str())
            .await
            .map_err(|e| HandoffError::ProviderUnavailable(format!("genesys websocket: {e}")))?;
        tracing::info!(channel = %channel_id, topics = topics.len(), "genesys notifications connected");
        // Subscribed and connected: now catch up on anything missed.
        self.reconcile_all(api, &sessions, sink).await;

        let mut last_seen = Instant::now();
        let mut ping = tokio::time::interval(tuning.ping_every);
        ping.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let _ = ws.close(None).await;
                    return Ok((SocketEnd::Deadline, true));
                }
                changed = shard.changed() => {
                    if changed.is_err() {
                        let _ = ws.close(None).await;
                        return Ok((SocketEnd::Deadline, true));
                    }
                    let sessions = shard.borrow_and_update().clone();
                    let wanted: Vec<String> = sessions
                        .iter()
                        .filter_map(|s| s.provider_conversation_id.as_deref())
                        .flat_map(topics_for)
                        .collect();
                    if wanted != topics {
                        let added: Vec<SessionRecord> = sessions
                            .iter()
                            .filter(|s| s.provider_conversation_id.as_deref().is_some_and(|c| !topics.contains(&topics_for(c)[0])))
                            .cloned()
                            .collect();
                        if let Err(e) = api.replace_subscriptions(&channel_id, &wanted).await {
                            *channel = None;
                            return Err(e);
                        }
                        topics = wanted;
                        // A handoff subscribed late may have been accepted already.
                        self.reconcile_all(api, &added, sink).await;
                    }
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() > tuning.silence_limit {
                        return Ok((SocketEnd::Reconnect("silent socket"), true));
                    }
                    if ws.send(Message::Text(r#"{"message":"ping"}"#.into())).await.is_err() {
                        return Ok((SocketEnd::Reconnect("ping failed"), true));
                    }
                }
                frame = ws.next() => {
                    let text = match frame {
                        None | Some(Err(_)) => return Ok((SocketEnd::Reconnect("socket dropped"), true)),
                        Some(Ok(Message::Close(_))) => return Ok((SocketEnd::Reconnect("socket closed"), true)),
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(_)) => { last_seen = Instant::now(); continue; }
                    };
                    last_seen = Instant::now();
                    match parse_frame(text.as_str()) {
                        Frame::KeepAlive | Frame::Other => {}
                        Frame::SocketClosing => return Ok((SocketEnd::Reconnect("socket closing"), true)),
                        Frame::Event(mut ev) => {
                            if let ProviderEventKind::AgentJoined(agent) = &mut ev.kind {
                                if let Some(id) = agent.id.clone() {
                                    agent.display_name = self.agent_name(api, names, &id).await;
                                }
                            }
                            if sink.send(ev).await.is_err() {
                                return Ok((SocketEnd::Deadline, true));
                            }
                        }
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl NotificationSource for Genesys {
    async fn hold(
        &self,
        ctx: &ProviderCtx<'_>,
        mut sessions: WatchedSessions,
        sink: mpsc::Sender<ProviderEvent>,
        deadline: Instant,
    ) -> Result<()> {
        let mut shard_senders: Vec<watch::Sender<Vec<SessionRecord>>> = Vec::new();
        let mut running = FuturesUnordered::new();
        loop {
            let current = sessions.borrow_and_update().clone();
            let needed = shards_needed(&current);
            if needed > MAX_CHANNELS_PER_CLIENT {
                tracing::error!(
                    tenant = %ctx.tenant,
                    sessions = current.len(),
                    "more handoffs than 20 Genesys channels can watch; the excess rely on reconciliation"
                );
            }
            let wanted = needed.min(MAX_CHANNELS_PER_CLIENT);
            while shard_senders.len() < wanted {
                let (tx, rx) = watch::channel(Vec::new());
                shard_senders.push(tx);
                running.push(self.hold_shard(ctx, rx, sink.clone(), deadline));
            }
            for (tx, part) in shard_senders
                .iter()
                .zip(shard_sessions(&current, shard_senders.len()))
            {
                tx.send_if_modified(|old| {
                    if *old != part {
                        *old = part;
                        true
                    } else {
                        false
                    }
                });
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => break,
                changed = sessions.changed() => if changed.is_err() { break },
                Some(done) = running.next(), if !running.is_empty() => {
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "genesys shard stopped");
                    }
                }
            }
        }
        drop(shard_senders);
        while running.next().await.is_some() {}
        Ok(())
    }

    async fn reconcile(
        &self,
        ctx: &ProviderCtx<'_>,
        session: &SessionRecord,
    ) -> Result<Vec<ProviderEvent>> {
        let api = self.api(ctx)?;
        let Some(cid) = session.provider_conversation_id.as_deref() else {
            return Ok(vec![]);
        };
        Ok(reconcile_events(session, &api.conversation(cid).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientEnv, IntegrationKey, SessionId, Tenant};
    use serde_json::json;

    fn session(state: SessionState) -> SessionRecord {
        let mut s = SessionRecord::new(
            Tenant::new("acme", "support", ClientEnv::Live).unwrap(),
            SessionId::parse("conv-1").unwrap(),
            IntegrationKey::Genesys,
            json!({}),
        );
        s.state = state;
        s.provider_conversation_id = Some("c1".into());
        s
    }

    #[test]
    fn topic_frames_map_to_lifecycle_events() {
        let start = r#"{"topicName":"v2.detail.events.conversation.c1.user.start","version":"2","eventBody":{"conversationId":"c1","participantId":"p9","userId":"u7","mediaType":"MESSAGE"},"metadata":{"CorrelationId":"x"}}"#;
        let Frame::Event(ev) = parse_frame(start) else {
            panic!()
        };
        assert_eq!(ev.dedupe_key, "notification:c1:user.start:p9");
        assert_eq!(ev.conversation, ConversationRef::Provider("c1".into()));
        assert!(
            matches!(ev.kind, ProviderEventKind::AgentJoined(AgentInfo { id: Some(ref u), .. }) if u == "u7")
        );

        let transfer = r#"{"topicName":"v2.detail.events.conversation.c1.user.end","eventBody":{"participantId":"p9","disconnectType":"TRANSFER"}}"#;
        let Frame::Event(ev) = parse_frame(transfer) else {
            panic!()
        };
        assert!(matches!(
            ev.kind,
            ProviderEventKind::AgentLeft { transfer: true, .. }
        ));

        let end = r#"{"topicName":"v2.detail.events.conversation.c1.customer.end","eventBody":{"participantId":"p1","disconnectType":"CLIENT"}}"#;
        let Frame::Event(ev) = parse_frame(end) else {
            panic!()
        };
        assert_eq!(ev.kind, ProviderEventKind::Ended(EndedBy::Agent));
    }

    #[test]
    fn keepalives_and_system_frames() {
        assert_eq!(
            parse_frame(
                r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#
            ),
            Frame::KeepAlive
        );
        assert_eq!(
            parse_frame(r#"{"topicName":"v2.system.socket_closing","eventBody":{}}"#),
            Frame::SocketClosing
        );
        assert_eq!(parse_frame("garbage"), Frame::Other);
        assert_eq!(
            parse_frame(r#"{"topicName":"v2.detail.events.conversation.c1.acd.start"}"#),
            Frame::Other
        );
    }

    #[test]
    fn reconcile_derives_missed_events() {
        let accepted = json!({"participants": [
            {"id": "p1", "purpose": "customer", "state": "connected"},
            {"id": "p9", "purpose": "agent", "state": "connected", "user": {"id": "u7"}}]});
        let evs = reconcile_events(&session(SessionState::Queued), &accepted);
        assert!(matches!(
            evs.as_slice(),
            [ProviderEvent {
                kind: ProviderEventKind::AgentJoined(_),
                ..
            }]
        ));
        assert!(reconcile_events(&session(SessionState::Active), &accepted).is_empty());

        let left = json!({"participants": [
            {"id": "p1", "purpose": "customer", "state": "connected"},
            {"id": "p9", "purpose": "agent", "state": "disconnected"}]});
        let evs = reconcile_events(&session(SessionState::Active), &left);
        assert!(matches!(
            evs.as_slice(),
            [ProviderEvent {
                kind: ProviderEventKind::AgentLeft { .. },
                ..
            }]
        ));

        let ended =
            json!({"participants": [{"id": "p1", "purpose": "customer", "state": "disconnected"}]});
        let evs = reconcile_events(&session(SessionState::Active), &ended);
        assert_eq!(evs[0].kind, ProviderEventKind::Ended(EndedBy::Agent));
    }

    #[test]
    fn sessions_shard_at_333_per_channel() {
        let many: Vec<SessionRecord> = (0..700)
            .map(|i| {
                let mut s = session(SessionState::Queued);
                s.session_id = SessionId::parse(&format!("s{i}")).unwrap();
                s.provider_conversation_id = Some(format!("c{i}"));
                s.created_at_ms = i;
                s
            })
            .collect();
        assert_eq!(shards_needed(&many), 3);
        let shards = shard_sessions(&many, 3);
        assert_eq!(
            shards.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![333, 333, 34]
        );
        assert!(shards[0].len() * TOPICS_PER_SESSION <= MAX_TOPICS_PER_CHANNEL);
    }
}
