//! The page's files, embedded in the binary (no CDN: the dashboard works offline).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::RustEmbed)]
#[folder = "web/"]
struct Web;

/// The vendored chart library's version, shown on the page with its licence.
pub const LIGHTWEIGHT_CHARTS: &str = "5.2.1";

/// One embedded file by its path under `web/`, with its content type.
pub fn get(path: &str) -> Response {
    let Some(file) = Web::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let kind = match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        file.data.into_owned(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    #[test]
    fn the_vendored_chart_library_is_npms_file_unchanged() {
        let file = super::Web::get(
            "vendor/lightweight-charts/lightweight-charts.standalone.production.js",
        )
        .expect("embedded");
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&file.data)),
            "e21cc5caa0226ef30bd8549c50b9ef926615f2a4ee6b4e486353477a55f598cf"
        );
        let license = super::Web::get("vendor/lightweight-charts/LICENSE").expect("embedded");
        assert!(String::from_utf8_lossy(&license.data).contains("Apache License"));
        let readme = super::Web::get("vendor/lightweight-charts/README.md").expect("embedded");
        assert!(String::from_utf8_lossy(&readme.data).contains(super::LIGHTWEIGHT_CHARTS));
    }
}
