//! Load on the local stack (issue 7, part 3): customer messages through
//! `outbound-relay` and agent messages through the Genesys webhook, at a fixed
//! rate for a fixed time, across several sessions. Prints added latency
//! (p50/p99) of user -> provider (the relay's invoke round trip until the
//! simulator has the message) and provider -> widget (simulator send until the
//! client event reaches the runtime), and the rate achieved. Bounded in count
//! and time; loopback only. Run with the stack up (see bench/run.sh).
//!
//! `load RATE_PER_SEC SECONDS SESSIONS`

use std::time::{Duration, Instant};

use e2e::{session_id, Platform, TestTenant};
use serde_json::json;

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = *args.first().unwrap_or(&50);
    let secs = *args.get(1).unwrap_or(&10);
    let sessions = *args.get(2).unwrap_or(&10) as usize;
    let t = std::sync::Arc::new(TestTenant::on(Platform::Genesys, "live").await);
    let mut live = Vec::new();
    for _ in 0..sessions {
        let s = session_id();
        let started = t.start(&s).await;
        let cid = started["provider_conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        t.agent(&cid, "accept", json!({"agent_name": "Sam"})).await;
        t.wait_event(&s, "LIVE_AGENT_JOINED", |_| true).await;
        live.push((s, cid));
    }
    let total = rate * secs;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = began + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (s, cid) = live[i as usize % live.len()].clone();
        let t = t.clone();
        tasks.spawn(async move {
            if i % 2 == 0 {
                // user -> provider
                let sent = Instant::now();
                let r = t
                    .send(&s, &format!("load-{i}"), &format!("load message {i}"))
                    .await;
                (
                    0,
                    sent.elapsed().as_secs_f64() * 1000.0,
                    r["status"] == "sent",
                )
            } else {
                // provider -> widget
                let sent = Instant::now();
                let text = format!("agent load {i}");
                t.agent(&cid, "messages", json!({"text": text})).await;
                let ev = tokio::time::timeout(
                    Duration::from_secs(30),
                    t.wait_event(&s, "LIVE_AGENT_MESSAGE", |e| {
                        e.data["text"] == text.as_str()
                    }),
                )
                .await;
                // Measured to the receiver's arrival time, not to our polling.
                let r = t.received.lock().unwrap();
                let arrived = r
                    .deliveries
                    .iter()
                    .zip(&r.arrived)
                    .find(|(e, _)| e.data["text"] == text.as_str())
                    .map(|(_, at)| at.duration_since(sent).as_secs_f64() * 1000.0);
                (
                    1,
                    arrived.unwrap_or(f64::NAN),
                    ev.is_ok() && arrived.is_some(),
                )
            }
        });
    }
    let mut lat = [Vec::new(), Vec::new()];
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        let (dir, ms, ok) = r.unwrap();
        if ok {
            lat[dir].push(ms)
        } else {
            failed += 1
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    for l in &mut lat {
        l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!("offered {rate} msg/s for {secs} s over {sessions} sessions: {total} messages, {failed} failed, achieved {:.1} msg/s", total as f64 / elapsed);
    println!("| direction | n | p50 (ms) | p99 (ms) |\n|---|---|---|---|");
    for (name, l) in ["user -> provider", "provider -> widget"].iter().zip(&lat) {
        println!(
            "| {name} | {} | {:.1} | {:.1} |",
            l.len(),
            pct(l, 0.5),
            pct(l, 0.99)
        );
    }
}
