//! Users, personal conversations, messages and activity (spec §4) and the
//! conversation model they share with the switchboard and the Agent Workspace.

use super::webhook::{self, Audience, Delivery, WebhookAttempt};
use super::workspace::{Agent, Ticket};
use super::{
    check_metadata, now_iso, object_id, opt_str, parse_body, request_host, ApiError, App, Caller,
    SimState, Zendesk,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::mpsc::UnboundedSender;

/// Longest `text` of a message (spec §4).
const MAX_TEXT_CHARS: usize = 4096;
const MAX_EXTERNAL_ID_CHARS: usize = 1024;
/// `GET …/messages` pages are fixed at 100 messages (spec §4).
const MESSAGE_PAGE_SIZE: usize = 100;
const CONVERSATION_PAGE_SIZE: usize = 10;
const MAX_CONVERSATION_PAGE_SIZE: usize = 100;
/// The same message from the same author again within this window counts as a duplicate.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10);
const PROFILE_FIELDS: [&str; 5] = ["givenName", "surname", "email", "avatarUrl", "locale"];
/// `source.type` of messages posted through this API.
pub(super) const API_SOURCE: &str = "api:conversations";

#[derive(Debug, Clone)]
pub(super) struct User {
    pub(super) id: String,
    pub(super) external_id: String,
    signed_up_at: String,
    pub(super) profile: Map<String, Value>,
    metadata: Map<String, Value>,
}

impl User {
    fn api(&self) -> Value {
        json!({
            "id": self.id,
            "externalId": self.external_id,
            "signedUpAt": self.signed_up_at,
            "toBeRetained": false,
            "profile": self.profile,
            "metadata": self.metadata,
            "identities": [],
        })
    }

    fn profile_str(&self, key: &str) -> Option<&str> {
        self.profile
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    }

    pub(super) fn email(&self) -> Option<&str> {
        self.profile_str("email")
    }

    /// Given name and surname, else the email, else the external id.
    pub(super) fn display_name(&self) -> String {
        let full: Vec<&str> = ["givenName", "surname"]
            .iter()
            .filter_map(|k| self.profile_str(k))
            .collect();
        if !full.is_empty() {
            return full.join(" ");
        }
        self.email().unwrap_or(&self.external_id).to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ConversationState {
    /// Not (yet) in the Agent Workspace.
    Created,
    /// In the Agent Workspace, no agent yet.
    Queued,
    /// An agent accepted or replied.
    Active,
    /// Ticket closed, control taken back, or conversation deleted.
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Direction {
    /// Posted through the API (user or business author).
    Inbound,
    /// From the Agent Workspace.
    Outbound,
}

/// One message of a conversation: the API object plus what the sim views show.
#[derive(Debug, Clone)]
pub(super) struct MessageRecord {
    pub(super) id: String,
    pub(super) api: Value,
    pub(super) direction: Direction,
    pub(super) author_type: &'static str,
    pub(super) text: Option<String>,
    pub(super) at: String,
    pub(super) agent_name: Option<String>,
    /// `ticket:closed` for activity messages.
    pub(super) activity: Option<&'static str>,
    received: Instant,
}

impl MessageRecord {
    pub(super) fn new(
        api: Value,
        direction: Direction,
        agent_name: Option<String>,
        activity: Option<&'static str>,
    ) -> Self {
        let author_type = match api["author"]["type"].as_str() {
            Some("user") => "user",
            _ => "business",
        };
        Self {
            id: api["id"].as_str().unwrap_or_default().to_string(),
            text: api["content"]["text"].as_str().map(str::to_owned),
            at: api["received"].as_str().unwrap_or_default().to_string(),
            api,
            direction,
            author_type,
            agent_name,
            activity,
            received: Instant::now(),
        }
    }

    pub(super) fn view(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "direction": self.direction,
            "text": self.text,
            "at": self.at,
            "author_type": self.author_type,
            "source_type": self.api["source"]["type"],
            "content_type": self.api["content"]["type"],
        });
        if let Some(url) = self.api["content"]["mediaUrl"].as_str() {
            v["media_url"] = json!(url);
        }
        if let Some(name) = &self.agent_name {
            v["agent_name"] = json!(name);
        }
        if let Some(activity) = self.activity {
            v["activity"] = json!(activity);
        }
        v
    }
}

/// The API object of a message.
pub(super) fn message_json(
    author: Value,
    content: Value,
    source: Value,
    metadata: &Map<String, Value>,
) -> Value {
    let mut m = json!({
        "id": object_id(),
        "received": now_iso(),
        "author": author,
        "content": content,
        "source": source,
    });
    if !metadata.is_empty() {
        m["metadata"] = Value::Object(metadata.clone());
    }
    m
}

/// One personal conversation of an app.
#[derive(Debug)]
pub(super) struct Conversation {
    pub(super) id: String,
    pub(super) app_id: String,
    pub(super) user_id: String,
    pub(super) is_default: bool,
    display_name: Option<String>,
    description: Option<String>,
    icon_url: Option<String>,
    metadata: Map<String, Value>,
    created_at: String,
    last_updated_at: String,
    business_last_read: Option<String>,
    pub(super) messages: Vec<MessageRecord>,
    /// Switchboard integration ids in control.
    pub(super) active: Option<String>,
    pub(super) pending: Option<String>,
    pub(super) state: ConversationState,
    pub(super) customer_connected: bool,
    pub(super) deleted: bool,
    pub(super) ticket: Option<Ticket>,
    /// `passControl` metadata of the handoff to the Agent Workspace.
    pub(super) context: Map<String, Value>,
    pub(super) agent: Option<Agent>,
    duplicate_inbound_message_ids: Vec<String>,
    pub(super) webhook_attempts: Vec<WebhookAttempt>,
    /// Delivery queue per custom integration.
    pub(super) webhook_queues: HashMap<String, UnboundedSender<Delivery>>,
}

impl Conversation {
    /// Appends a message; an API message equal to the previous one of the same
    /// author within [`DUPLICATE_WINDOW`] is listed as a duplicate.
    pub(super) fn record(&mut self, m: MessageRecord) {
        if m.direction == Direction::Inbound {
            let previous = self
                .messages
                .iter()
                .rev()
                .find(|p| p.direction == Direction::Inbound && p.author_type == m.author_type);
            if let Some(p) = previous {
                let same = ["author", "content", "metadata"]
                    .iter()
                    .all(|k| p.api.get(*k) == m.api.get(*k));
                if same && m.received.duration_since(p.received) < DUPLICATE_WINDOW {
                    self.duplicate_inbound_message_ids.push(m.id.clone());
                }
            }
        }
        self.last_updated_at = m.at.clone();
        self.messages.push(m);
    }

    /// The conversation object of the API.
    fn api(&self, app: &App) -> Value {
        let mut v = json!({
            "id": self.id,
            "type": "personal",
            "isDefault": self.is_default,
            "displayName": self.display_name,
            "description": self.description,
            "iconUrl": self.icon_url,
            "metadata": self.metadata,
            "businessLastRead": self.business_last_read,
            "lastUpdatedAt": self.last_updated_at,
        });
        let sb = &app.switchboard;
        if let Some(s) = self.active.as_deref().and_then(|id| sb.get(id)) {
            v["activeSwitchboardIntegration"] = s.brief();
        }
        if let Some(s) = self.pending.as_deref().and_then(|id| sb.get(id)) {
            v["pendingSwitchboardIntegration"] = s.brief();
        }
        v
    }

    /// The sim-only view (`GET /sim/zendesk/conversations/{id}`).
    pub(super) fn view(&self, app: Option<&App>) -> Value {
        let user = app.and_then(|a| a.users.get(&self.user_id));
        let name_of = |id: &Option<String>| {
            id.as_deref()
                .and_then(|id| app.and_then(|a| a.switchboard.get(id)))
                .map(|s| s.name.clone())
        };
        json!({
            "id": self.id,
            "integration_id": self.app_id,
            "app_id": self.app_id,
            "customer": {
                "id": user.map(|u| u.external_id.clone()),
                "user_id": self.user_id,
                "display_name": user.map(User::display_name),
                "email": user.and_then(User::email),
            },
            "context": self.context,
            "ticket": self.ticket.as_ref().map(Ticket::view),
            "state": self.state,
            "agent": self.agent.as_ref().map(|a| json!({"name": a.name, "id": a.id})),
            "customer_connected": self.customer_connected,
            "customer_typing": false,
            "created_at": self.created_at,
            "deleted": self.deleted,
            "is_default": self.is_default,
            "messages": self.messages.iter().map(MessageRecord::view).collect::<Vec<_>>(),
            "duplicate_inbound_message_ids": self.duplicate_inbound_message_ids,
            "control": {
                "active": name_of(&self.active),
                "pending": name_of(&self.pending),
                "active_id": self.active,
                "pending_id": self.pending,
            },
            "webhook_attempts": self.webhook_attempts,
        })
    }
}

fn app_mut<'a>(st: &'a mut SimState, caller: &Caller) -> &'a mut App {
    st.apps
        .get_mut(&caller.app_id)
        .expect("an authenticated caller's app exists")
}

