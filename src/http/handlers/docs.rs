//! `GET /docs`: the interactive API reference, Swagger UI (npm's
//! `swagger-ui-dist`, vendored in `assets/swagger-ui` by
//! `scripts/vendor-swagger-ui`) rendered from `/openapi.json`. Every asset
//! is embedded in the binary and served from here, under a path naming its
//! content digest, so it can be cached for good and no CDN is involved.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{header, HeaderValue};
use sha2::{Digest, Sha256};

use crate::http::pipeline::Call;
use crate::http::problem::{ApiError, Response};

/// The page's policy: scripts, styles, fetches and images from this origin
/// only. Swagger UI sets styles through the CSSOM (which `style-src` does
/// not govern) and never injects `<style>` or evaluates strings, so it
/// needs no `'unsafe-inline'` or `'unsafe-eval'`; its stylesheet draws its
/// icons as `data:` SVG images, hence `img-src data:`.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The swagger-ui-dist version the vendored files come from.
const SWAGGER_UI_VERSION: &str = include_str!("../../../assets/swagger-ui/VERSION");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const PNG: &str = "image/png";
const TEXT: &str = "text/plain; charset=utf-8";

macro_rules! vendored {
    ($name:literal, $type:expr) => {
        (
            $name,
            $type,
            include_bytes!(concat!("../../../assets/swagger-ui/", $name)).as_slice(),
        )
    };
}

macro_rules! own {
    ($name:literal, $type:expr) => {
        (
            $name,
            $type,
            include_bytes!(concat!("../../../assets/docs/", $name)).as_slice(),
        )
    };
}

/// Every file the page links to: name, content type, bytes. The licence
/// texts are served too, since the binary redistributes Swagger UI.
static ASSETS: [(&str, &str, &[u8]); 9] = [
    vendored!("swagger-ui-bundle.js", JS),
    vendored!("swagger-ui.css", CSS),
    vendored!("favicon-32x32.png", PNG),
    vendored!("favicon-16x16.png", PNG),
    vendored!("LICENSE", TEXT),
    vendored!("NOTICE", TEXT),
    vendored!("swagger-ui-bundle.js.LICENSE.txt", TEXT),
    own!("docs.js", JS),
    own!("docs.css", CSS),
];

const PAGE_TEMPLATE: &str = include_str!("../../../assets/docs/index.html");

/// Hex digits of an asset's SHA-256 in its path: enough that a changed file
/// gets a new URL, short enough to read.
const DIGEST_CHARS: usize = 16;

/// Each asset's digest, in `ASSETS` order; hashed once (about 2 MB).
fn digests() -> &'static [String] {
    static DIGESTS: OnceLock<Vec<String>> = OnceLock::new();
    DIGESTS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(_, _, bytes)| {
                let hex: String = Sha256::digest(bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                hex[..DIGEST_CHARS].to_string()
            })
            .collect()
    })
}

/// The page with every `{{name}}` replaced by that asset's digest path,
/// relative so that the page also works under a proxy's path prefix.
fn page_html() -> &'static Bytes {
    static PAGE: OnceLock<Bytes> = OnceLock::new();
    PAGE.get_or_init(|| {
        let mut html = PAGE_TEMPLATE.replace("{{version}}", SWAGGER_UI_VERSION.trim());
        for ((name, _, _), digest) in ASSETS.iter().zip(digests()) {
            html = html.replace(
                &format!("{{{{{name}}}}}"),
                &format!("docs/assets/{digest}/{name}"),
            );
        }
        assert!(!html.contains("{{"), "a placeholder names no asset");
        Bytes::from(html)
    })
}

fn response(content_type: &'static str, body: Bytes) -> Response {
    let mut response = Response::new(body.into());
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub async fn page(_call: Call) -> Result<Response, ApiError> {
    let mut response = response("text/html; charset=utf-8", page_html().clone());
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    // Revalidated each time, so a new binary's asset paths are picked up.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `GET /docs/assets/{digest}/{name}`: 404 for an unknown name or a digest
/// that is not the embedded file's (an old binary's URL).
pub async fn asset(call: Call) -> Result<Response, ApiError> {
    let (digest, name) = (call.param(0), call.param(1));
    let found = ASSETS
        .iter()
        .zip(digests())
        .find(|((n, _, _), d)| *n == name && d.as_str() == digest);
    let Some(((_, content_type, bytes), _)) = found else {
        return Err(ApiError::NotFound404("no such documentation asset".into()));
    };
    let mut response = response(content_type, Bytes::from_static(bytes));
    // The path names the content: it can never change under this URL.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_every_asset_by_digest() {
        let html = std::str::from_utf8(page_html()).unwrap();
        for ((name, _, _), digest) in ASSETS.iter().zip(digests()) {
            if name.ends_with(".js") || name.ends_with(".css") || name.ends_with(".png") {
                assert!(
                    html.contains(&format!("\"docs/assets/{digest}/{name}\"")),
                    "{name}"
                );
            }
        }
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains("style="), "no inline style");
    }
}
