//! The SDK endpoints: `POST /v1/chat/completions` (OpenAI), `POST /v1/messages` (Anthropic),
//! `GET /v1/models` and `GET /v1/models/{id}`. The body is read and validated here, on the
//! worker, so that a malformed request never starts the CLI; the turn itself runs on a run
//! thread (`sdk/turn.rs`). Errors are in the dialect's shape (the router sets it).

use std::sync::Arc;

use crate::app::App;
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::handlers::task::read_body;
use crate::reply::Reply;
use crate::sdk::turn::{self, Call, SESSION_HEADER};
use crate::sdk::{anthropic, models, openai, Dialect};

pub fn chat_completions(app: &Arc<App>, ex: Exchange, key_id: String) {
    start(app, ex, key_id, Dialect::OpenAi);
}

pub fn messages(app: &Arc<App>, ex: Exchange, key_id: String) {
    start(app, ex, key_id, Dialect::Anthropic);
}

/// Reads, checks and runs one SDK call on a run thread: the body is read there (a slow client
/// must not hold a pool worker), and a malformed body never starts the CLI.
fn start(app: &Arc<App>, ex: Exchange, key_id: String, dialect: Dialect) {
    let app = app.clone();
    crate::server::spawn_run("sdk-turn", move || {
        prepare_and_serve(&app, ex, key_id, dialect)
    });
}

fn prepare_and_serve(app: &Arc<App>, mut ex: Exchange, key_id: String, dialect: Dialect) {
    let prepared = read_body(app, &mut ex).and_then(|body| {
        let cfg = &app.config.sdk;
        let (chat, id) = match dialect {
            Dialect::OpenAi => (openai::parse(&body, cfg)?, "chatcmpl-"),
            Dialect::Anthropic => (anthropic::parse(&body, cfg)?, "msg_"),
        };
        let pinned = match ex.header(SESSION_HEADER).map(str::trim) {
            None => None,
            Some("") => {
                return Err(ApiError::bad_request(format!(
                    "`{SESSION_HEADER}` must name a session (or be left out)"
                )))
            }
            Some(id) => Some(crate::conversation::find(app, &key_id, id)?.session_id),
        };
        let place = match chat.stream {
            true => Some(crate::stream::take_place(app)?),
            false => None,
        };
        let call = Call {
            dialect,
            chat,
            id: format!("{id}{}", uuid::Uuid::new_v4().simple()),
            created: crate::clock::unix_secs(),
            key_id: key_id.clone(),
            pinned,
            request_id: ex.request_id.clone(),
            route: ex.path.clone(),
            arrived: ex.started,
        };
        Ok((call, place))
    });
    let (call, place) = match prepared {
        Ok(p) => p,
        Err(e) => return ex.error(e),
    };
    turn::serve(app, ex, call, place);
}

/// `GET /v1/models`.
pub fn models() -> Reply {
    Reply::ok(&models::list())
}

/// `GET /v1/models/{id}`.
pub fn model(id: &str) -> Result<Reply, ApiError> {
    Ok(Reply::ok(&models::get(&crate::exchange::percent_decode(
        id,
    ))?))
}
