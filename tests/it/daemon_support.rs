//! Running `tollgate serve` in tests: a free port, a spool folder, readiness, HTTP calls with a
//! plain TCP client (no HTTP client crate needed for a handful of requests).

use crate::store_support::TestStore;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `tollgate accounts import FILE` into `store`.
pub fn import_accounts_into(store: &TestStore, accounts: &Path) {
    let mut arguments = vec!["accounts".to_string(), "import".to_string()];
    arguments.extend(store.cli_arguments());
    arguments.push(accounts.display().to_string());
    crate::support::tollgate_succeeds(&arguments);
}

/// The daemon on the shipped decks, with the config `config_text`, in a folder of its own (spool
/// at `folder/spool`, log at `folder/serve.log`).
pub fn start_sample_daemon(store: &TestStore, folder: &Path, config_text: &str) -> Daemon {
    let config = folder.join("tollgate.toml");
    std::fs::write(&config, config_text).unwrap();
    let az = crate::support::repo_path("rate-decks/az-international.csv");
    let us = crate::support::repo_path("rate-decks/us-npanxx.csv");
    start_daemon(
        store,
        &folder.join("spool"),
        &[&az, &us],
        &["--config", config.to_str().unwrap()],
        &folder.join("serve.log"),
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Daemon {
    pub child: Child,
    pub port: u16,
}

/// Starts the daemon on `store` with `spool` and `decks`; waits until `/readyz` answers.
pub fn start_daemon(
    store: &TestStore,
    spool: &Path,
    decks: &[&Path],
    extra: &[&str],
    log: &Path,
) -> Daemon {
    let port = free_port();
    let mut arguments: Vec<String> = vec!["serve".into()];
    arguments.extend(store.cli_arguments());
    arguments.extend([
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--spool-dir".into(),
        spool.display().to_string(),
    ]);
    for deck in decks {
        arguments.extend(["--deck".into(), deck.display().to_string()]);
    }
    arguments.extend(extra.iter().map(|argument| argument.to_string()));
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(&arguments)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("tollgate serve starts");
    let mut daemon = Daemon { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!(
                "tollgate serve exited at start ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if http(port, "GET", "/readyz", &[], b"").is_some_and(|(status, _)| status == 200) {
            return daemon;
        }
        assert!(
            Instant::now() < deadline,
            "tollgate serve never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Daemon {
    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tollgate serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to drain or commit.
    pub fn kill_hard(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        http(self.port, method, path, headers, body).expect("the daemon answers")
    }

    /// A request whose answer's headers or bytes matter.
    pub fn answer(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpAnswer {
        http_answer(self.port, method, path, headers, body).expect("the daemon answers")
    }
}

/// An HTTP answer as received: status, head (status line and headers) and the body's bytes.
pub struct HttpAnswer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// A header's value (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }
}

/// One HTTP/1.1 request; `None` when nothing listens.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let answer = http_answer(port, method, path, headers, body)?;
    Some((
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    ))
}

/// One HTTP/1.1 request, its answer with headers and bytes; `None` when nothing listens.
pub fn http_answer(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<HttpAnswer> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = &response[split + 4..];
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        decode_chunked(body)
    } else {
        body.to_vec()
    };
    Some(HttpAnswer { status, head, body })
}

/// A chunked HTTP/1.1 body, joined (a streamed response).
fn decode_chunked(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = rest.windows(2).position(|window| window == b"\r\n") {
        let size_line = std::str::from_utf8(&rest[..line_end]).expect("a chunk size line");
        let size = usize::from_str_radix(size_line.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        let after = &rest[line_end + 2..];
        body.extend_from_slice(&after[..size]);
        rest = &after[size + 2..];
    }
    body
}

/// Moves a file into the spool the way a producer must: written under a dot name, then renamed.
pub fn drop_into_spool(spool: &Path, name: &str, content: &[u8]) {
    let hidden = spool.join(format!(".{name}.tmp"));
    std::fs::write(&hidden, content).unwrap();
    std::fs::rename(&hidden, spool.join(name)).unwrap();
}

/// Waits until every named file has reached `spool/done`.
pub fn wait_until_done(spool: &Path, names: &[String], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if names
            .iter()
            .all(|name| spool.join("done").join(name).exists())
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