/// A live conversation of the caller's app.
fn conversation<'a>(
    st: &'a SimState,
    caller: &Caller,
    cid: &str,
) -> Result<&'a Conversation, ApiError> {
    st.conversations
        .get(cid)
        .filter(|c| c.app_id == caller.app_id && !c.deleted)
        .ok_or_else(ApiError::conversation_not_found)
}

fn check_profile(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let profile = match body.get("profile") {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(p)) => p,
        Some(_) => return Err(ApiError::bad_request("profile must be an object")),
    };
    let mut out = Map::new();
    for key in PROFILE_FIELDS {
        if let Some(v) = opt_str(profile, key)? {
            out.insert(key.to_string(), json!(v));
        }
    }
    Ok(out)
}

pub(super) async fn create_user(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = parse_body(&body)?;
    let external_id = opt_str(&body, "externalId")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("externalId is required"))?
        .to_string();
    if external_id.chars().count() > MAX_EXTERNAL_ID_CHARS {
        return Err(ApiError::bad_request(
            "externalId is limited to 1024 characters",
        ));
    }
    let signed_up_at = match opt_str(&body, "signedUpAt")? {
        Some(t) => {
            OffsetDateTime::parse(t, &Rfc3339)
                .map_err(|_| ApiError::bad_request("signedUpAt must be an ISO-8601 date-time"))?;
            t.to_string()
        }
        None => now_iso(),
    };
    let user = User {
        id: object_id(),
        external_id,
        signed_up_at,
        profile: check_profile(&body)?,
        metadata: check_metadata(&body, "metadata")?,
    };
    let mut st = sim.lock();
    let app = app_mut(&mut st, &caller);
    if app.user_ids_by_external.contains_key(&user.external_id) {
        return Err(ApiError::conflict("User already exists"));
    }
    app.user_ids_by_external
        .insert(user.external_id.clone(), user.id.clone());
    let view = user.api();
    tracing::info!(app = %app.id, user = %user.id, external_id = %user.external_id, "user created");
    app.users.insert(user.id.clone(), user);
    st.stats
        .bump(Some(&caller.app_id), |s| &mut s.users_created);
    Ok((StatusCode::CREATED, Json(json!({ "user": view }))))
}

