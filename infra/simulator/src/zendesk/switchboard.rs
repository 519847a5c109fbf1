//! The switchboard (spec §3): switchboards and switchboard integrations, and
//! the control actions `passControl`, `offerControl`, `acceptControl` and
//! `releaseControl` with their webhook events and failures.

use super::webhook::{self, Audience};
use super::{
    check_metadata, object_id, opt_str, parse_body, valid_switchboard_name, ApiError, Caller,
    Scope, SimState, Zendesk,
};
use super::{workspace, App};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub(super) const AGENT_WORKSPACE: &str = "zd-agentWorkspace";
pub(super) const AGENT_WORKSPACE_TYPE: &str = "zd:agentWorkspace";
pub(super) const ANSWER_BOT: &str = "zd-answerBot";
const ANSWER_BOT_TYPE: &str = "zd:answerBot";
/// A switchboard holds at most 10 switchboard integrations (spec §3).
pub(super) const MAX_SWITCHBOARD_INTEGRATIONS: usize = 10;
/// Keyword of `passControl` for the active integration's next one.
const NEXT: &str = "next";
/// Reasons accepted on `passControl` / `releaseControl`.
const REASONS: [&str; 2] = ["ticketClosed", "transferToEmail"];

#[derive(Debug, Clone)]
pub(super) struct SwitchboardIntegration {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) integration_id: String,
    pub(super) integration_type: String,
    pub(super) deliver_standby_events: bool,
    pub(super) next_id: Option<String>,
    pub(super) message_history_count: Option<u64>,
}

impl SwitchboardIntegration {
    fn builtin(name: &str, integration_type: &str) -> Self {
        Self {
            id: object_id(),
            name: name.to_string(),
            integration_id: object_id(),
            integration_type: integration_type.to_string(),
            deliver_standby_events: false,
            next_id: None,
            message_history_count: None,
        }
    }

    /// The full object of the switchboard integration API.
    pub(super) fn api(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "integrationId": self.integration_id,
            "integrationType": self.integration_type,
            "deliverStandbyEvents": self.deliver_standby_events,
            "nextSwitchboardIntegrationId": self.next_id,
            "messageHistoryCount": self.message_history_count,
        })
    }

    /// The reference inside conversations and webhook payloads.
    pub(super) fn brief(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "integrationId": self.integration_id,
            "integrationType": self.integration_type,
        })
    }
}

/// The app's one switchboard.
#[derive(Debug)]
pub(super) struct Switchboard {
    pub(super) id: String,
    pub(super) enabled: bool,
    pub(super) default_id: String,
    pub(super) integrations: Vec<SwitchboardIntegration>,
}

/// Why a control target could not be used.
pub(super) enum TargetError {
    /// Nothing matches: answered 200, reported by a `…:failure` event.
    Invalid(String),
    /// Several match by `integrationType`: answered 400.
    Ambiguous(String),
}

impl Switchboard {
    /// `zd-answerBot` (the default, then the Agent Workspace) and `zd-agentWorkspace`.
    pub(super) fn seeded() -> Self {
        let agent_workspace =
            SwitchboardIntegration::builtin(AGENT_WORKSPACE, AGENT_WORKSPACE_TYPE);
        let mut answer_bot = SwitchboardIntegration::builtin(ANSWER_BOT, ANSWER_BOT_TYPE);
        answer_bot.next_id = Some(agent_workspace.id.clone());
        Self {
            id: object_id(),
            enabled: true,
            default_id: answer_bot.id.clone(),
            integrations: vec![answer_bot, agent_workspace],
        }
    }

    pub(super) fn api(&self) -> Value {
        json!({
            "id": self.id,
            "enabled": self.enabled,
            "defaultSwitchboardIntegrationId": self.default_id,
        })
    }

    pub(super) fn get(&self, id: &str) -> Option<&SwitchboardIntegration> {
        self.integrations.iter().find(|s| s.id == id)
    }

    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut SwitchboardIntegration> {
        self.integrations.iter_mut().find(|s| s.id == id)
    }

