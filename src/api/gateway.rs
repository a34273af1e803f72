//! The gateway: `GET /c/{ID}[/path]` serves an item to a browser.
//!
//! A file comes with the headers a browser and a download manager expect: `Content-Type`
//! (from the name, else from the first bytes), `Content-Length`, `ETag` (the ID, so
//! `If-None-Match` answers 304 without reading anything: the bytes behind an ID never
//! change), `Range` (206), `Content-Disposition` (`?download` makes it an attachment), and
//! `HEAD`. A folder is an index page with links, and a file inside it is reachable by its
//! path. The gateway only reads: it runs on the API's listener (behind the token) and, with
//! `--gateway ADDR`, alone on a listener of its own without a token.
//!
//! Content that could run script in the page's origin (HTML, SVG, XML) is served with
//! `Content-Security-Policy: sandbox`: an item anyone added must not be able to read the web
//! page's session or call the API as the person viewing it.

use std::ops::Range;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use super::error::ApiError;
use super::reading::{self, Opened};
use super::state::Api;
use crate::content::ContentId;

/// `/c/{id}` and `/c/{id}/{*path}`, GET and HEAD.
pub(super) fn router() -> Router<Api> {
    Router::new()
        .route("/c/{id}", get(root))
        .route("/c/{id}/", get(root))
        .route("/c/{id}/{*path}", get(inner))
}

#[derive(Deserialize)]
pub(super) struct GatewayQuery {
    /// Present: serve as an attachment (the browser saves it instead of showing it).
    download: Option<String>,
}

async fn root(
    State(api): State<Api>,
    method: Method,
    Path(id): Path<String>,
    Query(q): Query<GatewayQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let trailing = uri.path().ends_with('/');
    serve(&api, method, &id, "", trailing, q, &headers)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn inner(
    State(api): State<Api>,
    method: Method,
    Path((id, path)): Path<(String, String)>,
    Query(q): Query<GatewayQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let trailing = uri.path().ends_with('/');
    serve(&api, method, &id, &path, trailing, q, &headers)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn serve(
    api: &Api,
    method: Method,
    id: &str,
    path: &str,
    trailing_slash: bool,
    q: GatewayQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let root: ContentId = id
        .trim()
        .parse()
        .map_err(|e| ApiError::bad_id(format!("{id:?} is not a content ID: {e}")))?;
    if path.split('/').any(|p| p == ".." || p == ".") {
        return Err(ApiError::bad_request(
            "a path inside an item has no . or .. parts",
        ));
    }
    // The bytes behind an ID and a path never change: the ETag is known before any read.
    let etag = format!(
        "\"{}\"",
        if path.is_empty() {
            root.to_string()
        } else {
            format!("{root}/{path}")
        }
    );
    if matches_etag(headers.get(header::IF_NONE_MATCH), &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let opened = reading::open(api, &root).await?;
    let opened = reading::open_path(api, opened, path).await?;
    if opened.head.kind == "dir" {
        if !trailing_slash {
            // Relative links in the index resolve against the folder only with the slash.
            let to = format!(
                "/c/{root}/{}{}",
                encode_path(path),
                if path.is_empty() { "" } else { "/" }
            );
            let to = if path.is_empty() {
                format!("/c/{root}/")
            } else {
                to
            };
            return Ok((StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, to)]).into_response());
        }
        return folder_page(api, opened, &root, path, &etag, method).await;
    }
    if opened.head.kind == "link" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("{path:?} is a symbolic link; the gateway does not follow links"),
        ));
    }
    file(api, opened, &etag, method, q, headers).await
}

fn matches_etag(h: Option<&HeaderValue>, etag: &str) -> bool {
    h.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*")
    })
}

