//! Soak with faults (issue 6.1), against the running local stack
//! (`infra/soak.sh` starts it with crash injection on). Sessions are spread
//! over every platform in `Platform::ALL`, so a new provider is soaked
//! without changes here. Each session: a handoff, an agent taking it,
//! messages both ways (customer messages retried by the same id until
//! accepted, as a widget does), then an end from one side or the other.
//! Meanwhile the simulators answer 429/5xx, deliver webhooks twice and out
//! of order, drop notification streams, and the runtime callback fails.
//!
//! `soak [--sessions N] [--messages M] [--concurrency C] [--in-flight F] [--seed S]`
//! C sessions run at once (default 100); at most F calls (relay invokes,
//! agent actions, polls) are open at once across all of them (default 16).
//! With 1,000 sessions at once cargo lambda watch 1.9.2 stops handing
//! requests to its idle instances on this machine (README, Soak with faults).
//! Fault knobs: `SOAK_API_429_RATIO`, `SOAK_API_5XX_RATIO` (0.1 each),
//! `SOAK_WEBHOOK_DUPLICATE_RATIO` (0.3), `SOAK_WEBHOOK_REORDER_RATIO` (0.1),
//! `SOAK_CALLBACK_FAIL_RATIO` (0.1), `SOAK_STREAM_DROP_SECS` (15; 0 = off).
//! The soak's tenants set `agent_reorder_window_ms` to
//! `SOAK_REORDER_WINDOW_MS` (6000), so held-back webhooks are put back in
//! order: it must outlast the platforms' webhook retry delay (Genesys retries
//! 5 s apart), because a message held back behind one whose first try failed
//! arrives after that retry.
//! Exit status 1 when anything was lost, duplicated, out of order or not ended.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{Platform, TestTenant};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// How long one session may take from start to both ends, plus
/// [`DEADLINE_PER_SESSION`] for each session of the run (they share the cores).
const SESSION_DEADLINE: Duration = Duration::from_secs(600);
const DEADLINE_PER_SESSION: Duration = Duration::from_millis(1500);

/// Limits of this run, set once in `main` from the arguments.
struct Limits {
    /// Calls open at once across the run (see the module docs).
    calls: Semaphore,
    /// Between two looks at a session's progress; longer with many sessions
    /// so the polls do not crowd out the traffic they wait for.
    poll_every: Duration,
    /// How long one session may take (they share the cores).
    deadline: Duration,
}

static LIMITS: std::sync::OnceLock<Limits> = std::sync::OnceLock::new();

fn limits() -> &'static Limits {
    LIMITS.get().expect("set in main")
}

async fn slot() -> tokio::sync::SemaphorePermit<'static> {
    limits().calls.acquire().await.expect("never closed")
}

struct Args {
    sessions: usize,
    messages: usize,
    concurrency: usize,
    in_flight: usize,
    seed: u64,
}

