//! Session state in one DynamoDB table.
//!
//! Items (`pk`, `sk`):
//! * session      `T#{tenant}#S#{session}` / `SESSION`
//! * client event `T#{tenant}#S#{session}` / `EV#{seq:012}`
//! * outbound msg `T#{tenant}#S#{session}` / `MSG#{message_id}` (idempotency:
//!   `sending`, `queued`, `sent` or `failed`)
//! * queued msg   `T#{tenant}#S#{session}` / `OQ#{position:012}` (the text of a
//!   customer message waiting for the platform, in send order)
//! * dedupe key   `T#{tenant}#D#{provider}#{key}` / `DEDUPE`
//! * lease        `LEASE#{name}` / `LEASE`
//!
//! Index `by_conversation` (`gsi1pk` = `C#{provider}#{conversation_id}`) finds a
//! session from a platform's id. Index `work` (`gsi2pk`) is sparse: sessions
//! still open sit under `LIVE#{provider}` and client events not yet pushed under
//! `PUSH`, so the poller reads only what needs work. A session holding agent
//! messages in its reorder window ([`crate::reorder`]) has a marker item
//! `T#{tenant}#S#{session}` / `HOLD` under `HOLD`, sorted by when the first
//! hold is due; it is written and removed in the same transaction as the hold.
//!
//! Every change is a conditional write on `version` (or on absence), never a
//! blind read-modify-write; an event, its dedupe key and the session's
//! `next_seq` move together in one transaction, so `seq` is gap-free.
//!
//! The outbound queue: the session item holds the queue's bounds and retry
//! time ([`OutQueue`]); enqueueing and draining move the bounds, the `OQ#` item
//! and the `MSG#` state in one transaction. The poller finds queues to drain
//! from the live sessions it lists through the `work` index anyway.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use serde_json::Value;

use crate::domain::{IntegrationKey, SessionId, SessionState, Tenant};
use crate::error::{HandoffError, Result};
use crate::events::{ClientEvent, ClientEventType, EndedBy};
use crate::reorder::{self, HeldEvent};
use crate::time::{now_ms, rfc3339_ms};

/// Index from a platform's conversation id to our session.
pub const INDEX_BY_CONVERSATION: &str = "by_conversation";
/// Sparse index of work for the poller.
pub const INDEX_WORK: &str = "work";
/// How long sessions, events and dedupe keys are kept (TTL).
pub const RETENTION_SECS: i64 = 7 * 24 * 3600;
/// Retries of an optimistic update that lost a race before giving up.
const MAX_RACE_RETRIES: usize = 20;
/// Longest wait between two drain attempts of a session's outbound queue.
pub const MAX_QUEUE_RETRY_MS: i64 = 30_000;

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, key: &str) -> Option<i64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|t| t.parse().ok())
}

fn get_json(item: &Item, key: &str) -> Value {
    get_s(item, key)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

fn session_pk(tenant: &Tenant, session: &SessionId) -> String {
    format!("T#{}#S#{}", tenant.key(), session.as_str())
}

fn conversation_key(provider: IntegrationKey, conversation_id: &str) -> String {
    format!("C#{}#{}", provider.as_str(), conversation_id)
}

fn live_key(provider: IntegrationKey) -> String {
    format!("LIVE#{}", provider.as_str())
}

const PUSH_KEY: &str = "PUSH";
const HOLD_KEY: &str = "HOLD";

fn event_sk(seq: u64) -> String {
    format!("EV#{seq:012}")
}

fn queued_sk(position: u64) -> String {
    format!("OQ#{position:012}")
}

fn message_sk(message_id: &str) -> String {
    format!("MSG#{message_id}")
}

/// Delay before retry number `attempts + 1` of something a platform refused:
/// 1 s, 2 s, 4 s … capped at `max_ms`.
pub fn backoff_ms(attempts: u32, max_ms: i64) -> i64 {
    (1000i64 << attempts.min(20)).min(max_ms)
}

/// Why a transaction was cancelled, one entry per item (`None` = no reason).
fn cancellation_reasons<R>(
    err: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
) -> Vec<Option<String>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A conditional write refused because its condition did not hold.
fn condition_failed<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error()
        .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException"))
}

fn store_err(what: &str, err: impl std::fmt::Debug) -> HandoffError {
    // The SDK's Debug output carries no secrets (requests are signed, not echoed).
    HandoffError::Internal(format!("store: {what}: {err:?}"))
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub tenant: Tenant,
    pub session_id: SessionId,
    pub provider: IntegrationKey,
    pub state: SessionState,
    pub version: u64,
    /// Highest `seq` assigned so far (0 = none).
    pub next_seq: u64,
    /// Highest `seq` the runtime acknowledged, in order.
    pub delivered_seq: u64,
    pub provider_conversation_id: Option<String>,
    /// Provider-specific state (participant ids, agent, tokens' ids — never secrets).
    pub provider_data: Value,
    /// The validated start request: user, transcript, context, routing.
    pub handoff: Value,
    /// What start-handoff returned, replayed on a repeated call.
    pub start_result: Option<Value>,
    pub ended_by: Option<EndedBy>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub expires_at: i64,
    /// Customer messages waiting for the platform.
    pub outq: OutQueue,
    /// Failed attempts to open the platform conversation so far.
    pub start_attempts: u32,
    /// When the poller may try to open the conversation again.
    pub start_due_ms: Option<i64>,
    /// Agent messages waiting in the reorder window, in arrival order.
    pub held: Vec<HeldEvent>,
}

/// Bounds of a session's outbound queue: positions `head..=tail` wait, in
/// order. Positions are never reused, so a dropped queue leaves no ambiguity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutQueue {
    /// Position of the next message to send.
    pub head: u64,
    /// Position of the last message queued (`head - 1` when empty).
    pub tail: u64,
    /// When the next drain attempt is due.
    pub due_ms: i64,
    /// Failed drain attempts since the last message went out.
    pub attempts: u32,
}

impl Default for OutQueue {
    fn default() -> Self {
        Self {
            head: 1,
            tail: 0,
            due_ms: 0,
            attempts: 0,
        }
    }
}