pub(super) async fn get_user(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let st = sim.lock();
    st.apps[&caller.app_id]
        .user(&user_id)
        .map(|u| Json(json!({"user": u.api()})))
        .ok_or_else(ApiError::user_not_found)
}

/// The user of a `participants[]` entry or a user `author`.
fn referenced_user<'a>(app: &'a App, m: &Map<String, Value>) -> Result<&'a User, ApiError> {
    match (opt_str(m, "userId")?, opt_str(m, "userExternalId")?) {
        (Some(id), _) => app.users.get(id).ok_or_else(ApiError::user_not_found),
        (None, Some(ext)) => app
            .user_ids_by_external
            .get(ext)
            .and_then(|id| app.users.get(id))
            .ok_or_else(ApiError::user_not_found),
        (None, None) => Err(ApiError::bad_request(
            "userId or userExternalId is required",
        )),
    }
}

pub(super) async fn create_conversation(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = parse_body(&body)?;
    match opt_str(&body, "type")? {
        Some("personal") => {}
        Some("sdkGroup") => {
            return Err(ApiError::bad_request(
                "The simulator supports personal conversations only",
            ))
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "type must be personal or sdkGroup, not {other}"
            )))
        }
        None => return Err(ApiError::bad_request("type is required")),
    }
    let participants = match body.get("participants") {
        Some(Value::Array(p)) => p,
        _ => {
            return Err(ApiError::bad_request(
                "participants is required for personal conversations",
            ))
        }
    };
    let [participant] = participants.as_slice() else {
        return Err(ApiError::bad_request(
            "Personal conversations must have exactly 1 participant",
        ));
    };
    let participant = participant
        .as_object()
        .ok_or_else(|| ApiError::bad_request("participants[0] must be an object"))?;
    let metadata = check_metadata(&body, "metadata")?;
    let display_name = opt_str(&body, "displayName")?.map(str::to_owned);
    let description = opt_str(&body, "description")?.map(str::to_owned);
    let icon_url = opt_str(&body, "iconUrl")?.map(str::to_owned);

    let mut st = sim.lock();
    let app = &st.apps[&caller.app_id];
    let user_id = referenced_user(app, participant)?.id.clone();
    let is_default = !st
        .conversations
        .values()
        .any(|c| c.app_id == caller.app_id && c.user_id == user_id);
    let now = now_iso();
    let conv = Conversation {
        id: object_id(),
        app_id: caller.app_id.clone(),
        user_id,
        is_default,
        display_name,
        description,
        icon_url,
        metadata,
        created_at: now.clone(),
        last_updated_at: now,
        business_last_read: None,
        messages: Vec::new(),
        active: app
            .switchboard
            .enabled
            .then(|| app.switchboard.default_id.clone()),
        pending: None,
        state: ConversationState::Created,
        customer_connected: true,
        deleted: false,
        ticket: None,
        context: Map::new(),
        agent: None,
        duplicate_inbound_message_ids: Vec::new(),
        webhook_attempts: Vec::new(),
        webhook_queues: HashMap::new(),
    };
    let view = conv.api(app);
    let cid = conv.id.clone();
    tracing::info!(app = %caller.app_id, conversation = %cid, "conversation created");
    st.conversations.insert(cid.clone(), conv);
    st.conversation_order.push(cid);
    st.stats
        .bump(Some(&caller.app_id), |s| &mut s.conversations_created);
    Ok((StatusCode::CREATED, Json(json!({ "conversation": view }))))
}