    pub(super) fn by_name(&self, name: &str) -> Option<&SwitchboardIntegration> {
        self.integrations.iter().find(|s| s.name == name)
    }

    pub(super) fn of_integration(&self, integration_id: &str) -> Option<&SwitchboardIntegration> {
        self.integrations
            .iter()
            .find(|s| s.integration_id == integration_id)
    }

    /// Resolves a control target: `next`, then id, name, `integrationType`.
    pub(super) fn resolve(
        &self,
        reference: &str,
        active: Option<&str>,
    ) -> Result<String, TargetError> {
        if reference == NEXT {
            // Without an active integration, `next` starts from the default one [U].
            let from = active.unwrap_or(&self.default_id);
            return match self.get(from).and_then(|s| s.next_id.clone()) {
                Some(next) if self.get(&next).is_some() => Ok(next),
                _ => Err(TargetError::Invalid(
                    "The active switchboard integration has no next switchboard integration"
                        .to_string(),
                )),
            };
        }
        if let Some(s) = self.get(reference).or_else(|| self.by_name(reference)) {
            return Ok(s.id.clone());
        }
        let by_type: Vec<&SwitchboardIntegration> = self
            .integrations
            .iter()
            .filter(|s| s.integration_type == reference)
            .collect();
        match by_type.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(TargetError::Invalid(format!(
                "No switchboard integration matches '{reference}'"
            ))),
            _ => Err(TargetError::Ambiguous(format!(
                "'{reference}' matches several switchboard integrations; use an id or a name"
            ))),
        }
    }
}

fn app_of<'a>(st: &'a SimState, caller: &Caller) -> &'a App {
    st.apps
        .get(&caller.app_id)
        .expect("an authenticated caller's app exists")
}

fn check_switchboard(app: &App, sid: &str) -> Result<(), ApiError> {
    if app.switchboard.id == sid {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "switchboard_not_found",
            "Switchboard not found",
        ))
    }
}

pub(super) async fn list_switchboards(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    caller.require_app_scope()?;
    let st = sim.lock();
    Ok(Json(
        json!({"switchboards": [app_of(&st, &caller).switchboard.api()]}),
    ))
}

/// The app already has its switchboard: only one per app.
pub(super) async fn create_switchboard(
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    caller.require_app_scope()?;
    Err(ApiError::bad_request(
        "Only one switchboard per app can be created",
    ))
}

pub(super) async fn list_integrations(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, sid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_app_scope()?;
    let st = sim.lock();
    let app = app_of(&st, &caller);
    check_switchboard(app, &sid)?;
    let list: Vec<Value> = app
        .switchboard
        .integrations
        .iter()
        .map(SwitchboardIntegration::api)
        .collect();
    Ok(Json(json!({ "switchboardIntegrations": list })))
}

/// `deliverStandbyEvents`, `nextSwitchboardIntegrationId`, `messageHistoryCount`
/// of a create or update body, checked against the switchboard.
fn apply_options(
    sb: &Switchboard,
    body: &Map<String, Value>,
    target: &mut SwitchboardIntegration,
) -> Result<(), ApiError> {
    match body.get("deliverStandbyEvents") {
        None => {}
        Some(Value::Bool(b)) => target.deliver_standby_events = *b,
        Some(_) => {
            return Err(ApiError::bad_request(
                "deliverStandbyEvents must be a boolean",
            ))
        }
    }
    match body.get("nextSwitchboardIntegrationId") {
        None => {}
        Some(Value::Null) => target.next_id = None,
        Some(Value::String(id)) if sb.get(id).is_some() && *id != target.id => {
            target.next_id = Some(id.clone())
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "nextSwitchboardIntegrationId must be the id of another switchboard integration",
            ))
        }
    }
    match body.get("messageHistoryCount") {
        None => {}
        Some(Value::Null) => target.message_history_count = None,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=10) => target.message_history_count = Some(n),
            _ => {
                return Err(ApiError::bad_request(
                    "messageHistoryCount must be between 1 and 10",
                ))
            }
        },
    }
    Ok(())
}