impl OutQueue {
    pub fn len(&self) -> u64 {
        (self.tail + 1).saturating_sub(self.head)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Due for a drain attempt at `now_ms`.
    pub fn is_due(&self, now_ms: i64) -> bool {
        !self.is_empty() && self.due_ms <= now_ms
    }

    /// The queue after a failed drain attempt: tried again after a backoff.
    pub fn deferred(mut self, now_ms: i64) -> Self {
        self.due_ms = now_ms + backoff_ms(self.attempts, MAX_QUEUE_RETRY_MS);
        self.attempts += 1;
        self
    }

    /// The queue after its head went out (or was given up): the next is due now.
    pub fn advanced(mut self, now_ms: i64) -> Self {
        self.head += 1;
        self.attempts = 0;
        self.due_ms = now_ms;
        self
    }

    /// The queue with one more message at the tail; its position.
    pub fn pushed(mut self, now_ms: i64) -> (Self, u64) {
        if self.is_empty() {
            // A fresh queue: its first message was just refused by the platform.
            self.attempts = 0;
            self.due_ms = now_ms + backoff_ms(0, MAX_QUEUE_RETRY_MS);
        }
        self.tail += 1;
        (self, self.tail)
    }

    /// The queue emptied without sending (the session ended).
    pub fn dropped(mut self) -> Self {
        self.head = self.tail + 1;
        self.attempts = 0;
        self
    }
}

impl SessionRecord {
    pub fn new(
        tenant: Tenant,
        session_id: SessionId,
        provider: IntegrationKey,
        handoff: Value,
    ) -> Self {
        let now = now_ms();
        Self {
            tenant,
            session_id,
            provider,
            state: SessionState::Pending,
            version: 1,
            next_seq: 0,
            delivered_seq: 0,
            provider_conversation_id: None,
            provider_data: Value::Object(Default::default()),
            handoff,
            start_result: None,
            ended_by: None,
            created_at_ms: now,
            updated_at_ms: now,
            expires_at: now / 1000 + RETENTION_SECS,
            outq: OutQueue::default(),
            start_attempts: 0,
            start_due_ms: None,
            held: Vec::new(),
        }
    }

    fn pk(&self) -> String {
        session_pk(&self.tenant, &self.session_id)
    }

    fn to_item(&self) -> Item {
        let mut item = Item::new();
        item.insert("pk".into(), s(self.pk()));
        item.insert("sk".into(), s("SESSION"));
        item.insert("tenant".into(), s(self.tenant.key()));
        item.insert("session_id".into(), s(self.session_id.as_str()));
        item.insert("provider".into(), s(self.provider.as_str()));
        item.insert("state".into(), s(self.state.as_str()));
        item.insert("version".into(), n(self.version));
        item.insert("next_seq".into(), n(self.next_seq));
        item.insert("delivered_seq".into(), n(self.delivered_seq));
        item.insert("provider_data".into(), s(self.provider_data.to_string()));
        item.insert("handoff".into(), s(self.handoff.to_string()));
        item.insert("created_at".into(), n(self.created_at_ms));
        item.insert("updated_at".into(), n(self.updated_at_ms));
        item.insert("expires_at".into(), n(self.expires_at));
        item.insert("outq_head".into(), n(self.outq.head));
        item.insert("outq_tail".into(), n(self.outq.tail));
        item.insert("outq_due".into(), n(self.outq.due_ms));
        item.insert("outq_attempts".into(), n(self.outq.attempts));
        item.insert("start_attempts".into(), n(self.start_attempts));
        if let Some(d) = self.start_due_ms {
            item.insert("start_due".into(), n(d));
        }
        if !self.held.is_empty() {
            let held = serde_json::to_string(&self.held).unwrap_or_else(|_| "[]".into());
            item.insert("held".into(), s(held));
        }
        if let Some(c) = &self.provider_conversation_id {
            item.insert("conversation_id".into(), s(c.clone()));
            item.insert("gsi1pk".into(), s(conversation_key(self.provider, c)));
            item.insert("gsi1sk".into(), s(self.tenant.key()));
        }
        if let Some(r) = &self.start_result {
            item.insert("start_result".into(), s(r.to_string()));
        }
        if let Some(e) = self.ended_by {
            item.insert("ended_by".into(), s(e.as_str()));
        }
        if !self.state.is_terminal() {
            item.insert("gsi2pk".into(), s(live_key(self.provider)));
            item.insert(
                "gsi2sk".into(),
                s(format!("{}#{}", self.tenant.key(), self.session_id)),
            );
        }
        item
    }

    fn from_item(item: &Item) -> Result<Self> {
        let field = |k: &str| {
            get_s(item, k).ok_or_else(|| HandoffError::internal(format!("session item lacks {k}")))
        };
        let ended_by = match get_s(item, "ended_by") {
            Some("agent") => Some(EndedBy::Agent),
            Some("user") => Some(EndedBy::User),
            Some("system") => Some(EndedBy::System),
            Some("timeout") => Some(EndedBy::Timeout),
            _ => None,
        };
        Ok(Self {
            tenant: Tenant::from_key(field("tenant")?)?,
            session_id: SessionId::parse(field("session_id")?)?,
            provider: IntegrationKey::parse(field("provider")?)?,
            state: SessionState::parse(field("state")?)?,
            version: get_n(item, "version").unwrap_or(0) as u64,
            next_seq: get_n(item, "next_seq").unwrap_or(0) as u64,
            delivered_seq: get_n(item, "delivered_seq").unwrap_or(0) as u64,
            provider_conversation_id: get_s(item, "conversation_id").map(str::to_owned),
            provider_data: get_json(item, "provider_data"),
            handoff: get_json(item, "handoff"),
            start_result: get_s(item, "start_result").and_then(|t| serde_json::from_str(t).ok()),
            ended_by,
            created_at_ms: get_n(item, "created_at").unwrap_or(0),
            updated_at_ms: get_n(item, "updated_at").unwrap_or(0),
            expires_at: get_n(item, "expires_at").unwrap_or(i64::MAX),
            outq: OutQueue {
                head: get_n(item, "outq_head").unwrap_or(1).max(1) as u64,
                tail: get_n(item, "outq_tail").unwrap_or(0).max(0) as u64,
                due_ms: get_n(item, "outq_due").unwrap_or(0),
                attempts: get_n(item, "outq_attempts").unwrap_or(0).max(0) as u32,
            },
            start_attempts: get_n(item, "start_attempts").unwrap_or(0).max(0) as u32,
            start_due_ms: get_n(item, "start_due"),
            held: get_s(item, "held")
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default(),
        })
    }
}

/// A client event as stored in the session's log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event: ClientEvent,
    /// The exact JSON pushed to the runtime (signed as is).
    pub body: String,
    pub pushed: bool,
    pub attempts: u32,
}