pub(super) async fn get_conversation(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, cid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let st = sim.lock();
    let conv = conversation(&st, &caller, &cid)?;
    Ok(Json(
        json!({"conversation": conv.api(&st.apps[&caller.app_id])}),
    ))
}

/// A cursor page of `items` (ids in order): `after`/`before` an id, else the
/// first (`newest_first == false`) or last page.
fn page_of<T>(
    items: &[T],
    id_of: impl Fn(&T) -> &str,
    query: &HashMap<String, String>,
    size: usize,
    newest_first: bool,
) -> Result<(std::ops::Range<usize>, bool, bool), ApiError> {
    let position = |id: &str| {
        items
            .iter()
            .position(|i| id_of(i) == id)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid cursor {id}")))
    };
    let n = items.len();
    let (range, has_more_before, has_more_after) =
        match (query.get("page[after]"), query.get("page[before]")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "page[after] and page[before] are mutually exclusive",
                ))
            }
            (Some(after), None) => {
                let start = position(after)? + 1;
                let end = (start + size).min(n);
                (start..end, start > 0, end < n)
            }
            (None, Some(before)) => {
                let end = position(before)?;
                let start = end.saturating_sub(size);
                (start..end, start > 0, end < n)
            }
            (None, None) if newest_first => {
                let start = n.saturating_sub(size);
                (start..n, start > 0, false)
            }
            (None, None) => {
                let end = size.min(n);
                (0..end, false, end < n)
            }
        };
    Ok((range, has_more_before, has_more_after))
}