fn check_name(sb: &Switchboard, name: &str, own_id: Option<&str>) -> Result<(), ApiError> {
    if !valid_switchboard_name(name) {
        return Err(ApiError::bad_request(
            "name may only contain alphanumerics, '-' and '_', at most 128 characters",
        ));
    }
    if sb
        .by_name(name)
        .is_some_and(|s| Some(s.id.as_str()) != own_id)
    {
        return Err(ApiError::conflict(format!(
            "A switchboard integration named {name} already exists"
        )));
    }
    Ok(())
}

pub(super) async fn create_integration(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, sid)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_app_scope()?;
    let body = parse_body(&body)?;
    let mut st = sim.lock();
    let app = st
        .apps
        .get_mut(&caller.app_id)
        .expect("an authenticated caller's app exists");
    check_switchboard(app, &sid)?;
    let name = opt_str(&body, "name")?
        .ok_or_else(|| ApiError::bad_request("name is required"))?
        .to_string();
    check_name(&app.switchboard, &name, None)?;
    let (integration_id, integration_type) = match (
        opt_str(&body, "integrationId")?,
        opt_str(&body, "integrationType")?,
    ) {
        (Some(id), _) => match app.integrations.get(id) {
            Some(i) => (i.id.clone(), "custom".to_string()),
            None => {
                return Err(ApiError::not_found(
                    "integration_not_found",
                    "Integration not found",
                ))
            }
        },
        (None, Some(t)) => (object_id(), t.to_string()),
        (None, None) => {
            return Err(ApiError::bad_request(
                "integrationId or integrationType is required",
            ))
        }
    };
    if app.switchboard.of_integration(&integration_id).is_some() {
        return Err(ApiError::conflict(
            "The integration already has a switchboard integration",
        ));
    }
    if app.switchboard.integrations.len() >= MAX_SWITCHBOARD_INTEGRATIONS {
        return Err(ApiError::bad_request(
            "A switchboard holds at most 10 switchboard integrations",
        ));
    }
    let mut created = SwitchboardIntegration {
        id: object_id(),
        name,
        integration_id,
        integration_type,
        deliver_standby_events: false,
        next_id: None,
        message_history_count: None,
    };
    apply_options(&app.switchboard, &body, &mut created)?;
    let view = created.api();
    tracing::info!(app = %app.id, name = %created.name, "switchboard integration created");
    app.switchboard.integrations.push(created);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "switchboardIntegration": view })),
    ))
}

pub(super) async fn update_integration(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, sid, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require_app_scope()?;
    let body = parse_body(&body)?;
    let mut st = sim.lock();
    let app = st
        .apps
        .get_mut(&caller.app_id)
        .expect("an authenticated caller's app exists");
    check_switchboard(app, &sid)?;
    let mut updated = app.switchboard.get(&id).cloned().ok_or_else(|| {
        ApiError::not_found(
            "switchboard_integration_not_found",
            "Switchboard integration not found",
        )
    })?;
    if let Some(name) = opt_str(&body, "name")? {
        check_name(&app.switchboard, name, Some(&id))?;
        updated.name = name.to_string();
    }
    apply_options(&app.switchboard, &body, &mut updated)?;
    let view = updated.api();
    *app.switchboard
        .get_mut(&id)
        .expect("switchboard integration just found") = updated;
    Ok(Json(json!({ "switchboardIntegration": view })))
}

/// The `conversation` object of switchboard payloads, with the current control.
pub(super) fn conversation_ref(st: &SimState, cid: &str) -> Value {
    let Some(conv) = st.conversations.get(cid) else {
        return json!({"id": cid, "type": "personal"});
    };
    let mut v = json!({"id": conv.id, "type": "personal"});
    if let Some(sb) = st.apps.get(&conv.app_id).map(|a| &a.switchboard) {
        if let Some(s) = conv.active.as_deref().and_then(|id| sb.get(id)) {
            v["activeSwitchboardIntegration"] = s.brief();
        }
        if let Some(s) = conv.pending.as_deref().and_then(|id| sb.get(id)) {
            v["pendingSwitchboardIntegration"] = s.brief();
        }
    }
    v
}