/// A client event to append: its type and data; `seq` and `at` are assigned.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewEvent {
    pub event_type: ClientEventType,
    pub data: Value,
}

impl NewEvent {
    pub fn new(event_type: ClientEventType, data: Value) -> Self {
        Self { event_type, data }
    }
}

/// A change to a session made together with appended events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionChange {
    pub state: Option<SessionState>,
    pub provider_conversation_id: Option<String>,
    pub provider_data: Option<Value>,
    pub start_result: Option<Value>,
    pub ended_by: Option<EndedBy>,
    /// Hold this agent message in the reorder window instead of appending it.
    pub hold: Option<HeldEvent>,
    /// Release every message held so far first (an agent left, a join or a
    /// transfer); `hold` is kept behind them. Ends release everything anyway.
    pub release_all: bool,
}

impl SessionChange {
    fn apply(&self, record: &mut SessionRecord) {
        if let Some(state) = self.state {
            record.state = state;
        }
        if let Some(c) = &self.provider_conversation_id {
            record.provider_conversation_id = Some(c.clone());
        }
        if let Some(d) = &self.provider_data {
            record.provider_data = d.clone();
        }
        if let Some(r) = &self.start_result {
            record.start_result = Some(r.clone());
        }
        if let Some(e) = self.ended_by {
            record.ended_by = Some(e);
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendOutcome {
    /// Written; the session as it now is and the events with their `seq`.
    Appended {
        session: Box<SessionRecord>,
        events: Vec<StoredEvent>,
    },
    /// The dedupe key was already stored: nothing written.
    Duplicate,
}

/// State of a customer message claimed for sending.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageClaim {
    /// Ours to send now.
    Claimed,
    /// Sent before; the platform's id for it.
    AlreadySent(Value),
    /// Another invocation is sending it right now.
    InFlight,
    /// Waiting in the session's outbound queue.
    Queued,
    /// Given up: the platform refused it for good (the error code).
    Failed(String),
}

/// What [`Store::enqueue_message`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    /// Queued now, at this position.
    At(u64),
    /// The message id was known already; its state.
    Exists(MessageClaim),
}

/// A customer message waiting in a session's outbound queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedMessage {
    pub position: u64,
    pub message: crate::request::CustomerMessage,
    pub queued_at_ms: i64,
}

/// How a queued message left the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Dequeue {
    /// Sent; the platform's answer.
    Sent(Value),
    /// Refused for good; the error code.
    Failed(String),
}

/// What one attempt of a session transaction did.
enum TxOutcome {
    Done,
    /// The session changed under us: read it again.
    Raced,
    /// This item (index among the extra items) failed its condition.
    Refused(usize),
}