/// `meta` and `links` of a cursor page; `has_more` in the paging direction.
fn paging(
    base: &str,
    first: Option<&str>,
    last: Option<&str>,
    more_before: bool,
    more_after: bool,
    backwards: bool,
) -> (Value, Value) {
    let mut meta = json!({"hasMore": if backwards { more_before } else { more_after }});
    let mut links = json!({});
    if let Some(first) = first {
        meta["beforeCursor"] = json!(first);
        if more_before {
            links["prev"] = json!(format!("{base}page[before]={first}"));
        }
    }
    if let Some(last) = last {
        meta["afterCursor"] = json!(last);
        if more_after {
            links["next"] = json!(format!("{base}page[after]={last}"));
        }
    }
    (meta, links)
}

pub(super) async fn list_conversations(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let mut filter = Map::new();
    for (param, key) in [
        ("filter[userId]", "userId"),
        ("filter[userExternalId]", "userExternalId"),
    ] {
        if let Some(v) = query.get(param) {
            filter.insert(key.to_string(), json!(v));
        }
    }
    if filter.is_empty() {
        return Err(ApiError::bad_request(
            "filter[userId] or filter[userExternalId] is required",
        ));
    }
    let size = match query.get("page[size]") {
        None => CONVERSATION_PAGE_SIZE,
        Some(s) => match s.parse::<usize>() {
            Ok(n @ 1..=MAX_CONVERSATION_PAGE_SIZE) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "page[size] must be between 1 and 100",
                ))
            }
        },
    };
    let st = sim.lock();
    let app = &st.apps[&caller.app_id];
    let user_id = referenced_user(app, &filter)?.id.clone();
    let convs: Vec<&Conversation> = st
        .conversation_order
        .iter()
        .filter_map(|id| st.conversations.get(id))
        .filter(|c| c.app_id == caller.app_id && c.user_id == user_id && !c.deleted)
        .collect();
    let (range, before, after) = page_of(&convs, |c| &c.id, &query, size, false)?;
    let page = &convs[range];
    let base = format!(
        "http://{}/zendesk/sc/v2/apps/{}/conversations?filter[userId]={user_id}&",
        request_host(&headers),
        caller.app_id
    );
    let backwards = query.contains_key("page[before]");
    let (meta, links) = paging(
        &base,
        page.first().map(|c| c.id.as_str()),
        page.last().map(|c| c.id.as_str()),
        before,
        after,
        backwards,
    );
    Ok(Json(json!({
        "conversations": page.iter().map(|c| c.api(app)).collect::<Vec<_>>(),
        "meta": meta,
        "links": links,
    })))
}

/// Deletes a conversation (API or sim action): `conversation:remove`, then gone from the API.
pub(super) fn remove_conversation(sim: &Arc<Zendesk>, st: &mut SimState, cid: &str) {
    let payload = json!({"conversation": {"id": cid, "type": "personal"}});
    webhook::publish(
        sim,
        st,
        cid,
        "conversation:remove",
        payload,
        Audience::Switchboard(Vec::new()),
    );
    if let Some(conv) = st.conversations.get_mut(cid) {
        conv.deleted = true;
        conv.state = ConversationState::Ended;
        conv.customer_connected = false;
        let app = conv.app_id.clone();
        st.stats.bump(Some(&app), |s| &mut s.conversations_deleted);
    }
    tracing::info!(conversation = cid, "conversation deleted");
}

pub(super) async fn delete_conversation(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, cid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let mut st = sim.lock();
    if conversation(&st, &caller, &cid)?.is_default {
        return Err(ApiError::bad_request(
            "The default conversation of a user cannot be deleted",
        ));
    }
    remove_conversation(&sim, &mut st, &cid);
    Ok(Json(json!({})))
}

/// A user or business `author`, validated, as it appears on the stored message.
fn author_of(app: &App, conv: &Conversation, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let author = body
        .get("author")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_request("author is required"))?;
    match opt_str(author, "type")? {
        Some("user") => {
            let user = referenced_user(app, author)?;
            if user.id != conv.user_id {
                return Err(ApiError::bad_request(
                    "The user is not a participant of the conversation",
                ));
            }
            Ok(json!({"type": "user", "userId": user.id, "displayName": user.display_name()}))
        }
        Some("business") => {
            let mut out = json!({"type": "business"});
            for key in ["displayName", "avatarUrl"] {
                if let Some(v) = opt_str(author, key)? {
                    out[key] = json!(v);
                }
            }
            match author.get("subtypes") {
                None | Some(Value::Null) => {}
                Some(Value::Array(s)) if s.iter().all(Value::is_string) => {
                    out["subtypes"] = json!(s)
                }
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "author.subtypes must be an array of strings",
                    ))
                }
            }
            Ok(out)
        }
        _ => Err(ApiError::bad_request(
            "author.type must be user or business",
        )),
    }
}