/// A control action's body: the target (where needed), `metadata`, `reason`.
struct ControlBody {
    target: Option<String>,
    metadata: Map<String, Value>,
    reason: Option<String>,
}

fn control_body(body: &[u8], needs_target: bool) -> Result<ControlBody, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) && !needs_target {
        Map::new()
    } else {
        parse_body(body)?
    };
    let target = opt_str(&body, "switchboardIntegration")?.map(str::to_owned);
    if needs_target && target.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("switchboardIntegration is required"));
    }
    let reason = opt_str(&body, "reason")?.map(str::to_owned);
    if let Some(r) = &reason {
        if !REASONS.contains(&r.as_str()) {
            return Err(ApiError::bad_request(format!(
                "reason must be one of {REASONS:?}"
            )));
        }
    }
    Ok(ControlBody {
        target,
        metadata: check_metadata(&body, "metadata")?,
        reason,
    })
}

/// The conversation of a control call, checked to belong to the caller's app.
fn check_conversation(st: &SimState, caller: &Caller, cid: &str) -> Result<(), ApiError> {
    match st.conversations.get(cid) {
        Some(c) if c.app_id == caller.app_id && !c.deleted => Ok(()),
        _ => Err(ApiError::conversation_not_found()),
    }
}

/// Payload of a switchboard event.
fn event_payload(
    st: &SimState,
    cid: &str,
    metadata: &Map<String, Value>,
    reason: Option<&str>,
) -> Value {
    let mut payload = json!({"conversation": conversation_ref(st, cid)});
    if !metadata.is_empty() {
        payload["metadata"] = Value::Object(metadata.clone());
    }
    if let Some(r) = reason {
        payload["reason"] = json!(r);
    }
    payload
}

/// Reports a control action that could not be carried out (`…:failure`) to the caller.
fn fail(
    sim: &Arc<Zendesk>,
    st: &mut SimState,
    caller: &Caller,
    cid: &str,
    event_type: &str,
    message: String,
    metadata: &Map<String, Value>,
) {
    let mut payload = event_payload(st, cid, metadata, None);
    payload["error"] = json!({"code": "switchboard_invalid_target", "message": message});
    tracing::info!(conversation = cid, event_type, %message, "control action failed");
    st.stats
        .bump(Some(&caller.app_id), |s| &mut s.control_failures);
    webhook::publish(
        sim,
        st,
        cid,
        event_type,
        payload,
        Audience::Caller(caller.integration_id.clone()),
    );
}

/// The control moved from `before` to the conversation's current active
/// integration; `metadata` came with the action.
fn after_move(st: &mut SimState, cid: &str, before: Option<&str>, metadata: &Map<String, Value>) {
    let Some(conv) = st.conversations.get(cid) else {
        return;
    };
    let Some(app) = st.apps.get(&conv.app_id) else {
        return;
    };
    let aw = app.agent_workspace().id.clone();
    let now = conv.active.clone();
    if now.as_deref() == Some(aw.as_str()) && before != Some(aw.as_str()) {
        workspace::handed_to_agents(st, cid, metadata);
    } else if before == Some(aw.as_str()) && now.as_deref() != Some(aw.as_str()) {
        workspace::taken_from_agents(st, cid);
    }
}

/// Pass control to a target; `metadata` reaches the event (and a new ticket).
pub(super) fn pass(
    sim: &Arc<Zendesk>,
    st: &mut SimState,
    caller: &Caller,
    cid: &str,
    target: &str,
    metadata: &Map<String, Value>,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let conv = &st.conversations[cid];
    let sb = &st.apps[&conv.app_id].switchboard;
    let target_id = match sb.resolve(target, conv.active.as_deref()) {
        Ok(id) => id,
        Err(TargetError::Ambiguous(m)) => return Err(ApiError::bad_request(m)),
        Err(TargetError::Invalid(m)) => {
            fail(
                sim,
                st,
                caller,
                cid,
                "switchboard:passControl:failure",
                m,
                metadata,
            );
            return Ok(());
        }
    };
    let conv = st.conversations.get_mut(cid).expect("conversation checked");
    let before = (conv.active.take(), conv.pending.take());
    conv.active = Some(target_id.clone());
    let payload = event_payload(st, cid, metadata, reason);
    tracing::info!(conversation = cid, target = %target_id, "control passed");
    webhook::publish(
        sim,
        st,
        cid,
        "switchboard:passControl",
        payload,
        Audience::Switchboard(before.0.iter().chain(before.1.iter()).cloned().collect()),
    );
    after_move(st, cid, before.0.as_deref(), metadata);
    Ok(())
}