/// The DynamoDB table.
#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    table: String,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the session unless one exists; returns the stored one either way
    /// and whether it was created now.
    pub async fn create_session(&self, record: &SessionRecord) -> Result<(SessionRecord, bool)> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(record.to_item()))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now_ms() / 1000))
            .send()
            .await;
        match put {
            Ok(_) => Ok((record.clone(), true)),
            Err(e) if condition_failed(&e) => {
                let existing = self
                    .get_session(&record.tenant, &record.session_id)
                    .await?
                    .ok_or_else(|| HandoffError::Conflict("session being replaced".into()))?;
                Ok((existing, false))
            }
            Err(e) => Err(store_err("create session", e)),
        }
    }

    /// The session, or `None` (also when its TTL has passed but it is not yet deleted).
    pub async fn get_session(
        &self,
        tenant: &Tenant,
        session: &SessionId,
    ) -> Result<Option<SessionRecord>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(session_pk(tenant, session)))
            .key("sk", s("SESSION"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_err("get session", e))?;
        match out.item {
            Some(item) if get_n(&item, "expires_at").unwrap_or(i64::MAX) > now_ms() / 1000 => {
                Ok(Some(SessionRecord::from_item(&item)?))
            }
            _ => Ok(None),
        }
    }

    /// Finds the tenant's session for a platform conversation id. Another
    /// tenant's session with the same id is never returned.
    pub async fn find_by_conversation(
        &self,
        tenant: &Tenant,
        provider: IntegrationKey,
        conversation_id: &str,
    ) -> Result<Option<SessionRecord>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INDEX_BY_CONVERSATION)
            .key_condition_expression("gsi1pk = :c AND gsi1sk = :t")
            .expression_attribute_values(":c", s(conversation_key(provider, conversation_id)))
            .expression_attribute_values(":t", s(tenant.key()))
            .send()
            .await
            .map_err(|e| store_err("query by conversation", e))?;
        let Some(item) = out.items().first() else {
            return Ok(None);
        };
        // The index is eventually consistent: read the item itself.
        let found = SessionRecord::from_item(item)?;
        self.get_session(&found.tenant, &found.session_id).await
    }

    /// Finds a session by platform conversation id whatever its tenant: for
    /// platforms whose events do not carry our tenant (SNS streaming). The
    /// caller must check the event's origin against that tenant's configuration.
    pub async fn find_by_conversation_any_tenant(
        &self,
        provider: IntegrationKey,
        conversation_id: &str,
    ) -> Result<Option<SessionRecord>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INDEX_BY_CONVERSATION)
            .key_condition_expression("gsi1pk = :c")
            .expression_attribute_values(":c", s(conversation_key(provider, conversation_id)))
            .send()
            .await
            .map_err(|e| store_err("query by conversation", e))?;
        match out.items() {
            [] => Ok(None),
            [item] => {
                let found = SessionRecord::from_item(item)?;
                self.get_session(&found.tenant, &found.session_id).await
            }
            _ => Err(HandoffError::internal(
                "platform conversation id belongs to several sessions",
            )),
        }
    }

    /// Appends events (and an optional dedupe key and session change) atomically,
    /// assigning the next gap-free `seq` values. Retries lost races.
    pub async fn append(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        dedupe: Option<(IntegrationKey, &str)>,
        decide: impl Fn(&SessionRecord) -> Result<(Vec<NewEvent>, SessionChange)>,
    ) -> Result<AppendOutcome> {
        self.append_from(tenant, session, None, dedupe, decide)
            .await
    }

    /// [`Store::append`] starting from `read`, a consistent read of the
    /// session just made by the caller (saves reading it again); a lost race
    /// reads it afresh as usual.
    pub async fn append_from(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        mut read: Option<SessionRecord>,
        dedupe: Option<(IntegrationKey, &str)>,
        decide: impl Fn(&SessionRecord) -> Result<(Vec<NewEvent>, SessionChange)>,
    ) -> Result<AppendOutcome> {
        for _ in 0..MAX_RACE_RETRIES {
            let current = match read.take() {
                Some(r) if r.tenant == *tenant && r.session_id == *session => r,
                _ => self
                    .get_session(tenant, session)
                    .await?
                    .ok_or(HandoffError::SessionNotFound)?,
            };
            let (events, change) = decide(&current)?;
            match self.try_append(&current, dedupe, &events, &change).await? {
                Some(outcome) => return Ok(outcome),
                None => continue,
            }
        }
        Err(HandoffError::Conflict(
            "session updated concurrently too often".into(),
        ))
    }

    /// One attempt; `None` when the session changed under us.
    async fn try_append(
        &self,
        current: &SessionRecord,
        dedupe: Option<(IntegrationKey, &str)>,
        events: &[NewEvent],
        change: &SessionChange,
    ) -> Result<Option<AppendOutcome>> {
        let now = now_ms();
        let mut next = current.clone();
        change.apply(&mut next);
        next.version = current.version + 1;
        next.updated_at_ms = now;
        // Reorder window: held agent messages whose time has come go first.
        let terminal = next.state.is_terminal();
        let (released, keep) = if change.release_all && !terminal {
            // Everything held belongs before the boundary this change makes
            // (an agent left, a join or transfer); a new hold waits behind it.
            let (out, _) = reorder::release(&current.held, now, true);
            (out, change.hold.iter().cloned().collect())
        } else {
            let mut pending = current.held.clone();
            pending.extend(change.hold.clone());
            let all = terminal || pending.len() > reorder::MAX_HELD;
            reorder::release(&pending, now, all)
        };
        next.held = keep;
        let events: Vec<NewEvent> = released
            .into_iter()
            .map(|h| h.event)
            .chain(events.iter().cloned())
            .collect();
        let mut stored = Vec::with_capacity(events.len());
        for e in &events {
            next.next_seq += 1;
            let event = ClientEvent {
                session_id: current.session_id.to_string(),
                seq: next.next_seq,
                event_type: e.event_type,
                at: rfc3339_ms(now),
                data: e.data.clone(),
            };
            let body = serde_json::to_string(&event).map_err(HandoffError::internal)?;
            stored.push(StoredEvent {
                event,
                body,
                pushed: false,
                attempts: 0,
            });
        }
        if next.state != current.state && !current.state.can_become(next.state) {
            return Err(HandoffError::internal(format!(
                "transition {} -> {} refused",
                current.state.as_str(),
                next.state.as_str()
            )));
        }
        if next.state.is_terminal() && !current.state.is_terminal() && !next.outq.is_empty() {
            // The platform conversation is gone: nothing can deliver them now.
            // (end-session drains the queue before a user-initiated end.)
            tracing::warn!(
                tenant = %current.tenant,
                session = %current.session_id,
                dropped = next.outq.len(),
                "session ended with queued customer messages; dropped"
            );
            next.outq = next.outq.dropped();
        }

        let mut items = Vec::new();
        // The whole session item is rewritten, guarded by its version.
        items.push(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(next.to_item()))
                        .condition_expression("version = :v")
                        .expression_attribute_values(":v", n(current.version))
                        .build()
                        .map_err(HandoffError::internal)?,
                )
                .build(),
        );
        let mut dedupe_index = None;
        if let Some((provider, key)) = dedupe {
            dedupe_index = Some(items.len());
            let mut item = Item::new();
            item.insert(
                "pk".into(),
                s(format!(
                    "T#{}#D#{}#{}",
                    current.tenant.key(),
                    provider.as_str(),
                    key
                )),
            );
            item.insert("sk".into(), s("DEDUPE"));
            item.insert("session_id".into(), s(current.session_id.as_str()));
            item.insert("at".into(), n(now));
            item.insert("expires_at".into(), n(now / 1000 + RETENTION_SECS));
            if current.state.is_terminal() {
                // After SESSION_END traffic is recorded and acknowledged, never delivered.
                item.insert("late".into(), AttributeValue::Bool(true));
            }
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(item))
                            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
                            .expression_attribute_values(":now", n(now / 1000))
                            .build()
                            .map_err(HandoffError::internal)?,
                    )
                    .build(),
            );
        }
        for e in &stored {
            let mut item = Item::new();
            item.insert("pk".into(), s(current.pk()));
            item.insert("sk".into(), s(event_sk(e.event.seq)));
            item.insert("seq".into(), n(e.event.seq));
            item.insert("type".into(), s(e.event.event_type.as_str()));
            item.insert("body".into(), s(e.body.clone()));
            item.insert("pushed".into(), AttributeValue::Bool(false));
            item.insert("attempts".into(), n(0));
            item.insert("expires_at".into(), n(now / 1000 + RETENTION_SECS));
            item.insert("gsi2pk".into(), s(PUSH_KEY));
            item.insert("gsi2sk".into(), s(format!("{now:013}#{}", current.pk())));
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(item))
                            .condition_expression("attribute_not_exists(pk)")
                            .build()
                            .map_err(HandoffError::internal)?,
                    )
                    .build(),
            );
        }
        if next.held != current.held {
            items.push(hold_marker(&self.table, &next, now)?);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(AppendOutcome::Appended {
                session: Box::new(next),
                events: stored,
            })),
            Err(err) => {
                let reasons = cancellation_reasons(&err);
                let failed = |i: usize| {
                    reasons
                        .get(i)
                        .and_then(|c| c.as_deref())
                        .is_some_and(|c| c == "ConditionalCheckFailed")
                };
                if dedupe_index.is_some_and(failed) {
                    return Ok(Some(AppendOutcome::Duplicate));
                }
                if failed(0)
                    || reasons
                        .iter()
                        .any(|r| r.as_deref() == Some("TransactionConflict"))
                {
                    return Ok(None);
                }
                Err(store_err("append events", err))
            }
        }
    }

    /// Records a dedupe key alone (late traffic for an unknown or ended session
    /// is acknowledged once). Returns false if it was already there.
    pub async fn remember(
        &self,
        tenant: &Tenant,
        provider: IntegrationKey,
        key: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(
                "pk",
                s(format!(
                    "T#{}#D#{}#{}",
                    tenant.key(),
                    provider.as_str(),
                    key
                )),
            )
            .item("sk", s("DEDUPE"))
            .item("at", n(now))
            .item("late", AttributeValue::Bool(true))
            .item("expires_at", n(now / 1000 + RETENTION_SECS))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now / 1000))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(store_err("remember", e)),
        }
    }

    /// Events after `after_seq`, in `seq` order.
    pub async fn events_after(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
                .expression_attribute_values(":pk", s(session_pk(tenant, session)))
                .expression_attribute_values(":a", s(event_sk(after_seq + 1)))
                .expression_attribute_values(":b", s("EV#999999999999"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_err("query events", e))?;
            for item in page.items() {
                let body = get_s(item, "body").unwrap_or_default().to_owned();
                let event: ClientEvent =
                    serde_json::from_str(&body).map_err(HandoffError::internal)?;
                out.push(StoredEvent {
                    event,
                    body,
                    pushed: item.get("pushed").and_then(|v| v.as_bool().ok()).copied()
                        == Some(true),
                    attempts: get_n(item, "attempts").unwrap_or(0) as u32,
                });
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Marks an event pushed and advances the session's `delivered_seq`.
    pub async fn mark_pushed(&self, tenant: &Tenant, session: &SessionId, seq: u64) -> Result<()> {
        let pk = session_pk(tenant, session);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk.clone()))
            .key("sk", s(event_sk(seq)))
            .update_expression("SET pushed = :t, pushed_at = :now REMOVE gsi2pk, gsi2sk")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":now", n(now_ms()))
            .send()
            .await
            .map_err(|e| store_err("mark pushed", e))?;
        // Only ever moves forward; losing this race is fine.
        let _ = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s("SESSION"))
            .update_expression("SET delivered_seq = :seq")
            .condition_expression("attribute_exists(pk) AND delivered_seq < :seq")
            .expression_attribute_values(":seq", n(seq))
            .send()
            .await;
        Ok(())
    }

    /// Schedules another push attempt of an event at `due_ms`.
    pub async fn defer_push(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        seq: u64,
        due_ms: i64,
    ) -> Result<()> {
        let pk = session_pk(tenant, session);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk.clone()))
            .key("sk", s(event_sk(seq)))
            .update_expression("SET attempts = attempts + :one, gsi2sk = :due")
            .condition_expression("attribute_exists(pk) AND pushed = :f")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":due", s(format!("{due_ms:013}#{pk}")))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| {
                if condition_failed(&e) {
                    Ok(()) // pushed meanwhile
                } else {
                    Err(store_err("defer push", e))
                }
            })
    }

    /// Sessions with an unpushed event due by `now_ms` (distinct, oldest first).
    pub async fn sessions_with_due_pushes(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(Tenant, SessionId)>> {
        self.due_work(PUSH_KEY, now_ms, limit).await
    }

    /// Sessions with held agent messages due by `now_ms` (oldest first).
    pub async fn sessions_with_due_holds(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(Tenant, SessionId)>> {
        self.due_work(HOLD_KEY, now_ms, limit).await
    }

    /// Distinct sessions under `key` in the `work` index due by `now_ms`.
    async fn due_work(
        &self,
        key: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(Tenant, SessionId)>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INDEX_WORK)
            .key_condition_expression("gsi2pk = :p AND gsi2sk < :due")
            .expression_attribute_values(":p", s(key))
            .expression_attribute_values(":due", s(format!("{:013}~", now_ms)))
            .limit(1000)
            .send()
            .await
            .map_err(|e| store_err("query due work", e))?;
        let mut seen = Vec::<(Tenant, SessionId)>::new();
        for item in out.items() {
            let Some(pk) = get_s(item, "pk") else {
                continue;
            };
            let Some((tenant, session)) = parse_session_pk(pk) else {
                continue;
            };
            if !seen.iter().any(|(t, s)| *t == tenant && *s == session) {
                seen.push((tenant, session));
            }
            if seen.len() >= limit {
                break;
            }
        }
        Ok(seen)
    }

    /// Open sessions of a provider (any tenant).
    pub async fn live_sessions(&self, provider: IntegrationKey) -> Result<Vec<SessionRecord>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(INDEX_WORK)
                .key_condition_expression("gsi2pk = :p")
                .expression_attribute_values(":p", s(live_key(provider)))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_err("query live sessions", e))?;
            for item in page.items() {
                if let Ok(r) = SessionRecord::from_item(item) {
                    if r.expires_at > now_ms() / 1000 {
                        out.push(r);
                    }
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Claims a customer message for sending (idempotency on the runtime's id).
    /// `text_digest` ties the id to its text: the same id with other text is refused.
    pub async fn claim_message(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        message_id: &str,
        text_digest: &str,
        lease_ms: i64,
    ) -> Result<MessageClaim> {
        let now = now_ms();
        let pk = session_pk(tenant, session);
        let sk = message_sk(message_id);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk.clone()))
            .item("sk", s(sk.clone()))
            .item("state", s("sending"))
            .item("digest", s(text_digest))
            .item("lease_until", n(now + lease_ms))
            .item("expires_at", n(now / 1000 + RETENTION_SECS))
            .condition_expression(
                "attribute_not_exists(pk) OR (#st = :sending AND lease_until < :now AND digest = :d)",
            )
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":sending", s("sending"))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":d", s(text_digest))
            .send()
            .await;
        match put {
            Ok(_) => Ok(MessageClaim::Claimed),
            Err(e) if condition_failed(&e) => self.message_state(pk, sk, text_digest).await,
            Err(e) => Err(store_err("claim message", e)),
        }
    }

    /// The state of a message id that is already taken, for the runtime's retry.
    async fn message_state(
        &self,
        pk: String,
        sk: String,
        text_digest: &str,
    ) -> Result<MessageClaim> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_err("get message", e))?
            .item
            .unwrap_or_default();
        if get_s(&item, "digest") != Some(text_digest) {
            return Err(HandoffError::invalid(
                "message.id was already used for a different text",
            ));
        }
        Ok(match get_s(&item, "state") {
            Some("sent") => MessageClaim::AlreadySent(get_json(&item, "result")),
            Some("queued") => MessageClaim::Queued,
            Some("failed") => {
                MessageClaim::Failed(get_s(&item, "error_code").unwrap_or("failed").to_owned())
            }
            _ => MessageClaim::InFlight,
        })
    }

    /// Writes `next` over `current` (guarded by `current.version`) together
    /// with `extra` items, in one transaction.
    async fn transact_session(
        &self,
        current: &SessionRecord,
        next: &SessionRecord,
        extra: Vec<TransactWriteItem>,
    ) -> Result<TxOutcome> {
        let mut items = vec![TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(next.to_item()))
                    .condition_expression("version = :v")
                    .expression_attribute_values(":v", n(current.version))
                    .build()
                    .map_err(HandoffError::internal)?,
            )
            .build()];
        items.extend(extra);
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(TxOutcome::Done),
            Err(err) => {
                let reasons = cancellation_reasons(&err);
                let failed = |c: &Option<String>| c.as_deref() == Some("ConditionalCheckFailed");
                if reasons.first().is_some_and(failed)
                    || reasons
                        .iter()
                        .any(|r| r.as_deref() == Some("TransactionConflict"))
                {
                    return Ok(TxOutcome::Raced);
                }
                match reasons.iter().skip(1).position(failed) {
                    Some(i) => Ok(TxOutcome::Refused(i)),
                    None => Err(store_err("session transaction", err)),
                }
            }
        }
    }

    /// Rewrites the session with what `change` makes of it (`None`: leave it),
    /// guarded by its version; retries lost races. Returns the session as stored.
    pub async fn update_session(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        change: impl Fn(&SessionRecord) -> Option<SessionRecord>,
    ) -> Result<SessionRecord> {
        for _ in 0..MAX_RACE_RETRIES {
            let current = self
                .get_session(tenant, session)
                .await?
                .ok_or(HandoffError::SessionNotFound)?;
            let Some(mut next) = change(&current) else {
                return Ok(current);
            };
            next.version = current.version + 1;
            next.updated_at_ms = now_ms();
            if let TxOutcome::Done = self.transact_session(&current, &next, vec![]).await? {
                return Ok(next);
            }
        }
        Err(HandoffError::Conflict(
            "session updated concurrently too often".into(),
        ))
    }

    /// Puts a customer message at the tail of the session's outbound queue.
    /// With `claimed`, the message is ours in `sending` state (its send just
    /// failed) and moves to `queued`; otherwise its id must be new (or an
    /// abandoned claim), else the known state is returned. Refused on an
    /// ended session.
    pub async fn enqueue_message(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        message: &crate::request::CustomerMessage,
        text_digest: &str,
        claimed: bool,
    ) -> Result<Enqueued> {
        let pk = session_pk(tenant, session);
        let sk = message_sk(&message.id);
        for _ in 0..MAX_RACE_RETRIES {
            let current = self
                .get_session(tenant, session)
                .await?
                .ok_or(HandoffError::SessionNotFound)?;
            if current.state.is_terminal() {
                return Err(HandoffError::SessionEnded);
            }
            let now = now_ms();
            let mut next = current.clone();
            let (outq, position) = current.outq.pushed(now);
            next.outq = outq;
            next.version = current.version + 1;
            next.updated_at_ms = now;
            let expires = n(now / 1000 + RETENTION_SECS);
            let msg = if claimed {
                TransactWriteItem::builder()
                    .update(
                        aws_sdk_dynamodb::types::Update::builder()
                            .table_name(&self.table)
                            .key("pk", s(pk.clone()))
                            .key("sk", s(sk.clone()))
                            .update_expression(
                                "SET #st = :queued, qpos = :pos, queued_at = :now REMOVE lease_until",
                            )
                            .condition_expression("#st = :sending AND digest = :d")
                            .expression_attribute_names("#st", "state")
                            .expression_attribute_values(":queued", s("queued"))
                            .expression_attribute_values(":sending", s("sending"))
                            .expression_attribute_values(":pos", n(position))
                            .expression_attribute_values(":now", n(now))
                            .expression_attribute_values(":d", s(text_digest))
                            .build()
                            .map_err(HandoffError::internal)?,
                    )
                    .build()
            } else {
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .item("pk", s(pk.clone()))
                            .item("sk", s(sk.clone()))
                            .item("state", s("queued"))
                            .item("digest", s(text_digest))
                            .item("qpos", n(position))
                            .item("queued_at", n(now))
                            .item("expires_at", expires.clone())
                            .condition_expression(
                                "attribute_not_exists(pk) OR (#st = :sending AND lease_until < :now AND digest = :d)",
                            )
                            .expression_attribute_names("#st", "state")
                            .expression_attribute_values(":sending", s("sending"))
                            .expression_attribute_values(":now", n(now))
                            .expression_attribute_values(":d", s(text_digest))
                            .build()
                            .map_err(HandoffError::internal)?,
                    )
                    .build()
            };
            let body = TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .item("pk", s(pk.clone()))
                        .item("sk", s(queued_sk(position)))
                        .item("message_id", s(message.id.clone()))
                        .item("text", s(message.text.clone()))
                        .item("queued_at", n(now))
                        .item("expires_at", expires)
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .map_err(HandoffError::internal)?,
                )
                .build();
            match self
                .transact_session(&current, &next, vec![msg, body])
                .await?
            {
                TxOutcome::Done => return Ok(Enqueued::At(position)),
                TxOutcome::Raced => continue,
                TxOutcome::Refused(0) => {
                    return Ok(Enqueued::Exists(
                        self.message_state(pk, sk, text_digest).await?,
                    ))
                }
                TxOutcome::Refused(_) => {
                    return Err(HandoffError::internal("queue position already taken"))
                }
            }
        }
        Err(HandoffError::Conflict(
            "session updated concurrently too often".into(),
        ))
    }

    /// The queued message at `position`, if it is still stored.
    pub async fn queued_message(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        position: u64,
    ) -> Result<Option<QueuedMessage>> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(session_pk(tenant, session)))
            .key("sk", s(queued_sk(position)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_err("get queued message", e))?
            .item;
        let Some(item) = item else {
            return Ok(None);
        };
        let (Some(id), Some(text)) = (get_s(&item, "message_id"), get_s(&item, "text")) else {
            return Err(HandoffError::internal("queued message item is incomplete"));
        };
        Ok(Some(QueuedMessage {
            position,
            message: crate::request::CustomerMessage {
                id: id.to_owned(),
                text: text.to_owned(),
            },
            queued_at_ms: get_n(&item, "queued_at").unwrap_or(0),
        }))
    }

    /// Takes the queue's head out: records how it ended on its `MSG#` item,
    /// deletes its `OQ#` item and advances the queue, in one transaction. A
    /// head already advanced past `position` is left as it is. Works on an
    /// ended session too (the message went out before the end was seen).
    pub async fn dequeue_message(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        position: u64,
        message_id: &str,
        how: &Dequeue,
    ) -> Result<()> {
        let pk = session_pk(tenant, session);
        for _ in 0..MAX_RACE_RETRIES {
            let current = self
                .get_session(tenant, session)
                .await?
                .ok_or(HandoffError::SessionNotFound)?;
            let now = now_ms();
            let mut next = current.clone();
            if current.outq.head == position && !current.outq.is_empty() {
                next.outq = current.outq.advanced(now);
            }
            next.version = current.version + 1;
            next.updated_at_ms = now;
            let mut update = aws_sdk_dynamodb::types::Update::builder()
                .table_name(&self.table)
                .key("pk", s(pk.clone()))
                .key("sk", s(message_sk(message_id)))
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#st", "state")
                .expression_attribute_values(":now", n(now));
            update = match how {
                Dequeue::Sent(result) => update
                    .update_expression("SET #st = :sent, #res = :r, sent_at = :now")
                    .expression_attribute_names("#res", "result")
                    .expression_attribute_values(":sent", s("sent"))
                    .expression_attribute_values(":r", s(result.to_string())),
                Dequeue::Failed(code) => update
                    .update_expression("SET #st = :failed, error_code = :c, failed_at = :now")
                    .expression_attribute_values(":failed", s("failed"))
                    .expression_attribute_values(":c", s(code.clone())),
            };
            let extra = vec![
                TransactWriteItem::builder()
                    .update(update.build().map_err(HandoffError::internal)?)
                    .build(),
                TransactWriteItem::builder()
                    .delete(
                        aws_sdk_dynamodb::types::Delete::builder()
                            .table_name(&self.table)
                            .key("pk", s(pk.clone()))
                            .key("sk", s(queued_sk(position)))
                            .build()
                            .map_err(HandoffError::internal)?,
                    )
                    .build(),
            ];
            match self.transact_session(&current, &next, extra).await? {
                TxOutcome::Done => return Ok(()),
                TxOutcome::Raced => continue,
                TxOutcome::Refused(_) => {
                    return Err(HandoffError::internal("queued message lacks its MSG item"))
                }
            }
        }
        Err(HandoffError::Conflict(
            "session updated concurrently too often".into(),
        ))
    }

    /// Records a failed drain attempt: the queue is tried again after a backoff.
    pub async fn defer_queue(&self, tenant: &Tenant, session: &SessionId) -> Result<SessionRecord> {
        self.update_session(tenant, session, |s| {
            if s.outq.is_empty() || s.state.is_terminal() {
                return None;
            }
            let mut next = s.clone();
            next.outq = s.outq.deferred(now_ms());
            Some(next)
        })
        .await
    }

    /// Records a claimed message as sent, with the platform's answer.
    pub async fn complete_message(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        message_id: &str,
        result: &Value,
    ) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(session_pk(tenant, session)))
            .key("sk", s(message_sk(message_id)))
            .update_expression("SET #st = :sent, #res = :r REMOVE lease_until")
            .expression_attribute_names("#st", "state")
            .expression_attribute_names("#res", "result")
            .expression_attribute_values(":sent", s("sent"))
            .expression_attribute_values(":r", s(result.to_string()))
            .send()
            .await
            .map_err(|e| store_err("complete message", e))?;
        Ok(())
    }

    /// Gives up a claim after a failed send, so a retry may send it.
    pub async fn release_message(
        &self,
        tenant: &Tenant,
        session: &SessionId,
        message_id: &str,
    ) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(session_pk(tenant, session)))
            .key("sk", s(message_sk(message_id)))
            .condition_expression("#st = :sending")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":sending", s("sending"))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| {
                if condition_failed(&e) {
                    Ok(())
                } else {
                    Err(store_err("release message", e))
                }
            })
    }

    /// Takes (or renews) a named lease until `until_ms`. True if now ours.
    pub async fn acquire_lease(&self, name: &str, owner: &str, until_ms: i64) -> Result<bool> {
        let now = now_ms();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("LEASE#{name}")))
            .item("sk", s("LEASE"))
            .item("owner", s(owner))
            .item("lease_until", n(until_ms))
            .item("expires_at", n(until_ms / 1000 + 3600))
            .condition_expression("attribute_not_exists(pk) OR lease_until < :now OR #o = :me")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":me", s(owner))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(store_err("acquire lease", e)),
        }
    }

    /// Gives a lease back if we still hold it.
    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        let _ = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("LEASE#{name}")))
            .key("sk", s("LEASE"))
            .condition_expression("#o = :me")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", s(owner))
            .send()
            .await;
        Ok(())
    }
}