fn args() -> Args {
    let mut a = Args {
        sessions: 1000,
        messages: 10_000,
        concurrency: 100,
        in_flight: 16,
        seed: 7,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        let Some(value) = value else {
            eprintln!("usage: soak [--sessions N] [--messages M] [--concurrency C] [--in-flight F] [--seed S]");
            std::process::exit(2);
        };
        match argv[i].as_str() {
            "--sessions" => a.sessions = value.max(1) as usize,
            "--messages" => a.messages = value as usize,
            "--concurrency" => a.concurrency = value.max(1) as usize,
            "--in-flight" => a.in_flight = value.max(1) as usize,
            "--seed" => a.seed = value,
            other => {
                eprintln!("unknown option {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

fn knob(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one session saw, both directions.
#[derive(Debug, Default, Clone)]
struct Outcome {
    platform: Option<Platform>,
    customer_sent: usize,
    customer_received: usize,
    customer_lost: usize,
    customer_duplicated: usize,
    customer_out_of_order: usize,
    agent_sent: usize,
    agent_received: usize,
    agent_lost: usize,
    agent_duplicated: usize,
    agent_out_of_order: usize,
    /// Client event seqs missing below the highest delivered one.
    seq_gaps: usize,
    /// A seq delivered twice with different content.
    seq_conflicts: usize,
    ended_widget: bool,
    ended_platform: bool,
    /// Customer sends that had to be retried (crashes, conflicts, faults).
    retries: usize,
    /// Seconds from the last message sent to the last one received.
    drain_secs: f64,
    /// Session and platform conversation ids, to look a slow one up in the logs.
    ids: String,
    error: Option<String>,
}

impl Outcome {
    fn clean(&self) -> bool {
        self.error.is_none()
            && self.customer_lost + self.customer_duplicated + self.customer_out_of_order == 0
            && self.agent_lost + self.agent_duplicated + self.agent_out_of_order == 0
            && self.seq_gaps + self.seq_conflicts == 0
            && self.ended_widget
            && self.ended_platform
    }
}

/// An agent action in the simulator, retried while the simulator is busy.
async fn agent(t: &TestTenant, cid: &str, action: &str, body: Value) -> Result<Value, String> {
    let mut last = String::new();
    for attempt in 0..20u64 {
        let slot = slot().await;
        let resp = t
            .http
            .post(format!(
                "{}/sim/{}/conversations/{cid}/{action}",
                t.sim_url,
                t.platform.sim_prefix()
            ))
            .json(&body)
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => {
                return Ok(r.json().await.unwrap_or(Value::Null));
            }
            Ok(r) => last = format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        drop(slot);
        tokio::time::sleep(Duration::from_millis(250 * (attempt + 1))).await;
    }
    Err(format!("agent {action}: {last}"))
}

fn retryable(answer: &Value) -> bool {
    !matches!(
        answer["error"]["code"].as_str(),
        Some("invalid_request" | "session_not_found" | "session_ended" | "unknown_integration")
    )
}

/// Calls `function` until it answers without an error (or a final one).
async fn until_ok(
    t: &TestTenant,
    function: &str,
    payload: &Value,
    retries: &mut usize,
    deadline: Instant,
) -> Result<Value, String> {
    loop {
        let answer = {
            let _slot = slot().await;
            t.try_invoke(function, payload).await
        };
        match &answer {
            Ok(v) if v.get("error").is_none() && v.get("errorType").is_none() => {
                return answer;
            }
            Ok(v) if !retryable(v) => return Err(format!("{function}: {v}")),
            _ => {}
        }
        *retries += 1;
        if Instant::now() > deadline {
            return Err(format!("{function} never succeeded: {answer:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn marker(session: &str, who: char, i: usize) -> String {
    format!("{who}{i} {session}")
}

/// Counts inversions of `received` against the order of `sent`.
fn out_of_order(sent: &[String], received: &[String]) -> usize {
    let rank: HashMap<&str, usize> = sent
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let ranks: Vec<usize> = received
        .iter()
        .filter_map(|r| rank.get(r.as_str()).copied())
        .collect();
    ranks.windows(2).filter(|w| w[1] < w[0]).count()
}

/// (distinct received, duplicates) of `sent` among `received`.
fn tally(sent: &[String], received: &[String]) -> (usize, usize) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in received {
        if sent.contains(r) {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    (counts.len(), counts.values().map(|c| c - 1).sum())
}

/// The widget's view: agent texts in seq order, seq gaps, conflicting seqs,
/// and whether SESSION_END arrived.
fn widget_view(t: &TestTenant, session: &str) -> (Vec<String>, usize, usize, bool) {
    let r = t.received.lock().unwrap();
    let mut by_seq: BTreeMap<u64, &handoff_common::events::ClientEvent> = BTreeMap::new();
    let mut conflicts = 0;
    for ev in r.deliveries.iter().filter(|e| e.session_id == session) {
        match by_seq.get(&ev.seq) {
            Some(prev) if **prev != *ev => conflicts += 1,
            _ => {
                by_seq.insert(ev.seq, ev);
            }
        }
    }
    let max = by_seq.keys().next_back().copied().unwrap_or(0);
    let gaps = (1..=max).filter(|s| !by_seq.contains_key(s)).count();
    let texts = by_seq
        .values()
        .filter(|e| e.event_type.as_str() == "LIVE_AGENT_MESSAGE")
        .filter_map(|e| e.data["text"].as_str().map(str::to_owned))
        .collect();
    let ended = by_seq
        .values()
        .any(|e| e.event_type.as_str() == "SESSION_END");
    (texts, gaps, conflicts, ended)
}

async fn run_session(t: Arc<TestTenant>, index: usize, messages: usize) -> Outcome {
    let mut out = Outcome {
        platform: Some(t.platform),
        ..Default::default()
    };
    if let Err(e) = drive(&t, index, messages, &mut out).await {
        out.error = Some(e);
    }
    out
}

async fn drive(
    t: &TestTenant,
    index: usize,
    messages: usize,
    out: &mut Outcome,
) -> Result<(), String> {
    let deadline = Instant::now() + limits().deadline;
    let session = e2e::session_id();
    out.ids = session.clone();
    // A handoff the platform could not open yet is retried by the poller:
    // asking again (same session id) answers its state.
    let cid = loop {
        let started = until_ok(
            t,
            "start-handoff",
            &t.start_request(&session),
            &mut out.retries,
            deadline,
        )
        .await?;
        if let Some(cid) = started["provider_conversation_id"].as_str() {
            break cid.to_owned();
        }
        if Instant::now() > deadline {
            return Err(format!("handoff never opened: {started}"));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    out.ids = format!("session {session}, conversation {cid}");
    agent(t, &cid, "accept", json!({"agent_name": "Sam"})).await?;
    let (mut customer, mut agent_sent) = (Vec::new(), Vec::new());
    // Agent first, so platforms without a join signal show the join at once.
    for i in 0..messages {
        if i.is_multiple_of(2) {
            let text = marker(&session, 'a', i);
            agent(t, &cid, "messages", json!({"text": text})).await?;
            agent_sent.push(text);
        } else {
            let text = marker(&session, 'c', i);
            let request = json!({"tenant": t.tenant_json(), "session_id": session,
                "message": {"id": format!("m-{i}"), "text": text}});
            until_ok(t, "outbound-relay", &request, &mut out.retries, deadline).await?;
            customer.push(text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out.customer_sent = customer.len();
    out.agent_sent = agent_sent.len();
    let last_sent = Instant::now();
    // Wait for both directions to arrive (or the deadline).
    let (platform_texts, widget_texts) = loop {
        let platform = {
            let _slot = slot().await;
            t.inbound_texts(&cid).await
        };
        let (widget, ..) = widget_view(t, &session);
        let done = tally(&customer, &platform).0 == customer.len()
            && tally(&agent_sent, &widget).0 == agent_sent.len();
        if done || Instant::now() > deadline {
            break (platform, widget);
        }
        tokio::time::sleep(limits().poll_every).await;
    };
    out.drain_secs = last_sent.elapsed().as_secs_f64();
    // Settle, so late duplicates are counted too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let platform_texts = {
        let later = {
            let _slot = slot().await;
            t.inbound_texts(&cid).await
        };
        if later.len() >= platform_texts.len() {
            later
        } else {
            platform_texts
        }
    };
    let widget_texts = {
        let (later, ..) = widget_view(t, &session);
        if later.len() >= widget_texts.len() {
            later
        } else {
            widget_texts
        }
    };
    let relevant = |texts: &[String], sent: &[String]| -> Vec<String> {
        texts.iter().filter(|x| sent.contains(x)).cloned().collect()
    };
    let platform_texts = relevant(&platform_texts, &customer);
    let widget_texts = relevant(&widget_texts, &agent_sent);
    let (got, dup) = tally(&customer, &platform_texts);
    out.customer_received = got;
    out.customer_lost = customer.len() - got;
    out.customer_duplicated = dup;
    out.customer_out_of_order = out_of_order(&customer, &platform_texts);
    let (got, dup) = tally(&agent_sent, &widget_texts);
    out.agent_received = got;
    out.agent_lost = agent_sent.len() - got;
    out.agent_duplicated = dup;
    out.agent_out_of_order = out_of_order(&agent_sent, &widget_texts);

    // Half end from the widget, half from the agent.
    if index.is_multiple_of(2) {
        let request =
            json!({"tenant": t.tenant_json(), "session_id": session, "reason": "USER_END_SESSION"});
        until_ok(t, "end-session", &request, &mut out.retries, deadline).await?;
    } else {
        agent(t, &cid, "end", json!({})).await?;
    }
    loop {
        let (_, gaps, conflicts, ended) = widget_view(t, &session);
        let conv = {
            let _slot = slot().await;
            t.conversation_by_id(&cid).await.unwrap_or(Value::Null)
        };
        // Customer side gone (user end), or the agent ended it there.
        let platform_ended = conv["customer_connected"] == false || index % 2 == 1;
        if (ended && platform_ended) || Instant::now() > deadline {
            out.ended_widget = ended;
            out.ended_platform = platform_ended;
            out.seq_gaps = gaps;
            out.seq_conflicts = conflicts;
            break;
        }
        tokio::time::sleep(limits().poll_every).await;
    }
    Ok(())
}

/// Knobs each simulator takes (a knob a platform has no use for is refused
/// by its simulator, and left out here).
async fn set_faults(t: &TestTenant, seed: u64) -> Vec<String> {
    let wanted = [
        ("api_429_ratio", json!(knob("SOAK_API_429_RATIO", 0.1))),
        ("api_5xx_ratio", json!(knob("SOAK_API_5XX_RATIO", 0.1))),
        (
            "webhook_duplicate_ratio",
            json!(knob("SOAK_WEBHOOK_DUPLICATE_RATIO", 0.3)),
        ),
        (
            "webhook_reorder_ratio",
            json!(knob("SOAK_WEBHOOK_REORDER_RATIO", 0.1)),
        ),
    ];
    let url = format!("{}/sim/{}/faults", t.sim_url, t.platform.sim_prefix());
    let _ = t.http.post(&url).json(&json!({"seed": seed})).send().await;
    let mut applied = Vec::new();
    for (name, value) in wanted {
        let resp = t.http.post(&url).json(&json!({name: value})).send().await;
        if resp.is_ok_and(|r| r.status().is_success()) {
            applied.push(format!("{name}={value}"));
        }
    }
    applied
}

#[derive(Default)]
struct Totals {
    sessions: usize,
    failed: usize,
    customer: [usize; 5],
    agent: [usize; 5],
    gaps: usize,
    ended_both: usize,
    retries: usize,
    max_drain: f64,
    slowest: String,
}

impl Totals {
    fn add(&mut self, o: &Outcome) {
        self.sessions += 1;
        self.failed += usize::from(o.error.is_some());
        for (slot, v) in self.customer.iter_mut().zip([
            o.customer_sent,
            o.customer_received,
            o.customer_lost,
            o.customer_duplicated,
            o.customer_out_of_order,
        ]) {
            *slot += v;
        }
        for (slot, v) in self.agent.iter_mut().zip([
            o.agent_sent,
            o.agent_received,
            o.agent_lost,
            o.agent_duplicated,
            o.agent_out_of_order,
        ]) {
            *slot += v;
        }
        self.gaps += o.seq_gaps + o.seq_conflicts;
        self.ended_both += usize::from(o.ended_widget && o.ended_platform);
        self.retries += o.retries;
        if o.drain_secs > self.max_drain {
            self.max_drain = o.drain_secs;
            self.slowest = o.ids.clone();
        }
    }

    fn row(&self, name: &str) -> String {
        let [cs, cr, cl, cd, co] = self.customer;
        let [as_, ar, al, ad, ao] = self.agent;
        format!(
            "| {name} | {} | {cs}/{cr}/{cl}/{cd}/{co} | {as_}/{ar}/{al}/{ad}/{ao} | {} | {}/{} | {} | {} | {:.1} |",
            self.sessions, self.gaps, self.ended_both, self.sessions, self.failed, self.retries, self.max_drain
        )
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let a = args();
    let per_session = (a.messages / a.sessions).max(2);
    let _ = LIMITS.set(Limits {
        calls: Semaphore::new(a.in_flight),
        poll_every: Duration::from_millis((500 * (a.concurrency as u64 / 100)).clamp(500, 5000)),
        deadline: SESSION_DEADLINE + DEADLINE_PER_SESSION * a.sessions as u32,
    });
    println!(
        "soak: {} sessions x {per_session} messages over {} platforms, concurrency {}, calls in flight {}, seed {}",
        a.sessions,
        Platform::ALL.len(),
        a.concurrency,
        a.in_flight,
        a.seed
    );
    let callback_fail = knob("SOAK_CALLBACK_FAIL_RATIO", 0.1);
    let window = knob("SOAK_REORDER_WINDOW_MS", 6000.0) as u64;
    println!("tenants' agent_reorder_window_ms: {window}");
    let mut tenants = Vec::new();
    for p in Platform::ALL {
        let runtime = json!({"agent_reorder_window_ms": window});
        let t = TestTenant::with_runtime(p, "live", runtime).await;
        t.received.lock().unwrap().fail_ratio = callback_fail;
        let applied = set_faults(&t, a.seed).await;
        println!(
            "faults {}: {}; callback 503 ratio {callback_fail}; stream drops: {}",
            p.integration_key(),
            applied.join(", "),
            if p.stream_drop_fault().is_some() {
                "yes"
            } else {
                "no stream"
            }
        );
        tenants.push(Arc::new(t));
    }
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drop_every = knob("SOAK_STREAM_DROP_SECS", 15.0);
    let dropper = (drop_every > 0.0).then(|| {
        let (tenants, done) = (tenants.clone(), done.clone());
        tokio::spawn(async move {
            let mut drops = 0usize;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs_f64(drop_every)).await;
                for t in &tenants {
                    if let Some(mut fault) = t.platform.stream_drop_fault() {
                        fault["integration_id"] = json!(t.scope);
                        let url = format!("{}/sim/{}/faults", t.sim_url, t.platform.sim_prefix());
                        let resp = t.http.post(&url).json(&fault).send().await;
                        drops += usize::from(resp.is_ok_and(|r| r.status().is_success()));
                    }
                }
            }
            drops
        })
    });
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = {
        let (finished, done, total) = (finished.clone(), done.clone(), a.sessions);
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let n = finished.load(std::sync::atomic::Ordering::SeqCst);
                println!(
                    "progress: {n}/{total} sessions done after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let gate = Arc::new(Semaphore::new(a.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.sessions {
        let t = tenants[i % tenants.len()].clone();
        let (gate, finished) = (gate.clone(), finished.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let outcome = run_session(t, i / Platform::ALL.len(), per_session).await;
            finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            outcome
        });
    }
    let mut outcomes = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(o) => outcomes.push(o),
            Err(e) => outcomes.push(Outcome {
                error: Some(format!("session task panicked: {e}")),
                ..Default::default()
            }),
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    progress.abort();
    let drops = match dropper {
        Some(h) => h.await.map_or("?".to_owned(), |n| n.to_string()),
        None => "off".to_owned(),
    };
    for t in &tenants {
        let url = format!("{}/sim/{}/faults", t.sim_url, t.platform.sim_prefix());
        let _ = t.http.post(&url).json(&json!({"reset": true})).send().await;
    }
    let elapsed = started.elapsed().as_secs_f64();

    let mut total = Totals::default();
    let mut by_platform: BTreeMap<&str, Totals> = BTreeMap::new();
    for o in &outcomes {
        total.add(o);
        let name = o.platform.map_or("unknown", |p| p.integration_key());
        by_platform.entry(name).or_default().add(o);
    }
    println!();
    println!("Columns: sent/received/lost/duplicated/out of order; seq problems = gaps + conflicting redeliveries.");
    println!("| provider | sessions | customer -> agent | agent -> widget | seq problems | ended both sides | failed | send retries | slowest drain s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, t) in &by_platform {
        println!("{}", t.row(name));
    }
    println!("{}", total.row("**all**"));
    println!();
    println!(
        "slowest drain: {:.1} s ({})",
        total.max_drain, total.slowest
    );
    let callback_failures: usize = tenants
        .iter()
        .map(|t| t.received.lock().unwrap().failed_at_random)
        .sum();
    println!();
    println!(
        "messages sent {}, received {}, lost {}, duplicated {}, out of order {}; sessions ended on both sides {}/{}; runtime callbacks failed on purpose {callback_failures}; stream drops {drops}; {elapsed:.0} s",
        total.customer[0] + total.agent[0],
        total.customer[1] + total.agent[1],
        total.customer[2] + total.agent[2],
        total.customer[3] + total.agent[3],
        total.customer[4] + total.agent[4],
        total.ended_both,
        total.sessions,
    );
    let bad: Vec<&Outcome> = outcomes.iter().filter(|o| !o.clean()).collect();
    for o in bad.iter().take(20) {
        println!("problem: {o:?}");
    }
    if !bad.is_empty() {
        println!(
            "soak FAILED: {} of {} sessions had a problem",
            bad.len(),
            outcomes.len()
        );
        std::process::exit(1);
    }
    println!("soak passed: 0 lost, 0 duplicated, 0 out of order, every session ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn tallies_find_loss_duplicates_and_inversions() {
        let sent = s(&["a", "b", "c"]);
        assert_eq!(tally(&sent, &s(&["a", "b", "c"])), (3, 0));
        assert_eq!(tally(&sent, &s(&["a", "c", "c", "x"])), (2, 1));
        assert_eq!(out_of_order(&sent, &s(&["a", "b", "c"])), 0);
        assert_eq!(out_of_order(&sent, &s(&["b", "a", "c"])), 1);
        assert_eq!(out_of_order(&sent, &s(&["c", "b", "a"])), 2);
    }
}
