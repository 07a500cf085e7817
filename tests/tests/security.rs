//! Bearer tokens over real HTTP: scopes, revocation, open health probes, token management
//! over REST and the CLI, CORS preflights.

use roomsense_tests::*;
use serde_json::{json, Value};

async fn status_and_body(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_scopes() {
    let c = TestCentral::start(CentralOptions::default()).await.unwrap();
    let anon = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", c.base);

    // Health probes stay open.
    for p in ["/healthz", "/readyz"] {
        assert_eq!(anon.get(url(p)).send().await.unwrap().status(), 200, "{p}");
    }

    // No token → 401 with a challenge and the JSON error; on unknown routes too.
    for p in ["/api/nodes", "/api/no-such-thing", "/debug/log-level"] {
        let r = anon.get(url(p)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{p}");
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let (_, body) = status_and_body(r).await;
        assert_eq!(body["error"]["code"], "missing_token", "{p}: {body}");
    }

    // A wrong token or a wrong scheme → 401.
    let bad = authed_client("rs_0000").unwrap();
    let (code, body) = status_and_body(bad.get(url("/api/nodes")).send().await.unwrap()).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    let r = anon
        .get(url("/api/nodes"))
        .header("authorization", format!("Basic {}", c.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The admin token works.
    let (code, _) = c.get("/api/nodes").await.unwrap();
    assert_eq!(code, 200);

    // A read token reads, but cannot write (403) nor reach admin endpoints.
    let (_, reader) = c.client_with_scope(Scope::Read).await.unwrap();
    assert_eq!(
        reader.get(url("/api/nodes")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        reader
            .head(url("/api/nodes"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = reader
        .put(url("/api/nodes/pi-1"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (code, body) = status_and_body(r).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("read_only_token")),
        "{body}"
    );
    let (code, body) = status_and_body(reader.get(url("/api/tokens")).send().await.unwrap()).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("admin_required"))
    );
    let r = reader
        .put(url("/debug/log-level"))
        .json(&json!({"level": "debug"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Token management over REST (admin).
    let r = c
        .http
        .post(url("/api/tokens"))
        .json(&json!({"name": "wall display", "scope": "read"}))
        .send()
        .await
        .unwrap();
    let (code, created) = status_and_body(r).await;
    assert_eq!(code, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("rs_"));
    assert_eq!(created["token"]["scope"], "read");
    let id = created["token"]["id"].as_i64().unwrap();
    let display = authed_client(&secret).unwrap();
    assert_eq!(
        display
            .get(url("/api/nodes"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let (code, list) = c.get("/api/tokens").await.unwrap();
    assert_eq!(code, 200);
    let items = list["items"].as_array().unwrap();
    let mine = items.iter().find(|t| t["id"] == id).unwrap();
    assert_eq!(mine["name"], "wall display");
    assert!(mine.get("secret").is_none() && !list.to_string().contains(&secret));
    // Its use is recorded (off the request path).
    wait_for("last_used_at recorded", DEADLINE, || async {
        let (_, l) = c.get("/api/tokens").await.ok()?;
        let t = l["items"]
            .as_array()?
            .iter()
            .find(|t| t["id"] == id)?
            .clone();
        t["last_used_at"].is_string().then_some(())
    })
    .await
    .unwrap();

    // Bad input names the field.
    for (body, code) in [
        (json!({"name": "x", "scope": "root"}), "bad_scope"),
        (json!({"name": "", "scope": "read"}), "bad_name"),
        (json!({"name": "x"}), "bad_body"),
    ] {
        let r = c
            .http
            .post(url("/api/tokens"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = status_and_body(r).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }

    // Revoked → 401 at once.
    let r = c
        .http
        .delete(url(&format!("/api/tokens/{id}")))
        .send()
        .await
        .unwrap();
    let (code, revoked) = status_and_body(r).await;
    assert_eq!(
        (code, revoked["revoked"].as_bool()),
        (200, Some(true)),
        "{revoked}"
    );
    let (code, body) = status_and_body(display.get(url("/api/nodes")).send().await.unwrap()).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("revoked_token"))
    );
    let r = c
        .http
        .delete(url("/api/tokens/999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c.http.delete(url("/api/tokens/abc")).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_for_configured_origins_only() {
    let c = TestCentral::start(CentralOptions {
        configure: Some(|c| c.http.cors_origins = vec!["https://ops.example.com".into()]),
        ..CentralOptions::default()
    })
    .await
    .unwrap();
    let anon = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        anon.request(reqwest::Method::OPTIONS, format!("{}/api/nodes", c.base))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let r = preflight("https://ops.example.com").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://ops.example.com"
    );
    assert!(r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let r = preflight("https://evil.example.net").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // The actual request still needs the token, and carries the CORS header.
    let r = c
        .http
        .get(format!("{}/api/nodes", c.base))
        .header("origin", "https://ops.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://ops.example.com"
    );
}

#[test]
fn cli_creates_lists_and_revokes_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let secret = cli_token(&db, "read", "grafana").unwrap();
    let bin = bin_path("roomsense-central").unwrap();
    let list = || {
        let out = std::process::Command::new(&bin)
            .args(["token", "list", "--json", "--database-url", &db])
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let l = list();
    assert_eq!(l[0]["name"], "grafana");
    assert_eq!(l[0]["scope"], "read");
    assert!(l[0]["revoked_at_ms"].is_null());
    assert!(!l.to_string().contains(&secret));
    let id = l[0]["id"].as_i64().unwrap().to_string();
    let out = std::process::Command::new(&bin)
        .args(["token", "revoke", &id, "--database-url", &db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(list()[0]["revoked_at_ms"].is_i64());
    let out = std::process::Command::new(&bin)
        .args(["token", "revoke", "4242", "--database-url", &db])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token with id 4242"));
    let out = std::process::Command::new(&bin)
        .args([
            "token",
            "create",
            "--scope",
            "root",
            "--name",
            "x",
            "--database-url",
            &db,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// A self-signed certificate for `127.0.0.1` and `localhost`, written as PEM files.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let c =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_https_with_rustls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let c = TestCentral::start(CentralOptions {
        tls: Some((cert.clone(), key.clone())),
        ..CentralOptions::default()
    })
    .await
    .unwrap();
    assert!(c.base.starts_with("https://127.0.0.1:"), "{}", c.base);
    let url = |p: &str| format!("{}{p}", c.base);
    let trusting = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();

    // Probes are open over HTTPS too; the API wants its token there as well.
    for p in ["/healthz", "/readyz"] {
        assert_eq!(
            trusting.get(url(p)).send().await.unwrap().status(),
            200,
            "{p}"
        );
    }
    assert_eq!(
        trusting
            .get(url("/api/nodes"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (code, body) = c.get("/api/nodes").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body["items"].is_array());
    let (code, body) = c.get("/api/ingest/stats").await.unwrap();
    assert_eq!(code, 200, "{body}");

    // A client that connects and never starts its handshake holds up nobody (well within
    // the server's 10 s handshake timeout).
    let _idle = tokio::net::TcpStream::connect(c.app.http_addr())
        .await
        .unwrap();
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        trusting.get(url("/healthz")).send(),
    )
    .await
    .expect("a stalled handshake held up another client");
    assert_eq!(r.unwrap().status(), 200);

    // Plain HTTP on the HTTPS port gets no answer; nor does a client that does not trust
    // the certificate.
    let plain = format!("http://{}/healthz", c.app.http_addr());
    assert!(reqwest::Client::new().get(&plain).send().await.is_err());
    let strict = reqwest::Client::builder().use_rustls_tls().build().unwrap();
    assert!(strict.get(url("/healthz")).send().await.is_err());

    // The server still answers after those failed handshakes.
    assert_eq!(
        trusting.get(url("/healthz")).send().await.unwrap().status(),
        200
    );
    c.app
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_tls_files_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed(dir.path());
    let missing = dir.path().join("missing-key.pem");
    let e = TestCentral::start(CentralOptions {
        tls: Some((cert.clone(), missing.clone())),
        ..CentralOptions::default()
    })
    .await
    .err()
    .expect("start must fail");
    let e = format!("{e:#}");
    assert!(e.starts_with("http.tls_key "), "{e}");
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(e.contains("cannot read"), "{e}");

    // The binary says the same on stderr and exits non-zero (no panic).
    let mut cmd = std::process::Command::new(bin_path("roomsense-central").unwrap());
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "127.0.0.1:0",
    ])
    .arg("--database-url")
    .arg(format!("sqlite://{}", dir.path().join("c.db").display()))
    .env("ROOMSENSE__HTTP__TLS_CERT", &cert)
    .env("ROOMSENSE__HTTP__TLS_KEY", &cert)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let exited = wait_for("central to exit", DEADLINE, || {
        let st = child.try_wait().ok().flatten();
        async move { st }
    })
    .await;
    let status = exited.unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("{e}")
    });
    assert!(!status.success(), "{status}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("http.tls_key ") && stderr.contains("no private key"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_and_reference_page_are_open_and_match_the_routes() {
    let c = TestCentral::start(CentralOptions::default()).await.unwrap();
    let anon = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", c.base);

    let r = anon.get(url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // The reference page: open, HTML, its assets served from the binary (no CDN).
    let r = anon.get(url("/api/docs")).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/api/docs/");
    let r = anon.get(url("/api/docs/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = r.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("://"),
        "the page must not load anything from elsewhere: {html}"
    );
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        let r = anon
            .get(url(&format!("/api/docs/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        if asset == "swagger-initializer.js" {
            assert!(r.text().await.unwrap().contains("/api/openapi.json"));
        }
    }

    // Every documented operation is served: none falls through to `no_route` or 405.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{level}", "0")
            .replace("{id}", "x")
            .replace("{node}", "x");
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = c.http.request(m, url(&concrete));
            if method != "get" && method != "delete" {
                // Rejected before any handler changes something.
                req = req
                    .header("content-type", "application/json")
                    .body("not json");
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            assert_ne!(status, 405, "{method} {path}");
            if path == "/api/events/live" {
                assert_eq!(status, 200);
                continue; // an endless stream
            }
            let body = r.text().await.unwrap_or_default();
            assert!(
                !body.contains("\"no_route\""),
                "{method} {path}: {status} {body}"
            );
        }
    }
}