/// The `HOLD` marker of a session as it will be: written under its first due
/// time while messages are held, removed when none is.
fn hold_marker(table: &str, next: &SessionRecord, now: i64) -> Result<TransactWriteItem> {
    let pk = next.pk();
    let Some(due) = reorder::next_due(&next.held) else {
        let delete = Delete::builder()
            .table_name(table)
            .key("pk", s(pk))
            .key("sk", s(HOLD_KEY));
        return Ok(TransactWriteItem::builder()
            .delete(delete.build().map_err(HandoffError::internal)?)
            .build());
    };
    let mut item = Item::new();
    item.insert("pk".into(), s(pk.clone()));
    item.insert("sk".into(), s(HOLD_KEY));
    item.insert("gsi2pk".into(), s(HOLD_KEY));
    item.insert("gsi2sk".into(), s(format!("{due:013}#{pk}")));
    item.insert("expires_at".into(), n(now / 1000 + RETENTION_SECS));
    let put = Put::builder().table_name(table).set_item(Some(item));
    Ok(TransactWriteItem::builder()
        .put(put.build().map_err(HandoffError::internal)?)
        .build())
}

fn parse_session_pk(pk: &str) -> Option<(Tenant, SessionId)> {
    let rest = pk.strip_prefix("T#")?;
    let (tenant, session) = rest.split_once("#S#")?;
    Some((
        Tenant::from_key(tenant).ok()?,
        SessionId::parse(session).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClientEnv;

    fn record() -> SessionRecord {
        let mut r = SessionRecord::new(
            Tenant::new("acme", "support", ClientEnv::Live).unwrap(),
            SessionId::parse("conv-1").unwrap(),
            IntegrationKey::Genesys,
            serde_json::json!({"context": {"reason": "refund"}}),
        );
        r.provider_conversation_id = Some("g-123".into());
        r.ended_by = Some(EndedBy::Agent);
        r
    }

    #[test]
    fn session_item_round_trips() {
        let r = record();
        assert_eq!(SessionRecord::from_item(&r.to_item()).unwrap(), r);
    }

    #[test]
    fn open_sessions_are_in_the_live_index_and_ended_ones_are_not() {
        let mut r = record();
        let item = r.to_item();
        assert_eq!(get_s(&item, "gsi2pk"), Some("LIVE#genesys_integration"));
        assert_eq!(get_s(&item, "gsi1pk"), Some("C#genesys_integration#g-123"));
        r.state = SessionState::Ended;
        assert!(!r.to_item().contains_key("gsi2pk"));
    }

    #[test]
    fn session_pk_parses_back() {
        let r = record();
        let (t, s) = parse_session_pk(&r.pk()).unwrap();
        assert_eq!(t, r.tenant);
        assert_eq!(s, r.session_id);
        assert!(parse_session_pk("LEASE#x").is_none());
    }

    #[test]
    fn queue_and_start_retry_state_round_trip() {
        let mut r = record();
        r.outq = OutQueue {
            head: 3,
            tail: 5,
            due_ms: 1234,
            attempts: 2,
        };
        r.start_attempts = 4;
        r.start_due_ms = Some(99);
        assert_eq!(SessionRecord::from_item(&r.to_item()).unwrap(), r);
        // Items written before the queue existed read as an empty queue.
        let mut old = r.to_item();
        for k in [
            "outq_head",
            "outq_tail",
            "outq_due",
            "outq_attempts",
            "start_due",
        ] {
            old.remove(k);
        }
        let read = SessionRecord::from_item(&old).unwrap();
        assert!(read.outq.is_empty());
        assert_eq!(read.start_due_ms, None);
    }

    #[test]
    fn queue_positions_run_in_order_and_are_never_reused() {
        let q = OutQueue::default();
        assert!(q.is_empty() && !q.is_due(i64::MAX));
        let (q, first) = q.pushed(10_000);
        let (q, second) = q.pushed(10_500);
        assert_eq!((first, second, q.len()), (1, 2, 2));
        assert_eq!(q.due_ms, 11_000, "a fresh queue waits a second");
        assert!(!q.is_due(10_999) && q.is_due(11_000));
        let q = q.advanced(20_000);
        assert_eq!((q.head, q.len(), q.due_ms), (2, 1, 20_000));
        let q = q.dropped();
        assert!(q.is_empty());
        let (_, third) = q.pushed(30_000);
        assert_eq!(third, 3, "a dropped position is not handed out again");
    }

    #[test]
    fn a_deferred_queue_backs_off_exponentially_up_to_a_cap() {
        let (mut q, _) = OutQueue::default().pushed(0);
        let mut waits = Vec::new();
        for _ in 0..8 {
            q = q.deferred(0);
            waits.push(q.due_ms);
        }
        assert_eq!(
            waits,
            vec![1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(
            q.advanced(0).attempts,
            0,
            "a sent message resets the backoff"
        );
        assert_eq!(backoff_ms(40, 5_000), 5_000);
    }

    #[test]
    fn queue_sort_keys_order_numerically() {
        assert!(queued_sk(9) < queued_sk(10));
        assert_eq!(message_sk("m-1"), "MSG#m-1");
    }

    #[test]
    fn event_sort_keys_order_numerically() {
        assert!(event_sk(9) < event_sk(10));
        assert!(event_sk(999) < event_sk(1000));
    }
}
