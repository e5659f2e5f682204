//! The dashboard: served by the node's RPC, protected against cross-site
//! requests, and (in a real headless Chromium) live: connections appear
//! without a reload, and the "Ban" button disconnects a peer.
//!
//! The browser test needs Debian's `chromium` and `chromium-driver`;
//! `.ci/run` installs them and runs it:
//!
//! ```sh
//! cargo test -p tezos-p2p-node --test dashboard -- --ignored
//! ```
//!
//! Its screenshots go to `target/tmp/dashboard/` (and also to
//! `$DASHBOARD_SCREENSHOTS` when set: that is how `docs/` got the README's).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// One raw HTTP/1.1 request with exactly `headers`: the status, the
/// response's headers (lower-case names) and its body.
fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut hs = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        hs.push((k.to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut rest = String::new();
    let _ = r.read_to_string(&mut rest);
    (status, hs, rest)
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let dir = TempDir::new("dash-page");
    let a = NodeProc::start(dir.path(), &[]);
    let (s, hs, body) = raw(a.rpc, "GET", "/", &[], "");
    assert_eq!(s, 200);
    assert!(header(&hs, "content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(
        body.contains("<script src=\"/dashboard/dashboard.js\""),
        "{body}"
    );
    let csp = header(&hs, "content-security-policy").expect("a CSP");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(header(&hs, "x-frame-options"), Some("DENY"));
    // Everything the page loads is served by the node: no CDN.
    for asset in ["/dashboard/dashboard.js", "/dashboard/dashboard.css"] {
        let (s, hs, body) = raw(a.rpc, "GET", asset, &[], "");
        assert_eq!(s, 200, "{asset}");
        // (The SVG namespace is a name, not an address.)
        let other = body.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !other.contains("http://") && !other.contains("https://") && !other.contains("url("),
            "{asset} fetches from elsewhere"
        );
        assert!(header(&hs, "content-security-policy").is_some());
    }
    assert!(
        !body.contains("https://"),
        "the page loads nothing from elsewhere"
    );
    let snap = a.get("/dashboard/snapshot");
    assert_eq!(snap["node"]["peer_id"], a.peer_id());
    assert_eq!(snap["connections"], serde_json::json!([]));
}

#[test]
fn a_cross_site_form_post_is_refused() {
    let dir = TempDir::new("dash-csrf");
    let a = NodeProc::start(dir.path(), &[]);
    let b_dir = TempDir::new("dash-csrf-b");
    let b = NodeProc::start(b_dir.path(), &["--peer".into(), a.p2p.to_string()]);
    let bid = b.peer_id();
    eventually("b connects", || {
        a.req("GET", &format!("/network/connections/{bid}"), None).0 == 200
    });
    let sent = || {
        a.metric("octez_p2p_messages_broadcast_message_sent_total")
            .unwrap_or(0.0)
    };
    let before = sent();

    // What an HTML form on another site makes the browser send.
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", "http://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ];
    let (s, hs, body) = raw(a.rpc, "POST", "/messages/broadcast", &form, "text=pwned");
    assert_eq!(s, 415, "{body}");
    assert!(body.contains("Content-Type: application/json"), "{body}");
    assert!(header(&hs, "access-control-allow-origin").is_none());
    // A text/plain "simple" request, the other form a page can send
    // without a preflight.
    let (s, _, _) = raw(
        a.rpc,
        "PATCH",
        &format!("/network/peers/{bid}"),
        &[("Content-Type", "text/plain")],
        r#"{"acl":"ban"}"#,
    );
    assert_eq!(s, 415);
    // JSON, but from another origin (a page cannot send this without a
    // preflight; refused anyway).
    let (s, _, body) = raw(
        a.rpc,
        "DELETE",
        &format!("/network/connections/{bid}"),
        &[
            ("Content-Type", "application/json"),
            ("Origin", "http://evil.example"),
        ],
        "",
    );
    assert_eq!(s, 403, "{body}");
    // The preflight such a page would need is never granted.
    let (s, hs, _) = raw(
        a.rpc,
        "OPTIONS",
        "/messages/broadcast",
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        "",
    );
    assert_ne!(s, 200);
    assert!(header(&hs, "access-control-allow-origin").is_none());
    // None of it did anything.
    assert_eq!(sent(), before);
    assert_eq!(
        a.req("GET", &format!("/network/connections/{bid}"), None).0,
        200
    );
    assert_eq!(a.get(&format!("/network/peers/{bid}/banned")), false);

    // The same requests as the dashboard (same origin) or a client (no
    // Origin) send them pass.
    let origin = format!("http://{}", a.rpc);
    let (s, _, body) = raw(
        a.rpc,
        "POST",
        "/messages/broadcast",
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Origin", &origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        r#"{"text": "hello"}"#,
    );
    assert_eq!(s, 200, "{body}");
    eventually("the broadcast counted", || sent() > before);
    let (s, _, _) = raw(
        a.rpc,
        "DELETE",
        &format!("/network/connections/{bid}?wait"),
        &[("Content-Type", "application/json")],
        "",
    );
    assert_eq!(s, 200);
}

// ---- the browser test ----------------------------------------------------

/// `chromedriver` on a free port, killed on drop.
struct Driver(Child, u16);

impl Driver {
    fn start() -> Driver {
        let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port();
        // In a process group of its own, with the browsers it starts, so
        // that dropping it ends them all, even when a test panics.
        let child = Command::new(&bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {bin} ({e}): install Debian's chromium-driver, or set CHROMEDRIVER"
                )
            });
        let d = Driver(child, port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    async fn client(&self, dark: bool) -> fantoccini::Client {
        let chrome = std::env::var("CHROME").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1400,1400",
        ];
        if dark {
            args.push("--force-dark-mode");
            args.push("--blink-settings=preferredColorScheme=0");
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chrome, "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.1))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

fn screenshot_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard")];
    if let Some(d) = std::env::var_os("DASHBOARD_SCREENSHOTS") {
        dirs.push(d.into());
    }
    dirs
}

async fn screenshot(c: &fantoccini::Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    for d in screenshot_dirs() {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), &png).unwrap();
    }
}

