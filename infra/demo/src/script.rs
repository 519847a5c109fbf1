//! `demo-runtime script`: plays a whole Genesys handoff as a customer (through
//! the demo runtime's widget API) and an agent (through the simulator's agent
//! desktop API), printing a transcript as it goes.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use handoff_common::events::{ClientEvent, ClientEventType, EndedBy};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;
use tokio::time::{sleep, Instant};

const CUSTOMER_NAME: &str = "Ada";
const AGENT_NAME: &str = "Sam";
const CUSTOMER_LINES: [&str; 3] = ["hi", "my order arrived broken", "I want to talk to a human"];
const AGENT_REPLY: &str = "Hi Ada, I'm Sam. Sorry about that — can you share the order number?";
const CUSTOMER_REPLY: &str = "It's 1234";
const POLL_INTERVAL: Duration = Duration::from_millis(150);
/// How long to keep watching after SESSION_END for events that must not come.
const SETTLE_AFTER_END: Duration = Duration::from_secs(1);
/// How much of an unexpected HTTP answer to quote.
const QUOTED_RESPONSE_CHARS: usize = 300;

const CLOCK_FORMAT: &[FormatItem<'static>] =
    format_description!("[hour]:[minute]:[second].[subsecond digits:3]");

pub struct ScriptConfig {
    /// A running `demo-runtime serve`, e.g. `http://127.0.0.1:8090`.
    pub demo_url: String,
    /// The provider simulator, e.g. `http://127.0.0.1:9100`.
    pub sim_url: String,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("timed out waiting for {waiting_for}; {detail}")]
    Timeout { waiting_for: String, detail: String },
    #[error("{0}")]
    Http(String),
    #[error("{0}")]
    Unexpected(String),
}

/// The part of `GET /api/sessions/{id}` the script reads.
#[derive(Debug, Deserialize)]
struct SessionView {
    user_id: String,
    events: Vec<ClientEvent>,
}

/// Prints one transcript line, stamped with the UTC time of day.
fn say(line: &str) {
    let now = OffsetDateTime::now_utc();
    let clock = now.format(CLOCK_FORMAT).unwrap_or_default();
    println!("[{clock}] {line}");
}

