//! A real HTTP server on 127.0.0.1 that plays an account's webhook endpoint: it records every
//! request and answers each with the next status of its script (the last one repeats).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct ReceivedHook {
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl ReceivedHook {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

pub struct WebhookReceiver {
    pub url: String,
    received: Arc<Mutex<Vec<ReceivedHook>>>,
}

impl WebhookReceiver {
    /// Starts a receiver answering the statuses of `script` in turn (the last one from then on).
    pub fn start(script: &[u16]) -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/tollgate", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = script.to_vec();
        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            for (index, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let Some(hook) = read_request(&mut stream) else {
                    continue;
                };
                log.lock().unwrap().push(hook);
                let status = script[index.min(script.len() - 1)];
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        WebhookReceiver { url, received }
    }

    pub fn received(&self) -> Vec<ReceivedHook> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests have arrived (panics after `seconds`).
    pub fn wait_for(&self, count: usize, seconds: u64) -> Vec<ReceivedHook> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {count} webhook requests arrived: {received:?}",
                received.len()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<ReceivedHook> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(ReceivedHook {
        path,
        headers,
        body: String::from_utf8(body).ok()?,
    })
}