/// Release control: nobody is active or pending afterwards.
pub(super) fn release(
    sim: &Arc<Zendesk>,
    st: &mut SimState,
    cid: &str,
    metadata: &Map<String, Value>,
    reason: Option<&str>,
) {
    let conv = st.conversations.get_mut(cid).expect("conversation checked");
    let before = (conv.active.take(), conv.pending.take());
    let payload = event_payload(st, cid, metadata, reason);
    tracing::info!(conversation = cid, "control released");
    webhook::publish(
        sim,
        st,
        cid,
        "switchboard:releaseControl",
        payload,
        Audience::Switchboard(before.0.iter().chain(before.1.iter()).cloned().collect()),
    );
    after_move(st, cid, before.0.as_deref(), metadata);
}

pub(super) async fn pass_control(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, cid)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = control_body(&body, true)?;
    let mut st = sim.lock();
    check_conversation(&st, &caller, &cid)?;
    st.stats
        .bump(Some(&caller.app_id), |s| &mut s.control_actions);
    let target = body.target.expect("checked by control_body");
    pass(
        &sim,
        &mut st,
        &caller,
        &cid,
        &target,
        &body.metadata,
        body.reason.as_deref(),
    )?;
    Ok(Json(json!({})))
}

pub(super) async fn offer_control(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, cid)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = control_body(&body, true)?;
    let mut st = sim.lock();
    check_conversation(&st, &caller, &cid)?;
    st.stats
        .bump(Some(&caller.app_id), |s| &mut s.control_actions);
    let target = body.target.expect("checked by control_body");
    let conv = &st.conversations[&cid];
    let sb = &st.apps[&conv.app_id].switchboard;
    let failure = "switchboard:offerControl:failure";
    let target_id = match sb.resolve(&target, conv.active.as_deref()) {
        Ok(id) if conv.active.as_deref() == Some(id.as_str()) => {
            let m = "The target is already the active switchboard integration".to_string();
            fail(&sim, &mut st, &caller, &cid, failure, m, &body.metadata);
            return Ok(Json(json!({})));
        }
        Ok(id) => id,
        Err(TargetError::Ambiguous(m)) => return Err(ApiError::bad_request(m)),
        Err(TargetError::Invalid(m)) => {
            fail(&sim, &mut st, &caller, &cid, failure, m, &body.metadata);
            return Ok(Json(json!({})));
        }
    };
    let conv = st
        .conversations
        .get_mut(&cid)
        .expect("conversation checked");
    // A new offer replaces an earlier one.
    let earlier = conv.pending.replace(target_id);
    let payload = event_payload(&st, &cid, &body.metadata, None);
    webhook::publish(
        &sim,
        &mut st,
        &cid,
        "switchboard:offerControl",
        payload,
        Audience::Switchboard(earlier.into_iter().collect()),
    );
    Ok(Json(json!({})))
}

