//! Platform -> relay: webhooks (and notification events from the poller),
//! mapped to client events with the session state machine.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::domain::{ClientEnv, IntegrationKey, SessionState, Tenant};
use crate::error::{HandoffError, Result};
use crate::events::{ClientEventType, EndedBy};
use crate::metrics::{Metric, Record};
use crate::providers::{
    media_type_allowed, AgentInfo, ConversationRef, ProviderEvent, ProviderEventKind,
    WebhookRequest,
};
use crate::reorder::HeldEvent;
use crate::store::{AppendOutcome, NewEvent, SessionChange, SessionRecord, StoredEvent};
use crate::time::now_ms;

use super::Deps;

/// Largest webhook body accepted (413 above).
pub const MAX_WEBHOOK_BYTES: usize = 256 * 1024;

/// What a tenant's runtime config says about platform events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRules {
    pub forward_bot_messages: bool,
    /// The agent-message reorder window ([`crate::reorder`]); 0 = off.
    pub reorder_window_ms: u64,
}

impl Default for EventRules {
    fn default() -> Self {
        Self {
            forward_bot_messages: true,
            reorder_window_ms: 0,
        }
    }
}

impl EventRules {
    /// The tenant's rules; the defaults when its config cannot be read.
    pub async fn of(deps: &Deps, tenant: &Tenant) -> Self {
        match deps.secrets.runtime(tenant).await {
            Ok(r) => Self {
                forward_bot_messages: r.forward_bot_messages,
                reorder_window_ms: r.agent_reorder_window_ms.min(crate::reorder::MAX_WINDOW_MS),
            },
            Err(_) => Self::default(),
        }
    }
}

fn agent_json(agent: &AgentInfo, fallback: &Value) -> Value {
    let name = agent
        .display_name
        .clone()
        .or_else(|| fallback["display_name"].as_str().map(str::to_owned));
    let id = agent
        .id
        .clone()
        .or_else(|| fallback["id"].as_str().map(str::to_owned));
    json!({"display_name": name, "id": id})
}

