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
//! direction's p99 exceeds 100 ms (or messages fail, or the stack falls
//! behind), or lowers it by STEP until a step passes when the first does not,
//! and prints the highest rate that passed. Each run also prints where the
//! machine's CPU went (from /proc), by part of the stack.
//!
//! Nothing waits per message: sends are fire-and-record, arrivals are stamped
//! by the receiver, and latencies are matched up by text afterwards, so the
//! generator itself stays cheap at hundreds of messages a second. At most
//! `LOAD_IN_FLIGHT` (128) requests are open at once, each with a 15 s limit;
//! latency counts from when a message was due, so a generator held back by
//! that cap shows up as latency and a lower achieved rate, not as a stall.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{session_id, Platform, TestTenant};
use serde_json::json;

const P99_LIMIT_MS: f64 = 100.0;
/// Rate of the warm-up run before anything is measured (`LOAD_WARMUP_SECS`, 30 s).
const WARMUP_RATE: u64 = 40;

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
    /// Where the CPU went while messages were being sent.
    cpu: String,
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

/// Most requests in flight at once. An overloaded stack then makes the
/// generator fall behind (the achieved rate drops) instead of piling up
/// invocations that cargo lambda watch would work through long after their
/// callers gave up.
fn max_in_flight() -> usize {
    std::env::var("LOAD_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

/// One request's limit; a request over it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

async fn run(t: &Arc<TestTenant>, live: &[(String, String)], rate: u64, secs: u64) -> RunResult {
    let run_tag: Arc<str> = session_id()[..8].into();
    let cpu_before = cpu_ticks();
    let total = rate * secs;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let began = Instant::now();
    // Sending stops here even if the stack has fallen behind; the rest count as failed.
    let stop_sending = began + Duration::from_secs(secs * 2 + 5);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_in_flight()));
    let mut tasks = tokio::task::JoinSet::new();
    let mut unsent = 0;
    for i in 0..total {
        // Latency counts from when a message was due, not from when a free
        // slot let it go, so queueing in the generator is not hidden.
        let due = began + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let Ok(Ok(slot)) =
            tokio::time::timeout_at(stop_sending.into(), slots.clone().acquire_owned()).await
        else {
            unsent = total - i;
            break;
        };
        let (s, cid) = live[i as usize % live.len()].clone();
        let t = t.clone();
        let text = format!("load {run_tag} {i}");
        let run_tag = run_tag.clone();
        tasks.spawn(async move {
            let _slot = slot;
            if i % 2 == 0 {
                let payload = json!({"tenant": t.tenant_json(), "session_id": s,
                    "message": {"id": format!("load-{run_tag}-{i}"), "text": text}});
                let r =
                    tokio::time::timeout(REQUEST_TIMEOUT, t.try_invoke("outbound-relay", &payload))
                        .await;
                let ok = matches!(&r, Ok(Ok(v)) if v["status"] == "sent");
                (0, text, due, Some(due.elapsed().as_secs_f64() * 1000.0), ok)
            } else {
                let r = tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    t.try_agent(&cid, "messages", json!({"text": text})),
                )
                .await;
                (1, text, due, None, matches!(r, Ok(Ok(_))))
            }
        });
    }
    let mut lat = [Vec::new(), Vec::new()];
    let mut failed = unsent as usize;
    let mut agent_sent: HashMap<String, Instant> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((0, _, _, Some(ms), true)) => lat[0].push(ms),
            Ok((1, text, due, _, true)) => {
                agent_sent.insert(text, due);
            }
            _ => failed += 1,
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    let cpu = cpu_share(&cpu_before, &cpu_ticks(), elapsed);
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
        achieved: (total - unsent) as f64 / elapsed,
        failed,
        lat,
        cpu,
    }
}

/// CPU time (clock ticks) used so far by each part of the stack, from
/// /proc, so a run can say where the machine's cores went.
fn cpu_ticks() -> HashMap<&'static str, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ... utime stime: fields 14 and 15, counted after ")".
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|u| u.parse::<u64>().ok())
                .unwrap_or(0);
        *out.entry(component(comm)).or_default() += ticks;
    }
    out
}