/// Waits up to `secs` for `css` to match an element.
async fn wait_for(c: &fantoccini::Client, css: &str, secs: u64) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(secs))
        .every(Duration::from_millis(100))
        .for_element(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} after {secs} s: {e}"))
}

/// Waits up to `secs` for `css` to match nothing.
async fn wait_gone(c: &fantoccini::Client, css: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !c
        .find_all(fantoccini::Locator::Css(css))
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "{css} still there after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The lowest WCAG contrast ratio between the text of any element with
/// text of its own and the background behind it, with that element.
async fn min_contrast(c: &fantoccini::Client) -> (f64, String) {
    let v: serde_json::Value = c
        .execute(
            "const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
             const lum = ([r, g, b]) => {
               const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
               return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
             };
             const bgOf = (e) => {
               for (; e; e = e.parentElement) {
                 const c = rgb(getComputedStyle(e).backgroundColor);
                 if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
               }
               return [255, 255, 255];
             };
             let worst = [99, ''];
             for (const e of document.querySelectorAll('body *')) {
               const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
               if (!own || !e.getClientRects().length) continue;
               const a = lum(rgb(getComputedStyle(e).color).slice(0, 3)), b = lum(bgOf(e));
               const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
               if (ratio < worst[0]) worst = [ratio, e.outerHTML.slice(0, 120)];
             }
             return worst;",
            vec![],
        )
        .await
        .unwrap();
    (
        v[0].as_f64().unwrap(),
        v[1].as_str().unwrap_or("").to_owned(),
    )
}

fn row(peer: &str) -> String {
    format!("#conn-body tr[data-peer=\"{peer}\"]")
}

#[test]
#[ignore = "needs chromium and chromium-driver (Debian packages); .ci/run installs them and runs it with --ignored"]
fn the_dashboard_is_live_in_a_real_browser() {
    let (da, db, dc) = (
        TempDir::new("dash-a"),
        TempDir::new("dash-b"),
        TempDir::new("dash-c"),
    );
    // Pings make some traffic for the charts.
    let ping = ["--ping-interval".to_string(), "0.5".into()];
    let b = NodeProc::start(db.path(), &ping);
    let c = NodeProc::start(dc.path(), &ping);
    let a = NodeProc::start(da.path(), &["--peer".into(), b.p2p.to_string()]);
    let (bid, cid) = (b.peer_id(), c.peer_id());
    eventually("a connects to b", || {
        a.req("GET", &format!("/network/connections/{bid}"), None).0 == 200
    });
    let driver = Driver::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let browser = driver.client(false).await;
        browser.goto(&format!("http://{}/", a.rpc)).await.unwrap();
        // The table lists the peer.
        wait_for(&browser, &row(&bid), 15).await;
        let status = wait_for(&browser, "#status", 5).await;
        assert_eq!(status.text().await.unwrap(), "live");
        // Every control has an accessible name: a label, text or an
        // aria-label.
        let unnamed: serde_json::Value = browser
            .execute(
                "return [...document.querySelectorAll('input, select, button')]
                   .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
                   .map(e => e.outerHTML)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(unnamed, serde_json::json!([]), "controls without a name");

        let worst = min_contrast(&browser).await;
        assert!(worst.0 >= 4.5, "light scheme: contrast {worst:?} under WCAG AA's 4.5");

        // A connection opened afterwards appears without a reload.
        let (s, v) = a.req("PUT", &format!("/network/points/{}?timeout=5", c.p2p), None);
        assert_eq!(s, 200, "{v}");
        let started = Instant::now();
        wait_for(&browser, &row(&cid), 10).await;
        eprintln!("the new connection appeared after {:?}", started.elapsed());
        // The events are in the log.
        wait_for(&browser, "#log li", 10).await;
        // Sorting by a column header, from the keyboard.
        let sort = wait_for(&browser, "#conn-head th:nth-child(2) button", 5).await;
        sort.send_keys("\u{E007}").await.unwrap(); // Enter
        let th = wait_for(&browser, "#conn-head th:nth-child(2)", 5).await;
        assert_eq!(th.attr("aria-sort").await.unwrap().as_deref(), Some("ascending"));
        // 10 000 rows: the table stays virtualised (only the rows in view
        // are in the DOM) and scrolling renders the rows scrolled to.
        let big: serde_json::Value = browser
            .execute(
                "const t0 = performance.now();
                 const rows = Array.from({length: 10000}, (_, i) => Object.assign({}, table.rows[0],
                   {peer_id: 'idFAKE' + String(i).padStart(5, '0'), point: '192.0.2.1:' + (1000 + i)}));
                 table.rows = rows; refreshView();
                 const scroll = document.getElementById('conn-scroll');
                 scroll.scrollTop = 5000 * 30; renderRows();
                 const ids = [...document.querySelectorAll('#conn-body tr[data-peer]')].map(r => r.dataset.peer);
                 return {dom_rows: ids.length, has_5000: ids.includes(table.view[5000].peer_id),
                         rowcount: document.getElementById('conn-table').getAttribute('aria-rowcount'),
                         ms: performance.now() - t0};",
                vec![],
            )
            .await
            .unwrap();
        eprintln!("10 000 rows: {big}");
        assert!(big["dom_rows"].as_u64().unwrap() < 100, "{big}");
        assert_eq!(big["has_5000"], true, "{big}");
        assert_eq!(big["rowcount"], "10001", "{big}");
        browser
            .execute("document.getElementById('conn-scroll').scrollTop = 0", vec![])
            .await
            .unwrap();
        // The next snapshot brings the real rows back.
        wait_for(&browser, &row(&bid), 5).await;
        // Let the chart gather a few samples, for the screenshot.
        tokio::time::sleep(Duration::from_secs(5)).await;
        screenshot(&browser, "dashboard.png").await;

        // "Ban" on c's row: a's connection to c ends, c is banned, and the
        // row goes.
        let ban = wait_for(&browser, &format!("{} button.ban", row(&cid)), 5).await;
        ban.click().await.unwrap();
        wait_gone(&browser, &row(&cid), 10).await;
        assert_eq!(
            a.req("GET", &format!("/network/connections/{cid}"), None).0,
            404
        );
        assert_eq!(a.get(&format!("/network/peers/{cid}/banned")), true);
        let banned = wait_for(&browser, "#banned-peers li span", 5).await;
        assert_eq!(banned.text().await.unwrap(), cid);
        // b is still there. "Trust" on its row makes it a trusted peer.
        let trust = wait_for(&browser, &format!("{} button.trust", row(&bid)), 5).await;
        trust.click().await.unwrap();
        wait_for(&browser, "#trusted-peers li span", 5).await;
        assert_eq!(a.get(&format!("/network/peers/{bid}"))["trusted"], true);
        // "Unban" in the banned peers' list lifts c's ban.
        let unban = wait_for(&browser, &format!("#banned-peers button[aria-label=\"Unban {cid}\"]"), 5).await;
        unban.click().await.unwrap();
        wait_gone(&browser, "#banned-peers li span", 10).await;
        assert_eq!(a.get(&format!("/network/peers/{cid}/banned")), false);
        browser.close().await.unwrap();

        // The dark scheme.
        let dark = driver.client(true).await;
        dark.goto(&format!("http://{}/", a.rpc)).await.unwrap();
        wait_for(&dark, &row(&bid), 15).await;
        let bg: serde_json::Value = dark
            .execute("return getComputedStyle(document.body).backgroundColor", vec![])
            .await
            .unwrap();
        assert_eq!(bg, "rgb(13, 17, 23)", "not the dark scheme");
        let worst = min_contrast(&dark).await;
        assert!(worst.0 >= 4.5, "dark scheme: contrast {worst:?} under WCAG AA's 4.5");
        tokio::time::sleep(Duration::from_secs(3)).await;
        screenshot(&dark, "dashboard-dark.png").await;
        dark.close().await.unwrap();
    });
}

#[test]
#[ignore = "needs chromium and chromium-driver (Debian packages); .ci/run installs them and runs it with --ignored"]
fn the_swarm_page_lists_every_node_and_links_to_each() {
    let port = free_port();
    let mut swarm = Command::new(BIN)
        .args(["swarm", "--nodes", "3", "--duration", "60", "--dashboard"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let page: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http(page, "GET", "/swarm", None), Ok((200, _))) {
        assert!(Instant::now() < deadline, "the swarm page never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let driver = Driver::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let browser = driver.client(false).await;
        browser.goto(&format!("http://{page}/")).await.unwrap();
        wait_for(&browser, "#swarm-body tr:nth-child(3)", 15).await;
        let rows = browser
            .find_all(fantoccini::Locator::Css("#swarm-body tr"))
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
        screenshot(&browser, "swarm.png").await;
        // Node 1's link opens node 1's own page, which lists a connection.
        let link = wait_for(&browser, "a[aria-label=\"Dashboard of node 1\"]", 5).await;
        link.click().await.unwrap();
        wait_for(&browser, "#conn-body tr[data-peer]", 20).await;
        browser.close().await.unwrap();
    });
    let _ = swarm.kill();
    let _ = swarm.wait();
}