/// The client events and state change a platform signal implies for a
/// session. Pure: the state machine of the relay in one place.
pub fn decide(
    session: &SessionRecord,
    kind: &ProviderEventKind,
    forward_bot_messages: bool,
) -> (Vec<NewEvent>, SessionChange) {
    use ProviderEventKind as K;
    let state = session.state;
    if state.is_terminal() {
        // After SESSION_END: recorded (dedupe key), acknowledged, never delivered.
        return (vec![], SessionChange::default());
    }
    let known_agent = &session.provider_data["agent"];
    let mut data = session.provider_data.clone();
    let joined = |agent: &AgentInfo, data: &mut Value| {
        let a = agent_json(agent, known_agent);
        data["agent"] = a.clone();
        NewEvent::new(ClientEventType::LiveAgentJoined, json!({"agent": a}))
    };
    match kind {
        K::Ignored(_) => (vec![], SessionChange::default()),
        K::Resume { key, value } => {
            data[*key] = json!(value);
            (
                vec![],
                SessionChange {
                    provider_data: Some(data),
                    ..Default::default()
                },
            )
        }
        K::AgentJoined(agent) => {
            if state == SessionState::Active {
                return (vec![], SessionChange::default()); // already known (e.g. inferred from a message)
            }
            let ev = joined(agent, &mut data);
            (
                vec![ev],
                SessionChange {
                    state: Some(SessionState::Active),
                    provider_data: Some(data),
                    ..Default::default()
                },
            )
        }
        K::AgentTyping(agent) => {
            if state != SessionState::Active {
                return (vec![], SessionChange::default()); // never before JOINED
            }
            (
                vec![NewEvent::new(
                    ClientEventType::LiveAgentTyping,
                    json!({"agent": agent_json(agent, known_agent), "typing": true}),
                )],
                SessionChange::default(),
            )
        }
        K::AgentMessage {
            message_id,
            text,
            agent,
            from_bot,
            ..
        } => {
            if *from_bot && !forward_bot_messages {
                return (vec![], SessionChange::default());
            }
            let mut events = Vec::new();
            let mut change = SessionChange::default();
            let other_agent = state == SessionState::Active
                && !from_bot
                && agent.id.is_some()
                && known_agent["id"].as_str().is_some()
                && agent.id.as_deref() != known_agent["id"].as_str();
            if other_agent {
                // Platforms without join/leave signals (Zendesk): a new author is a transfer.
                events.push(NewEvent::new(
                    ClientEventType::LiveAgentLeft,
                    json!({"agent": known_agent.clone(), "reason": "transfer"}),
                ));
                events.push(joined(agent, &mut data));
                change.provider_data = Some(data.clone());
            } else if !from_bot && state != SessionState::Active {
                // The join notification is late or lost: a person wrote, so someone joined.
                events.push(joined(agent, &mut data));
                change.state = Some(SessionState::Active);
                change.provider_data = Some(data.clone());
            }
            let agent = agent_json(agent, &data["agent"]);
            events.push(NewEvent::new(
                ClientEventType::LiveAgentMessage,
                json!({"message_id": message_id, "text": text, "agent": agent, "from_bot": from_bot}),
            ));
            (events, change)
        }
        K::AgentLeft { agent, transfer } => {
            if state != SessionState::Active {
                return (vec![], SessionChange::default());
            }
            let a = agent_json(agent, known_agent);
            data["agent"] = Value::Null;
            (
                vec![NewEvent::new(
                    ClientEventType::LiveAgentLeft,
                    json!({"agent": a, "reason": if *transfer { "transfer" } else { "left" }}),
                )],
                SessionChange {
                    state: Some(SessionState::Queued),
                    provider_data: Some(data),
                    ..Default::default()
                },
            )
        }
        K::Ended(by) => {
            // Our own disconnect comes back from the platform as "ended": it was the user.
            let by = if session.provider_data["end_requested"] == true {
                EndedBy::User
            } else {
                *by
            };
            (vec![end_event(by)], end_change(by))
        }
    }
}

/// `SESSION_END` with who ended it.
pub fn end_event(by: EndedBy) -> NewEvent {
    NewEvent::new(
        ClientEventType::SessionEnd,
        json!({"ended_by": by.as_str()}),
    )
}

pub fn end_change(by: EndedBy) -> SessionChange {
    SessionChange {
        state: Some(SessionState::Ended),
        ended_by: Some(by),
        ..Default::default()
    }
}

/// What applying one platform event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Stored (possibly as no client event); `n` client events appended.
    Stored(usize),
    Duplicate,
    /// No session of this tenant matches; acknowledged and recorded.
    UnknownConversation,
}

/// [`decide`], plus the reorder window: an agent message with the platform's
/// time is held (its client event goes into [`SessionChange::hold`]); an agent
/// leaving, or a message that implies a join or a transfer, releases
/// everything held before it first (the implied join goes out at once, the
/// message is held behind it). `now_ms` opens the window.
pub fn decide_with_window(
    session: &SessionRecord,
    kind: &ProviderEventKind,
    rules: EventRules,
    now_ms: i64,
) -> (Vec<NewEvent>, SessionChange) {
    let (mut events, mut change) = decide(session, kind, rules.forward_bot_messages);
    match kind {
        ProviderEventKind::AgentMessage {
            sent_at_ms: Some(sent_at_ms),
            ..
        } if rules.reorder_window_ms > 0
            && events
                .last()
                .is_some_and(|e| e.event_type == ClientEventType::LiveAgentMessage) =>
        {
            // An inferred join or transfer comes with it: what is held
            // belongs before that boundary, which goes out now; this message
            // waits behind it, so an earlier one of the same agent delivered
            // late still goes first.
            change.release_all = events.len() > 1;
            change.hold = Some(HeldEvent {
                sent_at_ms: *sent_at_ms,
                release_at_ms: now_ms + rules.reorder_window_ms as i64,
                event: events.pop().expect("checked above"),
            });
        }
        ProviderEventKind::AgentLeft { .. } => change.release_all = true,
        _ => {}
    }
    (events, change)
}

