//! `GET /models`: the models a client may name in `model`, and what the aliases mean. Answers
//! from the cache in `models.rs`; it never fetches by itself (a cold cache waits for the
//! first fetch at most the fetch timeout, 3 s by default).

use crate::app::App;
use crate::reply::Reply;

pub fn get(app: &App) -> Reply {
    Reply::ok(&*app.models.get())
}
