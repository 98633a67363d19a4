//! `GET /docs` and `GET /docs/{file}`: Swagger UI on `/openapi.yaml`, the `swagger` plugin.
//! Off unless enabled (then both answer 404 `NOT_FOUND`). The files are embedded from
//! `assets/swagger/` (swagger-ui-dist, stored gzip-compressed, see `make update-swagger`) and
//! served by `assets.rs`. The page lives at `/docs` only and links its files relatively
//! (`docs/...`, `openapi.yaml`), so it also works under a reverse proxy's path prefix. The
//! page asks for nothing outside this server (no CDN, the spec validator off), and its
//! `Content-Security-Policy` forbids it.

use rust_embed::RustEmbed;

use crate::app::App;
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::reply::Reply;

#[derive(RustEmbed)]
#[folder = "assets/swagger/"]
#[exclude = "LICENSE"]
#[exclude = "*.md"]
struct SwaggerUi;

/// Only same-origin scripts, styles, images (and data: images, which Swagger UI's CSS uses)
/// and requests.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// `file` is `None` for `/docs` itself.
pub fn get(app: &App, ex: &Exchange, file: Option<&str>) -> Reply {
    if !app.config.plugin_enabled("swagger") {
        return ApiError::not_found(
            "Swagger UI is off; enable the swagger plugin ([plugins.swagger] enabled = true, or --enable-plugin swagger)",
        )
        .into();
    }
    let name = match file {
        None => "index.html",
        // The page has one address, /docs: its relative links only work from there.
        Some("index.html") => "",
        Some(f) => f,
    };
    match crate::assets::reply::<SwaggerUi>(name, ex.header("If-None-Match")) {
        Some(reply) if file.is_none() => reply.with_header("Content-Security-Policy", CSP),
        Some(reply) => reply,
        None => ApiError::not_found(format!("no file {name:?} in Swagger UI; open /docs")).into(),
    }
}
