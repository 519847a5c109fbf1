//! Prints how long the first and a later 32-byte draw from AWS-LC take, over
//! fresh processes (`entropy-probe RUNS`; each run re-executes itself).

use std::process::Command;
use std::time::Instant;

fn draw() -> (f64, f64) {
    let mut buf = [0u8; 32];
    let t = Instant::now();
    aws_lc_rs::rand::fill(&mut buf).expect("random");
    let first = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    aws_lc_rs::rand::fill(&mut buf).expect("random");
    (first, t.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "20".into());
    if arg == "--once" {
        let (first, later) = draw();
        println!("{first} {later}");
        return;
    }
    let runs: usize = arg.parse().expect("RUNS");
    let exe = std::env::current_exe().expect("own path");
    let mut firsts: Vec<f64> = Vec::new();
    let mut laters: Vec<f64> = Vec::new();
    for _ in 0..runs {
        let out = Command::new(&exe).arg("--once").output().expect("run");
        let line = String::from_utf8_lossy(&out.stdout);
        let mut it = line.split_whitespace().map(|v| v.parse::<f64>().expect("number"));
        firsts.push(it.next().expect("first"));
        laters.push(it.next().expect("later"));
    }
    for v in [&mut firsts, &mut laters] {
        v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    }
    let fmt = |v: &[f64]| format!("{:.3} / {:.3} / {:.3}", v[0], v[v.len() / 2], v[v.len() - 1]);
    println!("{} | {} |", fmt(&firsts), fmt(&laters));
}
