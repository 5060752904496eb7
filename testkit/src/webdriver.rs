//! A small W3C WebDriver client over `reqwest`, for the console's browser
//! tests: it starts Debian's `chromedriver` on a free loopback port, opens a
//! headless Chromium session, and ends both when dropped.
//!
//! `Browser::start()` fails loudly when `chromedriver` is missing: install
//! the `chromium` and `chromium-driver` packages (`.ci/run` does).

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key of an element reference in the W3C protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long `wait_*` polls before failing the test.
pub const WAIT: Duration = Duration::from_secs(30);

/// A chromedriver process and one headless Chromium session.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    http: reqwest::Client,
}

/// An element of the current page.
#[derive(Clone, Debug)]
pub struct Element(String);

/// Where chromedriver is: `CHROMEDRIVER`, else on `PATH`, else Debian's place.
fn chromedriver() -> String {
    if let Ok(path) = std::env::var("CHROMEDRIVER") {
        return path;
    }
    let on_path = std::env::var_os("PATH").map(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromedriver"))
            .find(|p| p.is_file())
    });
    match on_path.flatten() {
        Some(path) => path.display().to_string(),
        None => "/usr/bin/chromedriver".into(),
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Self {
        let path = chromedriver();
        assert!(
            std::path::Path::new(&path).is_file(),
            "chromedriver not found at {path}: the console's browser tests need Debian's \
             `chromium` and `chromium-driver` packages (apt-get install -y chromium chromium-driver), \
             or CHROMEDRIVER set to a chromedriver binary"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(&path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {path}: {e} (packages: chromium, chromium-driver)"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = browser.http.get(browser.url("/status")).send().await;
            if let Ok(ready) = ready {
                let body: Value = ready.json().await.unwrap_or(Value::Null);
                if body["value"]["ready"] == true {
                    break;
                }
            }
            if let Ok(Some(status)) = browser.driver.try_wait() {
                panic!("chromedriver exited at start with {status}");
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready in 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--no-default-browser-check", "--window-size=1280,1000"]
        });
        if std::path::Path::new("/usr/bin/chromium").is_file() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created = browser
            .command(reqwest::Method::POST, "/session", Some(capabilities))
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_owned();
        browser
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// One WebDriver command; its `value`, or a panic naming the error.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            panic!("WebDriver {path} answered {status}: {}", body["value"]);
        }
        body["value"].clone()
    }

    /// The same, answering `None` for an error (a stale or missing element).
    async fn try_command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Option<Value> {
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let response = request.send().await.ok()?;
        let ok = response.status().is_success();
        let body: Value = response.json().await.ok()?;
        ok.then(|| body["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.command(
            reqwest::Method::POST,
            &self.session_path("/url"),
            Some(json!({"url": url})),
        )
        .await;
    }

    pub async fn current_url(&self) -> String {
        let url = self
            .command(reqwest::Method::GET, &self.session_path("/url"), None)
            .await;
        url.as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        let body = json!({"script": script, "args": args});
        self.command(reqwest::Method::POST, &self.session_path("/execute/sync"), Some(body))
            .await
    }

    /// The browser console's messages since the last call (Chromium's
    /// log endpoint): each `"LEVEL message"`.
    pub async fn console_log(&self) -> Vec<String> {
        let body = json!({"type": "browser"});
        let entries = self
            .command(reqwest::Method::POST, &self.session_path("/se/log"), Some(body))
            .await;
        entries
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["level"].as_str().unwrap_or_default(),
                    e["message"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let png = self
            .command(reqwest::Method::GET, &self.session_path("/screenshot"), None)
            .await;
        decode_base64(png.as_str().unwrap_or_default())
    }

    /// Saves a PNG of the page as `<name>.png` under `CONSOLE_SCREENSHOTS`,
    /// or by default under the workspace's `target/console-screenshots/`
    /// (to look at what a test saw).
    pub async fn snapshot(&self, name: &str) {
        let dir = std::env::var_os("CONSOLE_SCREENSHOTS").map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots"),
            std::path::PathBuf::from,
        );
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.screenshot().await).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Every element matching `css` now (possibly none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let body = json!({"using": "css selector", "value": css});
        let found = self
            .try_command(reqwest::Method::POST, &self.session_path("/elements"), Some(body))
            .await;
        found
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned())))
            .collect()
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(element) = self.find_all(css).await.into_iter().next() {
                return element;
            }
            assert!(Instant::now() < deadline, "no element matches {css} after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, element: &Element) {
        let path = self.session_path(&format!("/element/{}/click", element.0));
        self.command(reqwest::Method::POST, &path, None).await;
    }

    /// Waits for `css`, then clicks it; if the page replaced the element
    /// in between (a stale reference), finds it again.
    pub async fn click_on(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let element = self.find(css).await;
            let path = self.session_path(&format!("/element/{}/click", element.0));
            if self.try_command(reqwest::Method::POST, &path, None).await.is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "could not click {css} after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into the element (after what it holds).
    pub async fn send_keys(&self, element: &Element, text: &str) {
        let path = self.session_path(&format!("/element/{}/value", element.0));
        self.command(reqwest::Method::POST, &path, Some(json!({"text": text})))
            .await;
    }

    pub async fn clear(&self, element: &Element) {
        let path = self.session_path(&format!("/element/{}/clear", element.0));
        self.command(reqwest::Method::POST, &path, None).await;
    }

    /// Waits for `css`, empties it, types `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.clear(&element).await;
        self.send_keys(&element, text).await;
    }

    /// The element's rendered text (`None` if it went stale).
    pub async fn text(&self, element: &Element) -> Option<String> {
        let path = self.session_path(&format!("/element/{}/text", element.0));
        let text = self.try_command(reqwest::Method::GET, &path, None).await?;
        Some(text.as_str().unwrap_or_default().to_owned())
    }

    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let path = self.session_path(&format!("/element/{}/attribute/{name}", element.0));
        let value = self.try_command(reqwest::Method::GET, &path, None).await?;
        value.as_str().map(str::to_owned)
    }

    /// The text of the first element matching `css` ("" when there is none).
    pub async fn text_of(&self, css: &str) -> String {
        let Some(element) = self.find_all(css).await.into_iter().next() else {
            return String::new();
        };
        self.text(&element).await.unwrap_or_default()
    }

    /// Polls until the text of `css` satisfies `check`; returns that text.
    pub async fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text_of(css).await;
            if check(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: `{css}` still reads {text:?} after {WAIT:?} (alert: {:?})",
                self.text_of("#alert").await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the text of `css` contains `needle`.
    pub async fn wait_contains(&self, css: &str, needle: &str) -> String {
        self.wait_text(css, &format!("waiting for {needle:?}"), |t| t.contains(needle))
            .await
    }

    /// Polls until `script` (a function body) returns `true`.
    pub async fn wait_script(&self, script: &str, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.execute(script, vec![]).await == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "{what} after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Standard base64 (the screenshot's encoding) without a dependency.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut bits, mut buffer) = (Vec::with_capacity(text.len() * 3 / 4), 0u32, 0u32);
    for sextet in text.bytes().filter_map(value) {
        buffer = (buffer << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

impl Drop for Browser {
    /// Ends the session (Chromium exits) with a plain blocking request, then
    /// stops chromedriver.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            if let Ok(mut stream) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let request = format!(
                    "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.session, self.addr
                );
                if stream.write_all(request.as_bytes()).is_ok() {
                    let mut answer = Vec::new();
                    let _ = stream.read_to_end(&mut answer);
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