/// Releases the session's held agent messages that are due and pushes them;
/// writes nothing when none is due. Returns the client events appended.
pub async fn release_due(
    deps: &Deps,
    tenant: &Tenant,
    session: &crate::domain::SessionId,
) -> Result<usize> {
    let Some(current) = deps.store.get_session(tenant, session).await? else {
        return Ok(0);
    };
    if crate::reorder::next_due(&current.held).is_none_or(|due| due > now_ms()) {
        return Ok(0);
    }
    let outcome = deps
        .store
        .append_from(tenant, session, Some(current), None, |_| {
            Ok((vec![], SessionChange::default()))
        })
        .await?;
    let AppendOutcome::Appended {
        session: after,
        events,
    } = outcome
    else {
        return Ok(0);
    };
    relay_appended(deps, &after, &events).await;
    Ok(events.len())
}

/// Counts and pushes the client events an append stored, if any.
async fn relay_appended(deps: &Deps, after: &SessionRecord, events: &[StoredEvent]) {
    if !events.is_empty() {
        record_relayed(deps, after, events).await;
        deps.push_appended(
            &after.tenant,
            &after.session_id,
            after.delivered_seq,
            events,
        )
        .await;
    }
}

/// Stores one platform event exactly once and pushes the client events it implies.
pub async fn apply_event(
    deps: &Deps,
    tenant: &Tenant,
    key: IntegrationKey,
    event: &ProviderEvent,
    rules: EventRules,
) -> Result<Applied> {
    let session = match &event.conversation {
        ConversationRef::Provider(cid) => deps.store.find_by_conversation(tenant, key, cid).await?,
        ConversationRef::Session(sid) => deps
            .store
            .get_session(tenant, sid)
            .await?
            .filter(|s| s.provider == key),
    };
    let resume = matches!(event.kind, ProviderEventKind::Resume { .. });
    let Some(session) = session else {
        if resume {
            return Ok(Applied::Duplicate); // nothing to resume any more
        }
        let first = deps.store.remember(tenant, key, &event.dedupe_key).await?;
        tracing::info!(dedupe = %event.dedupe_key, first, "platform event for no session of this tenant");
        return Ok(if first {
            Applied::UnknownConversation
        } else {
            Applied::Duplicate
        });
    };
    // `session` is a consistent read (find_by_conversation / get_session).
    let outcome = deps
        .store
        .append_from(
            tenant,
            &session.session_id,
            Some(session.clone()),
            (!resume).then_some((key, event.dedupe_key.as_str())),
            |current| Ok(decide_with_window(current, &event.kind, rules, now_ms())),
        )
        .await?;
    match outcome {
        AppendOutcome::Duplicate => Ok(Applied::Duplicate),
        AppendOutcome::Appended {
            session: after,
            events,
        } => {
            relay_appended(deps, &after, &events).await;
            Ok(Applied::Stored(events.len()))
        }
    }
}

/// Metrics of client events just appended: agent messages relayed, and the
/// time from the handoff to the first agent joining (a join after a transfer
/// is not counted again; finding out reads the log, which only joins pay for).
async fn record_relayed(deps: &Deps, session: &SessionRecord, events: &[StoredEvent]) {
    for stored in events {
        let record = match stored.event.event_type {
            ClientEventType::LiveAgentMessage => {
                Record::count(Metric::MessageRelayed).dimension("direction", "to_customer")
            }
            ClientEventType::LiveAgentJoined => {
                let earlier = deps
                    .store
                    .events_after(&session.tenant, &session.session_id, 0)
                    .await
                    .map(|log| {
                        log.iter().any(|e| {
                            e.event.event_type == ClientEventType::LiveAgentJoined
                                && e.event.seq < stored.event.seq
                        })
                    })
                    .unwrap_or(true);
                if earlier {
                    continue;
                }
                Record::new(
                    Metric::TimeToAgentJoin,
                    (now_ms() - session.created_at_ms).max(0) as f64,
                )
            }
            _ => continue,
        };
        record
            .provider(session.provider)
            .property("tenant", session.tenant.to_string())
            .property("session", session.session_id.as_str())
            .emit();
    }
}