/// Characters left as they are in a link to an entry: RFC 3986's unreserved set.
const PATH_PART: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode_path(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty())
        .map(|p| utf8_percent_encode(p, PATH_PART).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

async fn file(
    api: &Api,
    opened: Opened,
    etag: &str,
    method: Method,
    q: GatewayQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let size = opened.head.size;
    let content_type = content_type(api, &opened).await?;
    let disposition = disposition(&opened.head.name, q.download.is_some());
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| matches_etag(Some(v), etag));
    let asked = match headers.get(header::RANGE) {
        Some(r) if if_range_ok => parse_range(r.to_str().unwrap_or(""), size),
        _ => RangeAsked::Whole,
    };
    let mut h = HeaderMap::new();
    let put = |h: &mut HeaderMap, k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    put(&mut h, header::CONTENT_TYPE, &content_type);
    put(&mut h, header::ETAG, etag);
    put(&mut h, header::CONTENT_DISPOSITION, &disposition);
    put(&mut h, header::ACCEPT_RANGES, "bytes");
    put(
        &mut h,
        header::CACHE_CONTROL,
        "public, max-age=31536000, immutable",
    );
    put(&mut h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if can_run_script(&content_type) {
        put(&mut h, header::CONTENT_SECURITY_POLICY, "sandbox");
    }
    let (status, range) = match asked {
        RangeAsked::Whole => (StatusCode::OK, None),
        RangeAsked::Part(r) => {
            put(
                &mut h,
                header::CONTENT_RANGE,
                &format!("bytes {}-{}/{size}", r.start, r.end - 1),
            );
            (StatusCode::PARTIAL_CONTENT, Some(r))
        }
        RangeAsked::Unsatisfiable => return Ok(unsatisfiable(size)),
    };
    let len = range.as_ref().map_or(size, |r| r.end - r.start);
    put(&mut h, header::CONTENT_LENGTH, &len.to_string());
    if method == Method::HEAD {
        return Ok((status, h).into_response());
    }
    Ok((status, h, reading::body(api, opened, range)).into_response())
}

fn can_run_script(content_type: &str) -> bool {
    let t = content_type.split(';').next().unwrap_or("").trim();
    t == "text/html" || t.contains("xml") || t == "image/svg+xml"
}

/// From the name's extension; for a name that says nothing, from the first bytes: text if
/// they are UTF-8, else bytes.
async fn content_type(api: &Api, opened: &Opened) -> Result<String, ApiError> {
    if let Some(m) = mime_guess::from_path(&opened.head.name).first() {
        let t = m.essence_str().to_owned();
        return Ok(if m.type_() == mime_guess::mime::TEXT {
            format!("{t}; charset=utf-8")
        } else {
            t
        });
    }
    let (store, id, n) = (
        std::sync::Arc::clone(&api.store),
        opened.id,
        opened.head.size.min(512),
    );
    let first = tokio::task::spawn_blocking(move || {
        let mut v = Vec::new();
        crate::files::browse::cat_range(&store, &id, 0..n, &mut v).map(|_| v)
    })
    .await??;
    Ok(sniff(&first).to_owned())
}

fn sniff(first: &[u8]) -> &'static str {
    let text = match std::str::from_utf8(first) {
        Ok(_) => true,
        // Cut in the middle of a character at the 512th byte.
        Err(e) => e.error_len().is_none(),
    };
    if text && !first.contains(&0) {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// `inline` or `attachment`, with the name as ASCII and, when it is not, as RFC 5987 UTF-8.
fn disposition(name: &str, attachment: bool) -> String {
    let kind = if attachment { "attachment" } else { "inline" };
    if name.is_empty() {
        return kind.to_owned();
    }
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut v = format!("{kind}; filename=\"{ascii}\"");
    if !name.is_ascii() || ascii != name {
        v.push_str(&format!(
            "; filename*=UTF-8''{}",
            utf8_percent_encode(name, PATH_PART)
        ));
    }
    v
}

/// What a `Range` header asks for, against a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeAsked {
    /// No usable range (absent, not bytes, several ranges): the whole file, 200.
    Whole,
    Part(Range<u64>),
    /// Starts beyond the end: 416.
    Unsatisfiable,
}

/// Parses one `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`. Several ranges are
/// answered with the whole file, as RFC 9110 allows.
pub(super) fn parse_range(h: &str, size: u64) -> RangeAsked {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeAsked::Whole;
    };
    if spec.contains(',') {
        return RangeAsked::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsked::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        match b.parse::<u64>() {
            Ok(0) => return RangeAsked::Unsatisfiable,
            Ok(n) => size.saturating_sub(n)..size,
            Err(_) => return RangeAsked::Whole,
        }
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return RangeAsked::Whole;
        };
        let end = if b.is_empty() {
            size
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= start => e.saturating_add(1).min(size),
                _ => return RangeAsked::Whole,
            }
        };
        if start >= size {
            return RangeAsked::Unsatisfiable;
        }
        start..end
    };
    if r.start >= r.end {
        return RangeAsked::Unsatisfiable;
    }
    RangeAsked::Part(r)
}

/// 206 with the range of the opened file.
pub(super) fn partial(api: &Api, opened: Opened, r: Range<u64>) -> Response {
    let size = opened.head.size;
    (
        StatusCode::PARTIAL_CONTENT,
        [
            (
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            ),
            (header::CONTENT_LENGTH, (r.end - r.start).to_string()),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
        ],
        reading::body(api, opened, Some(r)),
    )
        .into_response()
}

