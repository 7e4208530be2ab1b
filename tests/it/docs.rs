//! `GET /docs`: the Swagger UI page and its embedded assets (content types,
//! caching, the page's own CSP while the API keeps `default-src 'none'`),
//! the token endpoint taking what Swagger UI's "Authorize" sends, and the
//! whole page driven in a real headless Chromium (`tests/browser/docs.mjs`).

use std::path::Path;
use std::process::Command;

use crate::harness::{send, send_body, stderr, stdout, Daemon, Resp, Setup};
use crate::identity::auth_config;
use crate::keys::add_user;

const PASSWORD: &str = "SecurePass123!";
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

fn page(d: &Daemon) -> Resp {
    // What a browser's navigation sends: no JSON in it.
    send(
        d.request("GET", "/docs")
            .set("Accept", "text/html,application/xhtml+xml"),
    )
}

/// The page's link to `name`, as the browser resolves it from `/docs`.
fn asset_path(html: &str, name: &str) -> String {
    let end = html
        .find(&format!("/{name}\""))
        .unwrap_or_else(|| panic!("the page links no {name}: {html}"));
    let start = html[..end].rfind('"').unwrap() + 1;
    let link = &html[start..end + name.len() + 1];
    assert!(link.starts_with("docs/assets/"), "{link}");
    format!("/{link}")
}

#[test]
fn the_page_is_html_under_its_own_csp_and_the_api_keeps_none() {
    let daemon = Setup::new("").start();
    let r = page(&daemon);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        r.header("content-security-policy"),
        Some(mlapi::http::handlers::docs::CSP)
    );
    let csp = r.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(r.header_all("content-security-policy").len(), 1);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.body.contains("<div id=\"swagger-ui\">"), "{}", r.body);
    assert!(!r.body.contains("<script>"), "no inline script");

    // The rest of the API, errors included, loads nothing.
    for path in ["/health", "/openapi.json", "/docs/nothing", "/nowhere"] {
        let r = daemon.get(path);
        assert_eq!(
            r.header_all("content-security-policy"),
            [API_CSP],
            "{path} ({})",
            r.status
        );
    }
    // The page is not API: the document leaves it out.
    let doc = daemon.get("/openapi.json").json();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.keys().all(|p| !p.starts_with("/docs")), "{paths:?}");
    // Browsers' Accept on an API route still gets 406.
    let r = send(daemon.request("GET", "/health").set("Accept", "text/html"));
    r.problem(406);
}

#[test]
fn assets_are_embedded_typed_and_cached_for_good() {
    let daemon = Setup::new("").start();
    let html = page(&daemon).body;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, dir, content_type) in [
        (
            "swagger-ui-bundle.js",
            "swagger-ui",
            "text/javascript; charset=utf-8",
        ),
        ("swagger-ui.css", "swagger-ui", "text/css; charset=utf-8"),
        ("favicon-32x32.png", "swagger-ui", "image/png"),
        ("LICENSE", "swagger-ui", "text/plain; charset=utf-8"),
        ("docs.js", "docs", "text/javascript; charset=utf-8"),
        ("docs.css", "docs", "text/css; charset=utf-8"),
    ] {
        let path = asset_path(&html, name);
        let r = daemon.request("GET", &path).call().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.header("content-type"), Some(content_type), "{path}");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{path}"
        );
        let mut served = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut served).unwrap();
        let file = std::fs::read(root.join("assets").join(dir).join(name)).unwrap();
        assert!(served == file, "{path} is not the vendored file");
    }
    // HEAD is served by the GET route.
    let bundle = asset_path(&html, "swagger-ui-bundle.js");
    assert_eq!(send(daemon.request("HEAD", &bundle)).status, 200);

    // Unknown names, stale digests and wrong shapes are 404 problems.
    let digest = bundle.split('/').nth(3).unwrap();
    for path in [
        format!("/docs/assets/{digest}/nothing.js"),
        format!("/docs/assets/{digest}/swagger-ui.css"),
        "/docs/assets/0000000000000000/swagger-ui-bundle.js".to_string(),
        format!("/docs/assets/{digest}/swagger-ui-bundle.js.map"),
        "/docs/assets/swagger-ui-bundle.js".to_string(),
        "/docs/swagger-ui-bundle.js".to_string(),
    ] {
        let r = send(daemon.request("GET", &path).set("Accept", "*/*"));
        let body = r.problem(404);
        assert_eq!(r.header("content-security-policy"), Some(API_CSP), "{path}");
        assert!(
            !body["detail"].as_str().unwrap().contains("nothing"),
            "{body}"
        );
    }
    let r = send(daemon.request("POST", &bundle));
    r.problem(405);
}