fn component(comm: &str) -> &'static str {
    match comm {
        "java" => "DynamoDB Local",
        "provider-sim" => "simulator",
        "cargo-lambda" => "cargo lambda watch",
        "load" => "load generator",
        c if c.starts_with("moto") || c.starts_with("python") => "moto",
        c if c.starts_with("start-handoff") => "start-handoff",
        c if c.starts_with("outbound-relay") => "outbound-relay",
        c if c.starts_with("inbound-webhook") => "inbound-webhook",
        c if c.starts_with("notification-po") => "notification-poller",
        c if c.starts_with("end-session") => "end-session",
        c if c.starts_with("handoff-api") => "handoff-api",
        _ => "other",
    }
}

/// "DynamoDB Local 120%, inbound-webhook 20%, ..." between two snapshots
/// (100% = one core busy for the whole interval), largest first.
fn cpu_share(
    before: &HashMap<&'static str, u64>,
    after: &HashMap<&'static str, u64>,
    secs: f64,
) -> String {
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    let mut used: Vec<(&str, f64)> = after
        .iter()
        .map(|(k, v)| {
            let d = v.saturating_sub(*before.get(k).unwrap_or(&0));
            (*k, d as f64 / hz / secs * 100.0)
        })
        .filter(|(_, pct)| *pct >= 1.0)
        .collect();
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = used.iter().map(|(_, p)| p).sum();
    let parts: Vec<String> = used.iter().map(|(k, p)| format!("{k} {p:.0}%")).collect();
    format!(
        "{total:.0}% of {} cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        parts.join(", ")
    )
}

const HEADER: &str = "| offered | achieved | user -> provider p50 / p99 | provider -> widget p50 / p99 | failed |\n|---|---|---|---|---|";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sweep = args.first().map(String::as_str) == Some("sweep");
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let n = |i: usize, d: u64| *nums.get(i).unwrap_or(&d);
    let t = Arc::new(TestTenant::on(Platform::Genesys, "live").await);
    let warm_up = |live: Vec<(String, String)>| {
        let t = t.clone();
        async move {
            let secs = std::env::var("LOAD_WARMUP_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(30);
            if secs > 0 {
                let r = run(&t, &live, WARMUP_RATE, secs).await;
                println!("warm-up, not counted ({secs} s; DynamoDB Local's JIT compiles its hot paths first):");
                println!("{HEADER}\n{}\n", r.row());
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            live
        }
    };
    if !sweep {
        let (rate, secs, sessions) = (n(0, 50), n(1, 10), n(2, 10) as usize);
        let live = warm_up(open_sessions(&t, sessions).await).await;
        let r = run(&t, &live, rate, secs).await;
        println!(
            "offered {rate} msg/s for {secs} s over {sessions} sessions: {} messages, {} failed",
            rate * secs,
            r.failed
        );
        println!("{HEADER}\n{}", r.row());
        println!();
        println!("CPU while sending: {}", r.cpu);
        return;
    }
    let (from, step, secs, sessions) = (n(0, 100), n(1, 50), n(2, 15), n(3, 20) as usize);
    let live = warm_up(open_sessions(&t, sessions).await).await;
    println!("sweep: {secs} s per step over {sessions} sessions; a step passes with no failure, p99 <= {P99_LIMIT_MS} ms and 95% of the offered rate achieved");
    println!("{HEADER}");
    let mut cpu_lines = Vec::new();
    let mut best: Option<u64> = None;
    let mut worst_failed: Option<u64> = None;
    let mut rate = from;
    // Up by STEP while steps pass; if the first fails, down by STEP until one passes.
    for _ in 0..12 {
        let r = run(&t, &live, rate, secs).await;
        println!("{}", r.row());
        cpu_lines.push(format!("* {rate} msg/s: {}", r.cpu));
        let pass = r.failed == 0 && r.p99_max() <= P99_LIMIT_MS && r.achieved >= rate as f64 * 0.95;
        if pass {
            best = Some(rate);
        } else {
            worst_failed = Some(rate);
        }
        let next = match (pass, best, worst_failed) {
            (true, _, None) => rate + step,
            (false, None, _) if rate > step => rate - step,
            _ => break,
        };
        rate = next;
        // Let queues drain between steps.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    println!();
    println!("CPU while sending, per step:");
    println!();
    for l in &cpu_lines {
        println!("{l}");
    }
    println!();
    match best {
        Some(b) => println!("maximum sustained rate with p99 <= {P99_LIMIT_MS} ms: {b} msg/s"),
        None => {
            println!("p99 exceeded {P99_LIMIT_MS} ms at every rate tried, down to {rate} msg/s")
        }
    }
}