/// `content`: text (≤ 4096), image or file with a `mediaUrl`.
fn content_of(body: &Map<String, Value>) -> Result<Value, ApiError> {
    let content = body
        .get("content")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_request("content is required"))?;
    let text = opt_str(content, "text")?;
    if text.is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS) {
        return Err(ApiError::bad_request(
            "content.text is limited to 4096 characters",
        ));
    }
    let mut out = json!({});
    match opt_str(content, "type")? {
        Some("text") => {
            let text = text
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| ApiError::bad_request("content.text is required"))?;
            out["type"] = json!("text");
            out["text"] = json!(text);
        }
        Some(kind @ ("image" | "file")) => {
            let url = opt_str(content, "mediaUrl")?
                .ok_or_else(|| ApiError::bad_request("content.mediaUrl is required"))?;
            if reqwest::Url::parse(url).is_err() {
                return Err(ApiError::bad_request("content.mediaUrl must be a URL"));
            }
            out["type"] = json!(kind);
            out["mediaUrl"] = json!(url);
            for key in ["text", "altText", "mediaType"] {
                if let Some(v) = opt_str(content, key)? {
                    out[key] = json!(v);
                }
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "content.type {other} is not supported by the simulator (text, image, file)"
            )))
        }
        None => return Err(ApiError::bad_request("content.type is required")),
    }
    Ok(out)
}

pub(super) async fn post_message(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, cid)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = parse_body(&body)?;
    let content = content_of(&body)?;
    let metadata = check_metadata(&body, "metadata")?;
    let mut st = sim.lock();
    let conv = conversation(&st, &caller, &cid)?;
    let app = &st.apps[&caller.app_id];
    let author = author_of(app, conv, &body)?;
    if conv.messages.len() as u64 >= st.knobs.locked_after_messages(&caller.app_id) {
        return Err(ApiError::new(
            StatusCode::LOCKED,
            "locked",
            "The conversation has reached its maximum number of messages",
        ));
    }
    let mut source = json!({"type": API_SOURCE});
    if author["type"] == "user" {
        if let Some(id) = &caller.integration_id {
            source["integrationId"] = json!(id);
        }
    }
    let message = message_json(author, content, source, &metadata);
    let default_id = app
        .switchboard
        .enabled
        .then(|| app.switchboard.default_id.clone());
    let conv = st
        .conversations
        .get_mut(&cid)
        .expect("conversation just looked up");
    // A message without anybody in control goes to the default integration [U].
    if conv.active.is_none() {
        conv.active = default_id;
    }
    conv.record(MessageRecord::new(
        message.clone(),
        Direction::Inbound,
        None,
        None,
    ));
    let payload = json!({
        "conversation": super::switchboard::conversation_ref(&st, &cid),
        "message": message,
    });
    webhook::publish(
        &sim,
        &mut st,
        &cid,
        "conversation:message",
        payload,
        Audience::Switchboard(Vec::new()),
    );
    st.stats
        .bump(Some(&caller.app_id), |s| &mut s.messages_posted);
    Ok((StatusCode::CREATED, Json(json!({ "messages": [message] }))))
}

pub(super) async fn list_messages(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, cid)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let st = sim.lock();
    let conv = conversation(&st, &caller, &cid)?;
    let (range, before, after) =
        page_of(&conv.messages, |m| &m.id, &query, MESSAGE_PAGE_SIZE, true)?;
    let page = &conv.messages[range];
    let base = format!(
        "http://{}/zendesk/sc/v2/apps/{}/conversations/{cid}/messages?",
        request_host(&headers),
        caller.app_id
    );
    let backwards = !query.contains_key("page[after]");
    let (meta, links) = paging(
        &base,
        page.first().map(|m| m.id.as_str()),
        page.last().map(|m| m.id.as_str()),
        before,
        after,
        backwards,
    );
    Ok(Json(json!({
        "messages": page.iter().map(|m| m.api.clone()).collect::<Vec<_>>(),
        "meta": meta,
        "links": links,
    })))
}