fn token(d: &Daemon, basic: Option<&str>, body: &str) -> Resp {
    let mut request = d
        .request("POST", "/api/v1/auth/token")
        .set("Content-Type", "application/x-www-form-urlencoded");
    if let Some(credentials) = basic {
        request = request.set("Authorization", &format!("Basic {credentials}"));
    }
    send_body(request, body)
}

/// Swagger UI's "Authorize" for the password flow posts the form with
/// `scope=` (empty: every scope of the role) and, by default, `Authorization:
/// Basic` of an empty client id and secret. mlapi has no registered
/// clients: a client may name itself, but a secret it cannot check is
/// refused.
#[test]
fn the_token_endpoint_takes_what_swagger_ui_sends_and_no_client_secret() {
    let setup = Setup::new(&auth_config(""));
    add_user(&setup, "swagger", "user");
    let daemon = setup.start();
    let form = format!("grant_type=password&scope=&username=swagger&password={PASSWORD}");
    // base64(":") and base64("swagger-ui:"): public clients, no secret.
    for basic in [Some("Og=="), Some("c3dhZ2dlci11aTo="), None] {
        let r = token(&daemon, basic, &form);
        assert_eq!(r.status, 200, "{basic:?}: {}", r.body);
        assert_eq!(r.json()["token_type"], "bearer");
    }
    let r = token(&daemon, None, &format!("{form}&client_id=swagger-ui"));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = token(
        &daemon,
        None,
        &format!("{form}&client_id=swagger-ui&client_secret="),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // base64("swagger-ui:secret") and base64("no-colon"), then garbage.
    for basic in ["c3dhZ2dlci11aTpzZWNyZXQ=", "bm8tY29sb24=", "%%%"] {
        let r = token(&daemon, Some(basic), &form);
        assert_eq!(r.status, 401, "{basic}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_client");
        assert_eq!(r.header("www-authenticate"), Some(r#"Basic realm="mlapi""#));
    }
    let r = token(
        &daemon,
        None,
        &format!("{form}&client_id=x&client_secret=s"),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_client");
    // One client authentication method per request (RFC 6749 §2.3).
    let r = token(&daemon, Some("Og=="), &format!("{form}&client_id=x"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_request");
    // A wrong password is still the grant's refusal, whatever the client.
    let wrong = "grant_type=password&username=swagger&password=Wrong-pass-123";
    let r = token(&daemon, Some("Og=="), wrong);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");
}

/// Where the browser test finds what `scripts/test` installs; a missing
/// piece fails the test (never skips it) and says how to get it.
fn browser_tools(root: &Path) -> String {
    let fix = "run scripts/test, which installs chromium (apt-get) and the npm packages \
               (npm ci in tests/browser)";
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the browser test needs Node.js 20+ (`node` on PATH); {fix}"
    );
    let playwright = root.join("tests/browser/node_modules/playwright-core/package.json");
    assert!(
        playwright.exists(),
        "the browser test needs playwright-core in tests/browser/node_modules; {fix}"
    );
    let chromium = std::env::var("MLAPI_TEST_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "the browser test needs Chromium at {chromium} (or MLAPI_TEST_CHROMIUM); {fix}"
    );
    chromium
}

#[test]
fn swagger_ui_works_in_a_real_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = browser_tools(root);
    let setup = Setup::new(&auth_config(""));
    add_user(&setup, "docs_reader", "user");
    let out = setup.cli(&[
        "key",
        "create",
        "--user",
        "docs_reader",
        "--name",
        "docs page",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    let daemon = setup.start();
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let out = Command::new("node")
        .arg(root.join("tests/browser/docs.mjs"))
        .args(["--url", &daemon.url("")])
        .args(["--username", "docs_reader", "--password", PASSWORD])
        .args(["--api-key", &key])
        .arg("--screenshot")
        .arg(&screenshot)
        .args(["--chromium", &chromium])
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "tests/browser/docs.mjs failed ({}):\n{}\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    assert!(screenshot.exists(), "no screenshot:\n{}", stdout(&out));
    println!("{}\nscreenshot: {}", stdout(&out), screenshot.display());
}