pub(super) async fn accept_control(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, cid)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = control_body(&body, false)?;
    let mut st = sim.lock();
    check_conversation(&st, &caller, &cid)?;
    st.stats
        .bump(Some(&caller.app_id), |s| &mut s.control_actions);
    let conv = &st.conversations[&cid];
    let sb = &st.apps[&conv.app_id].switchboard;
    let pending = conv.pending.as_deref().and_then(|id| sb.get(id));
    // Integration scope: only the pending integration may accept (spec §2).
    if caller.scope == Scope::Integration
        && pending.map(|s| &s.integration_id) != caller.integration_id.as_ref()
    {
        return Err(ApiError::forbidden());
    }
    if pending.is_none() {
        let m = "No switchboard integration is pending".to_string();
        fail(
            &sim,
            &mut st,
            &caller,
            &cid,
            "switchboard:acceptControl:failure",
            m,
            &body.metadata,
        );
        return Ok(Json(json!({})));
    }
    let conv = st
        .conversations
        .get_mut(&cid)
        .expect("conversation checked");
    let before = conv.active.take();
    conv.active = conv.pending.take();
    let payload = event_payload(&st, &cid, &body.metadata, None);
    webhook::publish(
        &sim,
        &mut st,
        &cid,
        "switchboard:acceptControl",
        payload,
        Audience::Switchboard(before.iter().cloned().collect()),
    );
    after_move(&mut st, &cid, before.as_deref(), &body.metadata);
    Ok(Json(json!({})))
}

pub(super) async fn release_control(
    State(sim): State<Arc<Zendesk>>,
    Extension(caller): Extension<Caller>,
    Path((_, cid)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = control_body(&body, false)?;
    let mut st = sim.lock();
    check_conversation(&st, &caller, &cid)?;
    let conv = &st.conversations[&cid];
    let sb = &st.apps[&conv.app_id].switchboard;
    let active = conv.active.as_deref().and_then(|id| sb.get(id));
    // Integration scope: only the active integration may release (spec §2).
    if caller.scope == Scope::Integration
        && active.map(|s| &s.integration_id) != caller.integration_id.as_ref()
    {
        return Err(ApiError::forbidden());
    }
    st.stats
        .bump(Some(&caller.app_id), |s| &mut s.control_actions);
    release(&sim, &mut st, &cid, &body.metadata, body.reason.as_deref());
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_custom(names: &[&str]) -> Switchboard {
        let mut sb = Switchboard::seeded();
        for name in names {
            let mut s = SwitchboardIntegration::builtin(name, "custom");
            s.integration_id = format!("int-{name}");
            sb.integrations.push(s);
        }
        sb
    }

    fn name_of(sb: &Switchboard, r: Result<String, TargetError>) -> String {
        match r {
            Ok(id) => sb.get(&id).unwrap().name.clone(),
            Err(TargetError::Invalid(m)) => format!("invalid: {m}"),
            Err(TargetError::Ambiguous(m)) => format!("ambiguous: {m}"),
        }
    }

    #[test]
    fn targets_resolve_by_id_name_type_and_next() {
        let sb = with_custom(&["ai-relay"]);
        let aw = sb.by_name(AGENT_WORKSPACE).unwrap().id.clone();
        let bot = sb.by_name(ANSWER_BOT).unwrap().id.clone();
        assert_eq!(name_of(&sb, sb.resolve(&aw, None)), AGENT_WORKSPACE);
        assert_eq!(name_of(&sb, sb.resolve("ai-relay", None)), "ai-relay");
        assert_eq!(
            name_of(&sb, sb.resolve("zd:agentWorkspace", None)),
            AGENT_WORKSPACE
        );
        assert_eq!(name_of(&sb, sb.resolve("custom", None)), "ai-relay");
        // The answer bot's next is the Agent Workspace, which has none.
        assert_eq!(
            name_of(&sb, sb.resolve("next", Some(&bot))),
            AGENT_WORKSPACE
        );
        assert_eq!(name_of(&sb, sb.resolve("next", None)), AGENT_WORKSPACE);
        assert!(name_of(&sb, sb.resolve("next", Some(&aw))).starts_with("invalid"));
        assert!(name_of(&sb, sb.resolve("nobody", None)).starts_with("invalid"));
    }

    #[test]
    fn a_type_shared_by_several_is_ambiguous() {
        let sb = with_custom(&["ai-relay", "other-bot"]);
        assert!(name_of(&sb, sb.resolve("custom", None)).starts_with("ambiguous"));
        assert_eq!(name_of(&sb, sb.resolve("other-bot", None)), "other-bot");
    }
}