/// An HTTP answer of the webhook function.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: u16,
    pub body: Value,
}

impl WebhookResponse {
    fn error(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            body: json!({"error": {"code": code, "message": message}}),
        }
    }
}

/// `/webhooks/{provider}/{account_id}/{project_id}/{client_env}[/{rest+}]`.
pub fn parse_webhook_path(path: &str) -> Option<(IntegrationKey, Tenant, String)> {
    let rest = path.strip_prefix("/webhooks/")?;
    let mut parts = rest.splitn(5, '/');
    let provider = IntegrationKey::from_path_name(parts.next()?)?;
    let account = parts.next()?;
    let project = parts.next()?;
    let env = ClientEnv::parse(parts.next()?).ok()?;
    let tenant = Tenant::new(account, project, env).ok()?;
    let rest = parts.next().map(|r| format!("/{r}")).unwrap_or_default();
    Some((provider, tenant, rest))
}

/// An HTTP API request (payload format 2.0) as the webhook handler needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpWebhook {
    /// The route path, without a `/lambda-url/{function}` prefix (cargo lambda watch).
    pub path: String,
    /// Lower-cased names; a repeated header keeps its first value.
    pub headers: HashMap<String, String>,
    /// The bytes the platform signed.
    pub body: Vec<u8>,
}

/// What the webhook function was invoked with.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundPayload {
    /// An SNS event (`Records`), for [`handle_stream_event`].
    Stream(Value),
    Http(HttpWebhook),
}

/// SNS events (`Records`) go to the stream handler; anything else must be an
/// HTTP API request. Built here rather than by `lambda_http`, whose conversion
/// panics on a body flagged base64 that is not, or on a malformed host.
pub fn classify_payload(payload: Value) -> Result<InboundPayload> {
    use base64::Engine as _;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;

    if payload.get("Records").is_some() {
        return Ok(InboundPayload::Stream(payload));
    }
    let request: ApiGatewayV2httpRequest = serde_json::from_value(payload)
        .map_err(|e| HandoffError::invalid(format!("not an HTTP API request: {e}")))?;
    let raw_path = request.raw_path.as_deref().unwrap_or_default();
    // The `$default` stage (template.yaml): the path is the route as is.
    let path = match raw_path.strip_prefix("/lambda-url/") {
        Some(rest) => rest
            .split_once('/')
            .map(|(_, p)| format!("/{p}"))
            .unwrap_or_default(),
        None => raw_path.to_owned(),
    };
    let mut headers = HashMap::new();
    for (name, value) in &request.headers {
        if let Ok(v) = value.to_str() {
            headers
                .entry(name.as_str().to_ascii_lowercase())
                .or_insert_with(|| v.to_owned());
        }
    }
    let text = request.body.unwrap_or_default();
    let body = if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|_| HandoffError::invalid("isBase64Encoded body is not base64"))?
    } else {
        text.into_bytes()
    };
    Ok(InboundPayload::Http(HttpWebhook {
        path,
        headers,
        body,
    }))
}

