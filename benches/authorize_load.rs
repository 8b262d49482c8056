//! Open-loop load on `POST /v1/calls/authorize` + `POST /v1/calls/{id}/end` of a running
//! `tollgate serve`: calls start on a fixed schedule (not when the previous answer came back), and
//! each latency is measured from the call's scheduled start, so a stall shows in the tail instead
//! of silently lowering the rate. Prints the achieved rate and latency percentiles.
//!
//! `cargo bench --bench authorize_load -- PORT CALLS_PER_SECOND SECONDS ACCOUNT [CONNECTIONS]`
//! (see benches/authorize_latency.sh, which sets up the daemon and accounts). With ACCOUNT `-`
//! each call is two `GET /readyz` instead, on the same schedule and connections: the floor that
//! the HTTP path, the load generator and the shared cores put under every authorization figure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Sends one request on a keep-alive connection and reads the whole answer; returns the status.
fn exchange(
    writer: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    path: &str,
    body: &str,
) -> std::io::Result<u16> {
    let (method, body) = if path == FLOOR_PATH {
        ("GET", "")
    } else {
        ("POST", body)
    };
    write!(
        writer,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(status)
}

/// What a call asks for in floor mode: an answer that needs neither the authorizer nor a commit.
const FLOOR_PATH: &str = "/readyz";

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let arguments: Vec<String> = std::env::args()
        .skip(1)
        .filter(|argument| argument != "--bench")
        .collect();
    if arguments.is_empty() {
        // Built and run without arguments by `cargo test --all-targets`: there is no daemon to
        // load, so there is nothing to do.
        eprintln!("authorize_load: no daemon given; see benches/authorize_latency.sh");
        return;
    }
    if arguments.len() < 4 {
        eprintln!("usage: authorize_load PORT CALLS_PER_SECOND SECONDS ACCOUNT [CONNECTIONS]");
        std::process::exit(2);
    }
    let port: u16 = arguments[0].parse().expect("port");
    let rate: f64 = arguments[1].parse().expect("calls per second");
    let seconds: f64 = arguments[2].parse().expect("seconds");
    let account = arguments[3].clone();
    let connections: usize = arguments
        .get(4)
        .map_or(16, |n| n.parse().expect("connections"));
    let n_calls = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let run = std::process::id();
    let start = Instant::now() + Duration::from_millis(200);
    let workers: Vec<_> = (0..connections)
        .map(|worker| {
            let account = account.clone();
            std::thread::spawn(move || {
                let stream = TcpStream::connect(("127.0.0.1", port)).expect("daemon listening");
                stream.set_nodelay(true).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut latencies = Latencies::default();
                let mut failures = 0u64;
                for call in (worker..n_calls).step_by(connections) {
                    let scheduled = start + interval.mul_f64(call as f64);
                    if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let call_id = format!("load-{run}-{call}");
                    let authorize = format!(
                        r#"{{"call_id":"{call_id}","account":"{account}","direction":"outbound","caller":"14155550001","callee":"1312555{:04}"}}"#,
                        call % 10_000
                    );
                    let (authorize_path, end) = if account == "-" {
                        (FLOOR_PATH, FLOOR_PATH.to_string())
                    } else {
                        ("/v1/calls/authorize", format!("/v1/calls/{call_id}/end"))
                    };
                    let mut end_sent = scheduled;
                    let answered = exchange(&mut writer, &mut reader, authorize_path, &authorize)
                        .and_then(|status| {
                            end_sent = Instant::now();
                            exchange(&mut writer, &mut reader, &end, "")
                                .map(|end_status| (status, end_status))
                        });
                    match answered {
                        Ok((200, 200)) => {
                            let answered_at = Instant::now();
                            latencies.call.push(answered_at - scheduled);
                            latencies.authorize.push(end_sent - scheduled);
                            latencies.end.push(answered_at - end_sent);
                        }
                        _ => failures += 1,
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut latencies = Latencies::default();
    let mut failures = 0;
    for worker in workers {
        let (worker_latencies, worker_failures) = worker.join().unwrap();
        latencies.call.extend(worker_latencies.call);
        latencies.authorize.extend(worker_latencies.authorize);
        latencies.end.extend(worker_latencies.end);
        failures += worker_failures;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "target {rate:.0} calls/s for {seconds:.0} s: {} calls answered ({:.0} calls/s achieved), {failures} failed; \
         authorize+end from scheduled start {}",
        latencies.call.len(),
        latencies.call.len() as f64 / elapsed,
        summary(&mut latencies.call),
    );
    println!(
        "  of which authorize from scheduled start {}; end from its sending {}",
        summary(&mut latencies.authorize),
        summary(&mut latencies.end),
    );
}

/// Per answered call: the whole call, its authorize (from the scheduled start, so queueing
/// counts) and its end (from when it was sent).
#[derive(Default)]
struct Latencies {
    call: Vec<Duration>,
    authorize: Vec<Duration>,
    end: Vec<Duration>,
}

/// "p50 …, p99 …, max …" of some latencies, in milliseconds.
fn summary(latencies: &mut [Duration]) -> String {
    latencies.sort();
    let milliseconds = |duration: Duration| duration.as_secs_f64() * 1e3;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        milliseconds(percentile(latencies, 0.50)),
        milliseconds(percentile(latencies, 0.99)),
        milliseconds(latencies.last().copied().unwrap_or_default()),
    )
}
