//! The swagger plugin: /docs and its files, off by default; types, gzip, ETag, caching; the
//! page asks for nothing outside this server.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::*;

fn with_swagger() -> TestServer {
    TestServer::with(|c| {
        c.plugins.insert("swagger".into(), toml::Table::new());
    })
}

fn get(srv: &TestServer, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(srv.addr, "GET", path, None, headers, b"")
}

fn gunzip(bytes: &[u8]) -> String {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "not valid gzip");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn docs_are_off_unless_the_plugin_is_enabled() {
    let srv = TestServer::start();
    for path in ["/docs", "/docs/swagger-ui-bundle.js", "/docs/index.html"] {
        let msg = get(&srv, path, &[]).error(404, "NOT_FOUND");
        assert!(msg.contains("--enable-plugin swagger"), "{msg}");
    }
}

#[test]
fn the_page_loads_only_files_of_this_server() {
    let srv = with_swagger();
    let r = get(&srv, "/docs", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        r.header("Content-Encoding"),
        None,
        "our own page is stored plain"
    );
    let csp = r.header("Content-Security-Policy").expect("CSP");
    assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"));
    let page = r.text();
    for file in [
        "docs/swagger-ui-bundle.js",
        "docs/swagger-ui.css",
        "docs/swagger-initializer.js",
    ] {
        assert!(page.contains(&format!("\"{file}\"")), "{file}");
    }
    let init = get(&srv, "/docs/swagger-initializer.js", &[]);
    assert_eq!(init.status, 200);
    let init = init.text();
    assert!(init.contains("url: \"openapi.yaml\"") && init.contains("validatorUrl: null"));
    for text in [&page, &init] {
        assert!(!text.contains("http:") && !text.contains("https:") && !text.contains("//cdn"));
    }
    let r = request(srv.addr, "HEAD", "/docs", None, &[], b"");
    assert_eq!((r.status, r.body.len()), (200, 0));
}

#[test]
fn big_files_are_gzip_with_etag_and_caching() {
    let srv = with_swagger();
    for (file, ctype, marker) in [
        (
            "swagger-ui-bundle.js",
            "text/javascript; charset=utf-8",
            "SwaggerUIBundle",
        ),
        ("swagger-ui.css", "text/css; charset=utf-8", ".swagger-ui"),
    ] {
        let path = format!("/docs/{file}");
        let r = get(&srv, &path, &[("Accept-Encoding", "gzip, deflate")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some(ctype));
        assert_eq!(r.header("Content-Encoding"), Some("gzip"));
        assert_eq!(r.header("Cache-Control"), Some("no-cache"));
        assert_eq!(
            r.header("Content-Length"),
            Some(r.body.len().to_string().as_str())
        );
        assert_eq!(&r.body[..2], &[0x1f, 0x8b]);
        assert!(gunzip(&r.body).contains(marker), "{file}");
        let etag = r.header("ETag").expect("ETag").to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34);

        let again = get(&srv, &path, &[("If-None-Match", &etag)]);
        assert_eq!((again.status, again.body.len()), (304, 0));
        assert_eq!(again.header("ETag"), Some(etag.as_str()));
        let weak = format!("W/{etag}, \"other\"");
        assert_eq!(get(&srv, &path, &[("If-None-Match", &weak)]).status, 304);
        assert_eq!(
            get(&srv, &path, &[("If-None-Match", "\"other\"")]).status,
            200
        );

        // No decompressor in the binary: without gzip in Accept-Encoding it is still gzip.
        let plain = get(&srv, &path, &[]);
        assert_eq!(plain.header("Content-Encoding"), Some("gzip"));
        assert_eq!(plain.body, r.body);
    }
    let icon = get(&srv, "/docs/favicon-32x32.png", &[]);
    assert_eq!(icon.header("Content-Type"), Some("image/png"));
    assert_eq!(&icon.body[1..4], b"PNG");
}

#[test]
fn unknown_and_unsafe_names_are_404() {
    let srv = with_swagger();
    for path in [
        "/docs/nope.js",
        "/docs/index.html",
        "/docs/LICENSE",
        "/docs/README.md",
        "/docs/swagger-ui.css.gz",
        "/docs/..",
        "/docs/.%2E",
        "/docs/%2E%2E%2Fsrc%2Fmain.rs",
        "/docs/",
        "/docs/a/b",
    ] {
        get(&srv, path, &[]).error(404, "NOT_FOUND");
    }
}