pub(super) async fn post_activity(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, cid)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_body(&body)?;
    let kind = match opt_str(&body, "type")? {
        Some(k @ ("conversation:read" | "typing:start" | "typing:stop")) => k.to_string(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "type must be conversation:read, typing:start or typing:stop, not {other}"
            )))
        }
        None => return Err(ApiError::bad_request("type is required")),
    };
    let mut st = sim.lock();
    let conv = conversation(&st, &caller, &cid)?;
    let author = author_of(&st.apps[&caller.app_id], conv, &body)?;
    if author["type"] == "user" && kind != "conversation:read" {
        return Err(ApiError::bad_request(
            "If the author type is user, only conversation:read is supported",
        ));
    }
    if author["type"] == "business" && kind == "conversation:read" {
        let conv = st
            .conversations
            .get_mut(&cid)
            .expect("conversation just looked up");
        conv.business_last_read = Some(now_iso());
    }
    let event_type = if kind == "conversation:read" {
        "conversation:read"
    } else {
        "conversation:typing"
    };
    let payload = json!({
        "conversation": super::switchboard::conversation_ref(&st, &cid),
        "activity": {"type": kind, "author": author, "source": {"type": API_SOURCE}},
    });
    webhook::publish(
        &sim,
        &mut st,
        &cid,
        event_type,
        payload,
        Audience::Switchboard(Vec::new()),
    );
    st.stats.bump(Some(&caller.app_id), |s| &mut s.activities);
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i}")).collect()
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn message_pages_go_backwards_from_the_newest() {
        let items = ids(250);
        let page = |q: &[(&str, &str)]| page_of(&items, |s| s, &query(q), 100, true).unwrap();
        let (r, before, _) = page(&[]);
        assert_eq!((r.start, r.end, before), (150, 250, true));
        let (r, before, _) = page(&[("page[before]", "m150")]);
        assert_eq!((r.start, r.end, before), (50, 150, true));
        let (r, before, _) = page(&[("page[before]", "m50")]);
        assert_eq!((r.start, r.end, before), (0, 50, false));
        let (r, _, after) = page(&[("page[after]", "m199")]);
        assert_eq!((r.start, r.end, after), (200, 250, false));
        assert!(page_of(
            &items,
            |s| s,
            &query(&[("page[before]", "nope")]),
            100,
            true
        )
        .is_err());
    }

    #[test]
    fn same_message_twice_in_a_row_is_listed_once_as_duplicate() {
        let mut conv = Conversation {
            id: "c".into(),
            app_id: "a".into(),
            user_id: "u".into(),
            is_default: true,
            display_name: None,
            description: None,
            icon_url: None,
            metadata: Map::new(),
            created_at: now_iso(),
            last_updated_at: now_iso(),
            business_last_read: None,
            messages: Vec::new(),
            active: None,
            pending: None,
            state: ConversationState::Created,
            customer_connected: true,
            deleted: false,
            ticket: None,
            context: Map::new(),
            agent: None,
            duplicate_inbound_message_ids: Vec::new(),
            webhook_attempts: Vec::new(),
            webhook_queues: HashMap::new(),
        };
        let user = json!({"type": "user", "userId": "u"});
        let text = |t: &str| json!({"type": "text", "text": t});
        let source = json!({"type": API_SOURCE});
        let msg = |t: &str| {
            MessageRecord::new(
                message_json(user.clone(), text(t), source.clone(), &Map::new()),
                Direction::Inbound,
                None,
                None,
            )
        };
        conv.record(msg("hello"));
        let dup = msg("hello");
        let dup_id = dup.id.clone();
        conv.record(dup);
        conv.record(msg("something else"));
        conv.record(msg("hello"));
        let view = conv.view(None);
        assert_eq!(view["messages"].as_array().unwrap().len(), 4);
        assert_eq!(view["duplicate_inbound_message_ids"], json!([dup_id]));
    }
}