/// Handles one webhook: authenticate on the raw bytes, parse, store once, map.
/// Never answers 2xx for something not stored.
#[tracing::instrument(name = "inbound_webhook", skip_all, fields(tenant = tracing::field::Empty, provider = tracing::field::Empty))]
pub async fn handle_webhook(
    deps: &Deps,
    path: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> WebhookResponse {
    let response = verify_and_store(deps, path, headers, body).await;
    if response.status >= 400 {
        let reason = response.body["error"]["code"].as_str().unwrap_or("unknown");
        let mut record = Record::count(Metric::WebhookRejected).dimension("reason", reason);
        if let Some((key, tenant, _)) = parse_webhook_path(path) {
            record = record
                .dimension("provider", key.as_str())
                .property("tenant", tenant.to_string());
        }
        record.emit();
    }
    response
}

async fn verify_and_store(
    deps: &Deps,
    path: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> WebhookResponse {
    let Some((key, tenant, rest)) = parse_webhook_path(path) else {
        return WebhookResponse::error(404, "not_found", "unknown webhook route");
    };
    let span = tracing::Span::current();
    span.record("tenant", tracing::field::display(&tenant));
    span.record("provider", key.as_str());
    if body.len() > MAX_WEBHOOK_BYTES {
        return WebhookResponse::error(413, "payload_too_large", "body over 256 KiB");
    }
    let Ok(provider) = deps.provider(key) else {
        return WebhookResponse::error(404, "unknown_integration", "integration not supported");
    };
    if let Some(ct) = headers.get("content-type") {
        if !media_type_allowed(provider.webhook_media_types(&rest), ct) {
            return WebhookResponse::error(
                415,
                "unsupported_media_type",
                "this platform's webhooks are not sent with that Content-Type",
            );
        }
    }
    let credentials = match deps.secrets.integration(&tenant, key).await {
        Ok(c) => c,
        Err(HandoffError::NotConfigured(_)) => {
            return WebhookResponse::error(404, "not_configured", "unknown tenant or integration")
        }
        Err(e) => return WebhookResponse::error(503, e.code(), "credentials unavailable"),
    };
    let request = WebhookRequest {
        headers,
        body,
        rest_path: &rest,
    };
    if let Err(rejection) = provider.authenticate_webhook(&credentials, &request) {
        tracing::warn!(reason = ?rejection, "webhook rejected");
        return WebhookResponse::error(401, "unauthenticated", "signature or secret check failed");
    }
    let events = match provider.parse_webhook(&request) {
        Ok(evs) => evs,
        Err(e) => return WebhookResponse::error(400, "malformed", &e.to_string()),
    };
    let rules = EventRules::of(deps, &tenant).await;
    let mut stored = 0;
    let mut duplicates = 0;
    for event in &events {
        match apply_event(deps, &tenant, key, event, rules).await {
            Ok(Applied::Duplicate) => duplicates += 1,
            Ok(_) => stored += 1,
            Err(e) => {
                tracing::error!(error = %e, "webhook event not stored");
                // Not stored: the platform must retry.
                return WebhookResponse::error(503, e.code(), "event not stored; retry");
            }
        }
    }
    if let Some((status, body)) = provider.webhook_response(&credentials, &request) {
        return WebhookResponse { status, body };
    }
    WebhookResponse {
        status: 200,
        body: json!({"ok": true, "stored": stored, "duplicates": duplicates}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SessionId;

    fn session(state: SessionState) -> SessionRecord {
        let mut s = SessionRecord::new(
            Tenant::new("acme", "support", ClientEnv::Live).unwrap(),
            SessionId::parse("conv-1").unwrap(),
            IntegrationKey::Genesys,
            json!({}),
        );
        s.state = state;
        s
    }

    fn sam() -> AgentInfo {
        AgentInfo {
            id: Some("u7".into()),
            display_name: Some("Sam".into()),
        }
    }

    fn types(evs: &[NewEvent]) -> Vec<ClientEventType> {
        evs.iter().map(|e| e.event_type).collect()
    }

    #[test]
    fn join_activates_and_names_the_agent() {
        let (evs, change) = decide(
            &session(SessionState::Queued),
            &ProviderEventKind::AgentJoined(sam()),
            true,
        );
        assert_eq!(types(&evs), vec![ClientEventType::LiveAgentJoined]);
        assert_eq!(evs[0].data["agent"]["display_name"], "Sam");
        assert_eq!(change.state, Some(SessionState::Active));
        // A second join signal for an active session adds nothing.
        let (evs, _) = decide(
            &session(SessionState::Active),
            &ProviderEventKind::AgentJoined(sam()),
            true,
        );
        assert!(evs.is_empty());
    }

    #[test]
    fn the_window_holds_a_timed_agent_message_behind_a_join_it_implies() {
        let msg = |sent_at_ms| ProviderEventKind::AgentMessage {
            message_id: "m1".into(),
            text: "hi".into(),
            agent: sam(),
            from_bot: false,
            sent_at_ms,
        };
        let on = EventRules {
            reorder_window_ms: 800,
            ..EventRules::default()
        };
        let active = session(SessionState::Active);
        let (evs, change) = decide_with_window(&active, &msg(Some(40)), on, 1_000);
        assert!(evs.is_empty() && !change.release_all);
        let held = change.hold.expect("held");
        assert_eq!((held.sent_at_ms, held.release_at_ms), (40, 1_800));
        assert_eq!(held.event.event_type, ClientEventType::LiveAgentMessage);
        assert_eq!(held.event.data["text"], "hi");
        // With an inferred join: what is held goes first, then the join; the
        // message waits behind it (an earlier one may still be on its way).
        let (evs, change) =
            decide_with_window(&session(SessionState::Queued), &msg(Some(40)), on, 1_000);
        assert_eq!(types(&evs), vec![ClientEventType::LiveAgentJoined]);
        assert!(change.release_all);
        let held = change.hold.expect("the message is held behind the join");
        assert_eq!(held.event.data["text"], "hi");
        assert_eq!(change.state, Some(SessionState::Active));
        // No platform time, or no window: appended at once, as decide does.
        for (kind, rules) in [(msg(None), on), (msg(Some(40)), EventRules::default())] {
            let (evs, change) = decide_with_window(&active, &kind, rules, 1_000);
            assert_eq!(types(&evs), vec![ClientEventType::LiveAgentMessage]);
            assert!(change.hold.is_none());
        }
        // A bot message the tenant drops is not held either.
        let bot = ProviderEventKind::AgentMessage {
            message_id: "b1".into(),
            text: "menu".into(),
            agent: AgentInfo::default(),
            from_bot: true,
            sent_at_ms: Some(40),
        };
        let rules = EventRules {
            forward_bot_messages: false,
            ..on
        };
        let (evs, change) = decide_with_window(&active, &bot, rules, 1_000);
        assert!(evs.is_empty() && change.hold.is_none());
        // An agent leaving flushes what is held before its own event.
        let left = ProviderEventKind::AgentLeft {
            agent: sam(),
            transfer: false,
        };
        let (_, change) = decide_with_window(&active, &left, on, 1_000);
        assert!(change.release_all);
    }

    #[test]
    fn message_before_join_infers_join_once() {
        let kind = ProviderEventKind::AgentMessage {
            message_id: "m1".into(),
            text: "hi".into(),
            agent: sam(),
            from_bot: false,
            sent_at_ms: None,
        };
        let (evs, change) = decide(&session(SessionState::Queued), &kind, true);
        assert_eq!(
            types(&evs),
            vec![
                ClientEventType::LiveAgentJoined,
                ClientEventType::LiveAgentMessage
            ]
        );
        assert_eq!(change.state, Some(SessionState::Active));
        let (evs, change) = decide(&session(SessionState::Active), &kind, true);
        assert_eq!(types(&evs), vec![ClientEventType::LiveAgentMessage]);
        assert_eq!(change.state, None);
    }

    #[test]
    fn a_message_from_another_agent_is_a_transfer() {
        let mut s = session(SessionState::Active);
        s.provider_data["agent"] = json!({"id": "u7", "display_name": "Sam"});
        let kim = AgentInfo {
            id: Some("u8".into()),
            display_name: Some("Kim".into()),
        };
        let kind = ProviderEventKind::AgentMessage {
            message_id: "m2".into(),
            text: "Kim here".into(),
            agent: kim,
            from_bot: false,
            sent_at_ms: None,
        };
        let (evs, change) = decide(&s, &kind, true);
        assert_eq!(
            types(&evs),
            vec![
                ClientEventType::LiveAgentLeft,
                ClientEventType::LiveAgentJoined,
                ClientEventType::LiveAgentMessage
            ]
        );
        assert_eq!(evs[1].data["agent"]["display_name"], "Kim");
        assert_eq!(change.provider_data.unwrap()["agent"]["id"], "u8");
        // Same agent again: just the message.
        let (evs, _) = decide(
            &s,
            &ProviderEventKind::AgentMessage {
                message_id: "m3".into(),
                text: "x".into(),
                agent: sam(),
                from_bot: false,
                sent_at_ms: None,
            },
            true,
        );
        assert_eq!(types(&evs), vec![ClientEventType::LiveAgentMessage]);
    }

    #[test]
    fn typing_never_before_join() {
        let (evs, _) = decide(
            &session(SessionState::Queued),
            &ProviderEventKind::AgentTyping(sam()),
            true,
        );
        assert!(evs.is_empty());
        let (evs, _) = decide(
            &session(SessionState::Active),
            &ProviderEventKind::AgentTyping(sam()),
            true,
        );
        assert_eq!(types(&evs), vec![ClientEventType::LiveAgentTyping]);
    }

    #[test]
    fn bot_messages_follow_the_tenant_setting() {
        let kind = ProviderEventKind::AgentMessage {
            message_id: "b1".into(),
            text: "menu".into(),
            agent: AgentInfo::default(),
            from_bot: true,
            sent_at_ms: None,
        };
        assert!(decide(&session(SessionState::Queued), &kind, false)
            .0
            .is_empty());
        let (evs, change) = decide(&session(SessionState::Queued), &kind, true);
        assert_eq!(types(&evs), vec![ClientEventType::LiveAgentMessage]);
        assert_eq!(change.state, None, "a bot does not make the session active");
    }

    #[test]
    fn leaving_returns_to_queued_and_transfer_is_marked() {
        let kind = ProviderEventKind::AgentLeft {
            agent: sam(),
            transfer: true,
        };
        let (evs, change) = decide(&session(SessionState::Active), &kind, true);
        assert_eq!(types(&evs), vec![ClientEventType::LiveAgentLeft]);
        assert_eq!(evs[0].data["reason"], "transfer");
        assert_eq!(change.state, Some(SessionState::Queued));
        assert!(decide(&session(SessionState::Queued), &kind, true)
            .0
            .is_empty());
    }

    #[test]
    fn end_is_terminal_and_user_requested_end_says_user() {
        let (evs, change) = decide(
            &session(SessionState::Active),
            &ProviderEventKind::Ended(EndedBy::Agent),
            true,
        );
        assert_eq!(types(&evs), vec![ClientEventType::SessionEnd]);
        assert_eq!(evs[0].data["ended_by"], "agent");
        assert_eq!(change.state, Some(SessionState::Ended));
        let mut requested = session(SessionState::Active);
        requested.provider_data["end_requested"] = json!(true);
        let (evs, _) = decide(&requested, &ProviderEventKind::Ended(EndedBy::Agent), true);
        assert_eq!(evs[0].data["ended_by"], "user");
        // After the end nothing is delivered.
        for kind in [
            ProviderEventKind::AgentJoined(sam()),
            ProviderEventKind::AgentTyping(sam()),
            ProviderEventKind::Ended(EndedBy::Agent),
        ] {
            assert!(decide(&session(SessionState::Ended), &kind, true)
                .0
                .is_empty());
        }
    }

    #[test]
    fn payloads_are_classified_without_lambda_http() {
        let sns = json!({"Records": [{"Sns": {"Message": "{}"}}]});
        assert_eq!(
            classify_payload(sns.clone()).unwrap(),
            InboundPayload::Stream(sns)
        );
        let http = json!({"version": "2.0", "rawPath": "/lambda-url/inbound-webhook/webhooks/genesys/acme/support/live",
            "headers": {"X-Hub-Signature-256": "sha256=abc"}, "body": "aGk=", "isBase64Encoded": true,
            "requestContext": {"http": {"method": "POST"}}});
        let InboundPayload::Http(req) = classify_payload(http.clone()).unwrap() else {
            panic!("an HTTP API request")
        };
        assert_eq!(req.path, "/webhooks/genesys/acme/support/live");
        assert_eq!(req.headers["x-hub-signature-256"], "sha256=abc");
        assert_eq!(req.body, b"hi");
        let mut bad = http;
        bad["body"] = json!("not base64!");
        assert_eq!(classify_payload(bad).unwrap_err().code(), "invalid_request");
        assert!(classify_payload(json!([1, 2])).is_err());
    }

    #[test]
    fn webhook_paths() {
        let (k, t, rest) = parse_webhook_path("/webhooks/genesys/acme/support/live").unwrap();
        assert_eq!(k, IntegrationKey::Genesys);
        assert_eq!(t.key(), "acme/support/live");
        assert_eq!(rest, "");
        let (k, _, rest) =
            parse_webhook_path("/webhooks/nice/acme/support/sandbox/2.0/channel/x/outbound")
                .unwrap();
        assert_eq!(k, IntegrationKey::Nice);
        assert_eq!(rest, "/2.0/channel/x/outbound");
        assert!(parse_webhook_path("/webhooks/avaya/acme/support/live").is_none());
        assert!(parse_webhook_path("/webhooks/genesys/acme/support/prod").is_none());
        assert!(parse_webhook_path("/webhooks/genesys/acme").is_none());
        assert!(parse_webhook_path("/other").is_none());
    }
}

/// What one SNS delivery did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamReport {
    pub stored: usize,
    pub duplicates: usize,
    /// From a topic that is not the session's tenant's: dropped unwritten.
    pub rejected: usize,
    /// No session matches (e.g. a contact not opened by us): acknowledged.
    pub unknown: usize,
}

/// Handles a Lambda SNS event (platform streaming, e.g. Amazon Connect).
/// Returns an error only when something must be retried (nothing is lost:
/// stored events are deduplicated on the retry).
#[tracing::instrument(name = "stream_event", skip_all, fields(records = tracing::field::Empty))]
pub async fn handle_stream_event(deps: &Deps, event: &Value) -> Result<StreamReport> {
    let records = event["Records"]
        .as_array()
        .ok_or_else(|| HandoffError::invalid("not an SNS event: no Records"))?;
    tracing::Span::current().record("records", records.len());
    let mut report = StreamReport::default();
    let sources: Vec<_> = deps
        .registry
        .keys()
        .filter_map(|k| deps.provider(k).ok())
        .filter(|p| p.stream().is_some())
        .collect();
    for record in records {
        let sns = &record["Sns"];
        let topic = sns["TopicArn"].as_str().unwrap_or_default();
        let parsed = sources.iter().find_map(|p| {
            p.stream()
                .and_then(|s| s.parse_record(sns).ok())
                .map(|e| (p, e))
        });
        let Some((provider, event)) = parsed else {
            tracing::warn!(topic, "SNS record no provider understands; dropped");
            report.rejected += 1;
            continue;
        };
        let key = provider.key();
        let ConversationRef::Provider(cid) = &event.conversation else {
            report.rejected += 1;
            continue;
        };
        let Some(session) = deps.store.find_by_conversation_any_tenant(key, cid).await? else {
            report.unknown += 1;
            continue;
        };
        let tenant = session.tenant.clone();
        let credentials = deps.secrets.integration(&tenant, key).await?;
        let source = provider.stream().expect("filtered on stream()");
        if !source.topic_allowed(&credentials, topic) {
            tracing::warn!(tenant = %tenant, topic, "SNS record from a topic not configured for this tenant");
            report.rejected += 1;
            continue;
        }
        let rules = EventRules::of(deps, &tenant).await;
        match apply_event(deps, &tenant, key, &event, rules).await? {
            Applied::Duplicate => report.duplicates += 1,
            _ => report.stored += 1,
        }
    }
    Ok(report)
}