fn quote(text: &str) -> String {
    let mut quoted: String = text.chars().take(QUOTED_RESPONSE_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

pub async fn run(config: ScriptConfig) -> Result<String, ScriptError> {
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| ScriptError::Unexpected(format!("HTTP client: {e}")))?;
    let mut play = Play {
        http,
        demo_url: config.demo_url.trim_end_matches('/').to_owned(),
        sim_url: config.sim_url.trim_end_matches('/').to_owned(),
        deadline: Instant::now() + config.timeout,
        session_id: String::new(),
        customer_ids: Vec::new(),
        next_to_print: 1,
        last_matched: 0,
    };
    play.run().await
}

/// One run of the script.
struct Play {
    http: reqwest::Client,
    demo_url: String,
    sim_url: String,
    deadline: Instant,
    session_id: String,
    /// The ids the simulator may know the customer by (session id, user id).
    customer_ids: Vec<String>,
    /// Lowest seq not printed yet.
    next_to_print: u64,
    /// Seq of the event the last wait matched; later waits look past it.
    last_matched: u64,
}

impl Play {
    async fn run(&mut self) -> Result<String, ScriptError> {
        say(&format!(
            "demo runtime {}, simulator {}",
            self.demo_url, self.sim_url
        ));

        // 1. The customer chats with the bot and asks for a human.
        let created = self
            .demo(
                Method::POST,
                "/api/sessions",
                json!({ "display_name": CUSTOMER_NAME }),
            )
            .await?;
        self.session_id = created["session_id"]
            .as_str()
            .ok_or_else(|| ScriptError::Unexpected(format!("no session_id in {created}")))?
            .to_owned();
        let view = self.session_view().await?;
        self.customer_ids = vec![self.session_id.clone(), view.user_id];
        say(&format!("session {} ({CUSTOMER_NAME})", self.session_id));

        let mut last_outcome = Value::Null;
        for line in CUSTOMER_LINES {
            say(&format!("customer: {line}"));
            last_outcome = self.customer_says(line).await?;
            if let Some(reply) = last_outcome["reply"]["text"].as_str() {
                say(&format!("bot: {reply}"));
            }
        }
        if last_outcome["handed_off"] != true {
            return Err(ScriptError::Unexpected(format!(
                "the bot did not hand off: {last_outcome}"
            )));
        }
        let handoff = &last_outcome["handoff"];
        let field = |name: &str| handoff[name].as_str().unwrap_or("?").to_owned();
        say(&format!(
            "relay: start-handoff -> provider={} conversation={} status={}",
            field("provider"),
            field("provider_conversation_id"),
            field("status")
        ));

        // 2. The conversation reaches the agent desktop.
        let conversation = self.find_sim_conversation().await?;
        say(&format!(
            "simulator: conversation {conversation} is waiting"
        ));
        let conversation_path = format!("/sim/genesys/conversations/{conversation}");

        // 3. The agent accepts.
        say(&format!("simulator: {AGENT_NAME} accepts"));
        self.sim(
            Method::POST,
            &format!("{conversation_path}/accept"),
            json!({ "agent_name": AGENT_NAME }),
        )
        .await?;
        self.wait_for(ClientEventType::LiveAgentJoined).await?;

        // 4. The agent types and replies.
        say(&format!("simulator: {AGENT_NAME} types"));
        self.sim(
            Method::POST,
            &format!("{conversation_path}/typing"),
            json!({}),
        )
        .await?;
        self.wait_for(ClientEventType::LiveAgentTyping).await?;
        say(&format!("simulator: {AGENT_NAME} sends: {AGENT_REPLY}"));
        self.sim(
            Method::POST,
            &format!("{conversation_path}/messages"),
            json!({ "text": AGENT_REPLY }),
        )
        .await?;
        let message = self.wait_for(ClientEventType::LiveAgentMessage).await?;
        if message.data["text"] != AGENT_REPLY {
            return Err(ScriptError::Unexpected(format!(
                "the agent's reply arrived as {}",
                message.data["text"]
            )));
        }

        // 5. The customer types and answers; the agent sees it.
        say("customer: (typing)");
        self.demo(
            Method::POST,
            &format!("/api/sessions/{}/typing", self.session_id),
            json!({}),
        )
        .await?;
        say(&format!("customer: {CUSTOMER_REPLY}"));
        self.customer_says(CUSTOMER_REPLY).await?;
        self.wait_for_desktop_to_show(&conversation, CUSTOMER_REPLY)
            .await?;
        say(&format!("simulator: desktop shows \"{CUSTOMER_REPLY}\""));

        // 6. The agent ends the chat.
        say(&format!("simulator: {AGENT_NAME} ends the chat"));
        self.sim(Method::POST, &format!("{conversation_path}/end"), json!({}))
            .await?;
        let end = self.wait_for(ClientEventType::SessionEnd).await?;
        let ended_by = end.data["ended_by"].as_str().unwrap_or("(none)");
        if ended_by != EndedBy::Agent.as_str() {
            return Err(ScriptError::Unexpected(format!(
                "SESSION_END says ended_by={ended_by}, expected agent"
            )));
        }

        sleep(SETTLE_AFTER_END).await;
        let events = self.session_view().await?.events;
        self.print_new(&events);
        let problems = sequence_problems(&events);
        if !problems.is_empty() {
            return Err(ScriptError::Unexpected(problems.join("; ")));
        }
        if !events
            .iter()
            .any(|e| e.event_type == ClientEventType::PolyAgentTriggeredHandoff)
        {
            say("note: no POLY_AGENT_TRIGGERED_HANDOFF event was received");
        }
        let n = events.len();
        Ok(format!(
            "handoff demo: OK, {n} client events, seq 1..{n} gap-free"
        ))
    }

    fn timed_out(&self) -> bool {
        Instant::now() >= self.deadline
    }

    async fn call(&self, method: Method, url: String, body: Value) -> Result<Value, ScriptError> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let response = self
            .http
            .request(method.clone(), &url)
            .timeout(remaining.max(Duration::from_secs(1)))
            .json(&body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(err) if err.is_timeout() => {
                return Err(ScriptError::Timeout {
                    waiting_for: format!("{method} {url}"),
                    detail: "no answer before the deadline".into(),
                })
            }
            Err(err) => return Err(ScriptError::Http(format!("{method} {url}: {err}"))),
        };
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| ScriptError::Http(format!("{method} {url}: {e}")))?;
        if !status.is_success() {
            return Err(ScriptError::Http(format!(
                "{method} {url} answered {status}: {}",
                quote(&text)
            )));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|_| {
            ScriptError::Http(format!(
                "{method} {url} answered non-JSON: {}",
                quote(&text)
            ))
        })
    }

    async fn demo(&self, method: Method, path: &str, body: Value) -> Result<Value, ScriptError> {
        self.call(method, format!("{}{path}", self.demo_url), body)
            .await
    }

    async fn sim(&self, method: Method, path: &str, body: Value) -> Result<Value, ScriptError> {
        self.call(method, format!("{}{path}", self.sim_url), body)
            .await
    }

    async fn session_view(&self) -> Result<SessionView, ScriptError> {
        let url = format!("{}/api/sessions/{}", self.demo_url, self.session_id);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ScriptError::Http(format!("GET {url}: {e}")))?;
        response
            .error_for_status()
            .map_err(|e| ScriptError::Http(format!("GET {url}: {e}")))?
            .json()
            .await
            .map_err(|e| ScriptError::Http(format!("GET {url}: {e}")))
    }

    async fn customer_says(&self, text: &str) -> Result<Value, ScriptError> {
        self.demo(
            Method::POST,
            &format!("/api/sessions/{}/messages", self.session_id),
            json!({ "text": text }),
        )
        .await
    }

    /// Prints the events not printed yet, in seq order, stopping at a gap.
    fn print_new(&mut self, events: &[ClientEvent]) {
        for event in contiguous(events) {
            if event.seq >= self.next_to_print {
                for line in describe(event) {
                    say(&line);
                }
                self.next_to_print = event.seq + 1;
            }
        }
    }

    /// Waits for the next event of `kind` after the one matched last.
    async fn wait_for(&mut self, kind: ClientEventType) -> Result<ClientEvent, ScriptError> {
        loop {
            let events = self.session_view().await?.events;
            self.print_new(&events);
            let found = contiguous(&events)
                .find(|e| e.seq > self.last_matched && e.event_type == kind)
                .cloned();
            if let Some(event) = found {
                self.last_matched = event.seq;
                return Ok(event);
            }
            if self.timed_out() {
                return Err(ScriptError::Timeout {
                    waiting_for: kind.as_str().to_owned(),
                    detail: describe_stored(&events),
                });
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    async fn sim_conversations(&self) -> Result<Vec<Value>, ScriptError> {
        let list = self
            .sim(Method::GET, "/sim/genesys/conversations", Value::Null)
            .await?;
        Ok(conversations(list))
    }

    /// Polls the simulator until a conversation's `customer.id` is ours.
    async fn find_sim_conversation(&mut self) -> Result<String, ScriptError> {
        loop {
            let events = self.session_view().await?.events;
            self.print_new(&events);
            let list = self.sim_conversations().await?;
            if let Some(conversation) = list.iter().find(|c| is_customers(c, &self.customer_ids)) {
                return conversation_id(conversation)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ScriptError::Unexpected(format!(
                            "simulator conversation without an id: {conversation}"
                        ))
                    });
            }
            if self.timed_out() {
                return Err(ScriptError::Timeout {
                    waiting_for: format!(
                        "a simulator conversation with customer.id = {}",
                        self.session_id
                    ),
                    detail: format!("the simulator lists {} conversation(s)", list.len()),
                });
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    async fn wait_for_desktop_to_show(
        &self,
        conversation: &str,
        text: &str,
    ) -> Result<(), ScriptError> {
        loop {
            let list = self.sim_conversations().await?;
            let shown = list
                .iter()
                .find(|c| conversation_id(c) == Some(conversation))
                .is_some_and(|c| contains_text(c, text));
            if shown {
                return Ok(());
            }
            if self.timed_out() {
                return Err(ScriptError::Timeout {
                    waiting_for: format!("the agent desktop to show \"{text}\""),
                    detail: format!("conversation {conversation} does not contain it"),
                });
            }
            sleep(POLL_INTERVAL).await;
        }
    }
}

/// The events from seq 1 up to the first gap.
fn contiguous(events: &[ClientEvent]) -> impl Iterator<Item = &ClientEvent> {
    let mut sorted: Vec<&ClientEvent> = events.iter().collect();
    sorted.sort_by_key(|e| e.seq);
    sorted.dedup_by_key(|e| e.seq);
    sorted
        .into_iter()
        .zip(1u64..)
        .take_while(|(event, expected)| event.seq == *expected)
        .map(|(event, _)| event)
}

/// Transcript lines for one event.
fn describe(event: &ClientEvent) -> Vec<String> {
    let head = format!("event #{} {}", event.seq, event.event_type.as_str());
    let agent = event.data["agent"]["display_name"]
        .as_str()
        .map(|name| format!(" agent={name}"))
        .unwrap_or_default();
    match event.event_type {
        ClientEventType::PolyAgentTriggeredHandoff => vec![head],
        ClientEventType::LiveAgentJoined
        | ClientEventType::LiveAgentTyping
        | ClientEventType::LiveAgentLeft => vec![format!("{head}{agent}")],
        ClientEventType::LiveAgentMessage => vec![
            format!("{head}{agent}"),
            format!("agent: {}", event.data["text"].as_str().unwrap_or("")),
        ],
        ClientEventType::SessionEnd => vec![format!(
            "{head} ended_by={}",
            event.data["ended_by"].as_str().unwrap_or("(none)")
        )],
    }
}

/// What is wrong with a session's event log: seq not exactly 1..N, the same
/// agent message delivered twice, or anything after SESSION_END.
fn sequence_problems(events: &[ClientEvent]) -> Vec<String> {
    let mut problems = Vec::new();
    if events.is_empty() {
        problems.push("no client events were received".to_owned());
        return problems;
    }
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for event in events {
        *counts.entry(event.seq).or_default() += 1;
    }
    let max = counts.keys().next_back().copied().unwrap_or(0);
    let missing: Vec<String> = (1..=max)
        .filter(|seq| !counts.contains_key(seq))
        .map(|seq| seq.to_string())
        .collect();
    if !missing.is_empty() {
        problems.push(format!("missing seq {}", missing.join(", ")));
    }
    let duplicated: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(seq, n)| format!("{seq} (x{n})"))
        .collect();
    if !duplicated.is_empty() {
        problems.push(format!("duplicate seq {}", duplicated.join(", ")));
    }
    let mut message_ids = HashSet::new();
    for event in events
        .iter()
        .filter(|e| e.event_type == ClientEventType::LiveAgentMessage)
    {
        if let Some(id) = event.data["message_id"].as_str() {
            if !message_ids.insert(id) {
                problems.push(format!(
                    "agent message {id} delivered twice (seq {})",
                    event.seq
                ));
            }
        }
    }
    let ends: Vec<u64> = events
        .iter()
        .filter(|e| e.event_type == ClientEventType::SessionEnd)
        .map(|e| e.seq)
        .collect();
    match ends.as_slice() {
        [] => problems.push("no SESSION_END".to_owned()),
        [end] if *end != max => {
            problems.push(format!("events after SESSION_END (seq {end}..{max})"))
        }
        [_] => {}
        many => problems.push(format!("SESSION_END more than once (seq {many:?})")),
    }
    problems
}

/// For a timeout: which seqs are stored and which are missing.
fn describe_stored(events: &[ClientEvent]) -> String {
    if events.is_empty() {
        return "no client events stored yet".to_owned();
    }
    let seqs: Vec<String> = events.iter().map(|e| e.seq.to_string()).collect();
    let mut detail = format!("stored seq [{}]", seqs.join(", "));
    let max = events.iter().map(|e| e.seq).max().unwrap_or(0);
    let missing: Vec<String> = (1..=max)
        .filter(|seq| !events.iter().any(|e| e.seq == *seq))
        .map(|seq| seq.to_string())
        .collect();
    if !missing.is_empty() {
        detail.push_str(&format!(", missing seq {}", missing.join(", ")));
    }
    detail
}

/// The simulator's conversation list: an array, or `{"conversations": [...]}`.
fn conversations(list: Value) -> Vec<Value> {
    match list {
        Value::Array(items) => items,
        Value::Object(mut object) => match object.remove("conversations") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn is_customers(conversation: &Value, customer_ids: &[String]) -> bool {
    conversation["customer"]["id"]
        .as_str()
        .is_some_and(|id| customer_ids.iter().any(|ours| ours == id))
}

fn conversation_id(conversation: &Value) -> Option<&str> {
    conversation["id"]
        .as_str()
        .or_else(|| conversation["conversation_id"].as_str())
}

/// True when any string inside `value` contains `text`.
fn contains_text(value: &Value, text: &str) -> bool {
    match value {
        Value::String(s) => s.contains(text),
        Value::Array(items) => items.iter().any(|v| contains_text(v, text)),
        Value::Object(fields) => fields.values().any(|v| contains_text(v, text)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, event_type: ClientEventType, data: Value) -> ClientEvent {
        ClientEvent {
            session_id: "conv-1".into(),
            seq,
            event_type,
            at: "2026-11-23T10:01:02.123Z".into(),
            data,
        }
    }

    fn happy_log() -> Vec<ClientEvent> {
        vec![
            event(1, ClientEventType::PolyAgentTriggeredHandoff, json!({})),
            event(
                2,
                ClientEventType::LiveAgentJoined,
                json!({"agent": {"display_name": "Sam"}}),
            ),
            event(
                3,
                ClientEventType::LiveAgentMessage,
                json!({"message_id": "m1", "text": "hi"}),
            ),
            event(4, ClientEventType::SessionEnd, json!({"ended_by": "agent"})),
        ]
    }

    #[test]
    fn gap_free_log_has_no_problems() {
        assert!(sequence_problems(&happy_log()).is_empty());
    }

    #[test]
    fn gaps_duplicates_and_late_events_are_problems() {
        let mut log = happy_log();
        log.remove(1);
        assert_eq!(sequence_problems(&log), ["missing seq 2"]);

        let mut log = happy_log();
        log.push(event(
            3,
            ClientEventType::LiveAgentMessage,
            json!({"message_id": "m1"}),
        ));
        let problems = sequence_problems(&log);
        assert!(
            problems.iter().any(|p| p.contains("duplicate seq 3")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("m1 delivered twice")),
            "{problems:?}"
        );

        let mut log = happy_log();
        log.push(event(5, ClientEventType::LiveAgentTyping, json!({})));
        assert_eq!(
            sequence_problems(&log),
            ["events after SESSION_END (seq 4..5)"]
        );

        assert_eq!(sequence_problems(&[]), ["no client events were received"]);
    }

    #[test]
    fn contiguous_stops_at_the_first_gap() {
        let mut log = happy_log();
        log.remove(1);
        let seqs: Vec<u64> = contiguous(&log).map(|e| e.seq).collect();
        assert_eq!(seqs, [1]);
        assert!(describe_stored(&log).contains("missing seq 2"));
        assert_eq!(describe_stored(&[]), "no client events stored yet");
    }

    #[test]
    fn describes_events_as_transcript_lines() {
        let log = happy_log();
        assert_eq!(describe(&log[1]), ["event #2 LIVE_AGENT_JOINED agent=Sam"]);
        assert_eq!(describe(&log[2])[1], "agent: hi");
        assert_eq!(describe(&log[3]), ["event #4 SESSION_END ended_by=agent"]);
    }

    #[test]
    fn finds_our_conversation_and_its_messages() {
        let list = json!([
            {"id": "c-other", "customer": {"id": "conv-2"}},
            {"id": "c-ours", "customer": {"id": "conv-1"},
             "messages": [{"direction": "inbound", "text": "It's 1234"}]},
        ]);
        let list = conversations(list);
        let ours = list
            .iter()
            .find(|c| is_customers(c, &["conv-1".to_owned()]))
            .unwrap();
        assert_eq!(conversation_id(ours), Some("c-ours"));
        assert!(contains_text(ours, "It's 1234"));
        assert!(!contains_text(&list[0], "It's 1234"));
        assert_eq!(
            conversations(json!({"conversations": [{"id": "x"}]})).len(),
            1
        );
    }
}
