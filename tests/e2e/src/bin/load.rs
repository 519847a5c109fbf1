//! Load on the local stack (issue 7, part 3): customer messages through
//! `outbound-relay` and agent messages through the Genesys webhook, at a fixed
//! rate for a fixed time, across several sessions. Prints added latency
//! (p50/p99) of user -> provider (the relay's invoke round trip until the
//! simulator has the message) and provider -> widget (simulator send until the
//! client event reaches the runtime), and the rate achieved. Bounded in count
//! and time; loopback only. Run with the stack up (see bench/run.sh).
//!
//! `load RATE_PER_SEC SECONDS SESSIONS` — one fixed-rate run.
//! `load sweep FROM STEP SECONDS SESSIONS` — raises the rate by STEP until a
//! direction's p99 exceeds 100 ms (or messages fail), and prints the highest
//! rate that stayed under it.
//!
//! Nothing waits per message: sends are fire-and-record, arrivals are stamped
//! by the receiver, and latencies are matched up by text afterwards, so the
//! generator itself stays cheap at hundreds of messages a second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{session_id, Platform, TestTenant};
use serde_json::json;

const P99_LIMIT_MS: f64 = 100.0;

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct RunResult {
    rate: u64,
    achieved: f64,
    failed: usize,
    /// Sorted latencies (ms): [user -> provider, provider -> widget].
    lat: [Vec<f64>; 2],
}

impl RunResult {
    fn p99_max(&self) -> f64 {
        self.lat.iter().map(|l| pct(l, 0.99)).fold(0.0, |a, b| {
            if b.is_nan() {
                f64::INFINITY
            } else {
                a.max(b)
            }
        })
    }

    fn row(&self) -> String {
        format!(
            "| {} msg/s | {:.1} msg/s | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {} |",
            self.rate,
            self.achieved,
            pct(&self.lat[0], 0.5),
            pct(&self.lat[0], 0.99),
            pct(&self.lat[1], 0.5),
            pct(&self.lat[1], 0.99),
            self.failed
        )
    }
}

async fn open_sessions(t: &TestTenant, n: usize) -> Vec<(String, String)> {
    let mut live = Vec::new();
    for _ in 0..n {
        let s = session_id();
        let started = t.start(&s).await;
        let cid = started["provider_conversation_id"]
            .as_str()
            .expect("handoff opened")
            .to_owned();
        t.agent(&cid, "accept", json!({"agent_name": "Sam"})).await;
        t.wait_event(&s, "LIVE_AGENT_JOINED", |_| true).await;
        live.push((s, cid));
    }
    live
}

async fn run(t: &Arc<TestTenant>, live: &[(String, String)], rate: u64, secs: u64) -> RunResult {
    let run_tag: Arc<str> = session_id()[..8].into();
    let total = rate * secs;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = began + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (s, cid) = live[i as usize % live.len()].clone();
        let t = t.clone();
        let text = format!("load {run_tag} {i}");
        let run_tag = run_tag.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            if i % 2 == 0 {
                let r = t.send(&s, &format!("load-{run_tag}-{i}"), &text).await;
                let ok = r["status"] == "sent";
                (
                    0,
                    text,
                    sent,
                    Some(sent.elapsed().as_secs_f64() * 1000.0),
                    ok,
                )
            } else {
                t.agent(&cid, "messages", json!({"text": text})).await;
                (1, text, sent, None, true)
            }
        });
    }
    let mut lat = [Vec::new(), Vec::new()];
    let mut failed = 0;
    let mut agent_sent: HashMap<String, Instant> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        match r.expect("load task") {
            (0, _, _, Some(ms), true) => lat[0].push(ms),
            (1, text, sent, _, true) => {
                agent_sent.insert(text, sent);
            }
            _ => failed += 1,
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    // Agent messages: wait (bounded) until every one has reached the runtime.
    let deadline = Instant::now() + Duration::from_secs(30);
    let arrived: HashMap<String, Instant> = loop {
        let arrived: HashMap<String, Instant> = {
            let r = t.received.lock().unwrap();
            r.deliveries
                .iter()
                .zip(&r.arrived)
                .filter_map(|(e, at)| {
                    let text = e.data["text"].as_str()?;
                    agent_sent
                        .contains_key(text)
                        .then(|| (text.to_owned(), *at))
                })
                .collect()
        };
        if arrived.len() == agent_sent.len() || Instant::now() > deadline {
            break arrived;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (text, sent) in &agent_sent {
        match arrived.get(text) {
            Some(at) => lat[1].push(at.duration_since(*sent).as_secs_f64() * 1000.0),
            None => failed += 1,
        }
    }
    for l in &mut lat {
        l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    RunResult {
        rate,
        achieved: total as f64 / elapsed,
        failed,
        lat,
    }
}

const HEADER: &str = "| offered | achieved | user -> provider p50 / p99 | provider -> widget p50 / p99 | failed |\n|---|---|---|---|---|";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sweep = args.first().map(String::as_str) == Some("sweep");
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let n = |i: usize, d: u64| *nums.get(i).unwrap_or(&d);
    let t = Arc::new(TestTenant::on(Platform::Genesys, "live").await);
    if !sweep {
        let (rate, secs, sessions) = (n(0, 50), n(1, 10), n(2, 10) as usize);
        let live = open_sessions(&t, sessions).await;
        let r = run(&t, &live, rate, secs).await;
        println!(
            "offered {rate} msg/s for {secs} s over {sessions} sessions: {} messages, {} failed",
            rate * secs,
            r.failed
        );
        println!("{HEADER}\n{}", r.row());
        return;
    }
    let (from, step, secs, sessions) = (n(0, 100), n(1, 50), n(2, 15), n(3, 20) as usize);
    let live = open_sessions(&t, sessions).await;
    println!("sweep: {secs} s per step over {sessions} sessions; stops when a p99 exceeds {P99_LIMIT_MS} ms");
    println!("{HEADER}");
    let mut best = None;
    let mut rate = from;
    loop {
        let r = run(&t, &live, rate, secs).await;
        println!("{}", r.row());
        if r.failed > 0 || r.p99_max() > P99_LIMIT_MS || r.achieved < rate as f64 * 0.95 {
            break;
        }
        best = Some(rate);
        rate += step;
        // Let queues drain between steps.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    match best {
        Some(b) => println!("maximum sustained rate with p99 <= {P99_LIMIT_MS} ms: {b} msg/s"),
        None => println!("p99 exceeded {P99_LIMIT_MS} ms already at {from} msg/s"),
    }
}