/// 416, naming the size as RFC 9110 asks.
pub(super) fn unsatisfiable(size: u64) -> Response {
    let e = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "unsatisfiable_range",
        format!("the range asked for lies beyond the file's {size} bytes"),
    );
    let mut r = e.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        r.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    r
}

/// The index page of a folder: its entries with links, sizes, and a link up.
async fn folder_page(
    api: &Api,
    opened: Opened,
    root: &ContentId,
    path: &str,
    etag: &str,
    method: Method,
) -> Result<Response, ApiError> {
    let (store, id) = (std::sync::Arc::clone(&api.store), opened.id);
    let entries =
        tokio::task::spawn_blocking(move || crate::files::browse::entries(&store, &id)).await??;
    let title = if path.is_empty() {
        opened.head.name.clone()
    } else {
        format!("{}/{}", opened.head.name, path.trim_matches('/'))
    };
    let mut rows = String::new();
    if !path.trim_matches('/').is_empty() {
        rows.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in &entries {
        if let Some(target) = &e.target {
            rows.push_str(&format!(
                "<tr><td>{} → {}</td><td class=n>link</td><td></td></tr>\n",
                escape_html(&e.name),
                escape_html(target),
            ));
            continue;
        }
        let slash = if e.kind == "dir" { "/" } else { "" };
        let href = format!("{}{slash}", utf8_percent_encode(&e.name, PATH_PART));
        rows.push_str(&format!(
            "<tr><td><a href=\"{href}\">{}{slash}</a></td><td class=n>{}</td><td><a class=dl href=\"{href}{}\">{}</a></td></tr>\n",
            escape_html(&e.name),
            bytesize::ByteSize(e.size).display().si(),
            if e.kind == "dir" { "" } else { "?download" },
            if e.kind == "dir" { "" } else { "download" },
        ));
    }
    let page = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{css}</style></head><body>\
         <h1>{t}</h1><p class=id>{root}</p><table>{rows}</table>\
         <p class=foot>{n} entries, {size} · served by storgo</p></body></html>",
        t = escape_html(&title),
        css = FOLDER_CSS,
        n = entries.len(),
        size = bytesize::ByteSize(opened.head.size).display().si(),
    );
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
        (header::ETAG, etag.to_owned()),
        (
            header::CACHE_CONTROL,
            "public, max-age=31536000, immutable".to_owned(),
        ),
        (header::CONTENT_LENGTH, page.len().to_string()),
    ];
    if method == Method::HEAD {
        return Ok((headers, Body::empty()).into_response());
    }
    Ok((headers, page).into_response())
}

const FOLDER_CSS: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1d2430}\
h1{font-size:1.4rem;margin-bottom:.2rem}.id{color:#667;font:12px ui-monospace,monospace;word-break:break-all}\
table{width:100%;border-collapse:collapse}td{padding:.35rem .5rem;border-bottom:1px solid #e4e7ec}\
td.n{text-align:right;color:#556;white-space:nowrap}a{color:#1f5fbf;text-decoration:none}a:hover{text-decoration:underline}\
a.dl{font-size:.85rem;color:#667}.foot{color:#889;font-size:.85rem}";

pub(super) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_rfc_9110_says() {
        use RangeAsked::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Part(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Part(90..100));
        assert_eq!(parse_range("bytes=-500", 100), Part(0..100));
        assert_eq!(parse_range("bytes=50-500", 100), Part(50..100));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse_range("items=0-1", 100), Whole);
        assert_eq!(parse_range("bytes=9-1", 100), Whole);
        assert_eq!(parse_range("bytes=x-1", 100), Whole);
    }

    #[test]
    fn names_are_safe_in_headers_and_pages() {
        assert_eq!(disposition("a.pdf", false), "inline; filename=\"a.pdf\"");
        let d = disposition("ñotes \"x\".pdf", true);
        assert!(
            d.starts_with("attachment; filename=\"_otes _x_.pdf\"; filename*=UTF-8''"),
            "{d}"
        );
        assert_eq!(
            escape_html("<a href='x'>&"),
            "&lt;a href=&#39;x&#39;&gt;&amp;"
        );
        assert_eq!(encode_path("week 3/notes#1.pdf"), "week%203/notes%231.pdf");
        assert_eq!(sniff(b"hello\n"), "text/plain; charset=utf-8");
        assert_eq!(sniff(&[0xff, 0, 1]), "application/octet-stream");
    }
}
