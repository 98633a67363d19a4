//! The Telegram plugin against a fake Bot API (tests/it/fakes.rs) on loopback: HTML
//! escaping and multibyte text, the Approve / Deny keyboard on a permission denial, the
//! Deny, expiry and Approve paths, presses from elsewhere, and Bot API errors.

use std::time::Duration;

use claudeway::events::Event;
use serde_json::{json, Value};

use crate::fakes::{Call, Fake};
use crate::plugins::table;
use crate::support::*;

const CHAT: i64 = 42;

fn server(bot: &Fake, extra: &str, slack: Option<&Fake>) -> TestServer {
    let tg = table(&format!(
        "bot_token = \"123456:TEST-token_x\"\nchat_id = {CHAT}\napi_base = \"{}\"\npoll_timeout_secs = 1\n{extra}",
        bot.url("/")
    ));
    let slack = slack.map(|s| {
        table(&format!(
            "webhook_url = \"{}\"\nevents = [\"approval_denied\", \"approval_granted\"]",
            s.url("/hook")
        ))
    });
    TestServer::with(|cfg| {
        cfg.permissions_bypass = false;
        cfg.plugins.insert("telegram".into(), tg);
        if let Some(s) = slack {
            cfg.plugins.insert("slack".into(), s);
        }
    })
}

fn text(c: &Call) -> &str {
    c.body["text"].as_str().unwrap_or("")
}

/// A denied task and the message with its keyboard: (session id, message id, approve
/// data, deny data).
fn denied_task(srv: &TestServer, bot: &Fake) -> (String, i64, String, String) {
    let r = srv.post("/task", Some(USER), &json!({"prompt": "WRITE f.txt x"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let sid = r.json()["session_id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["permission_denials"][0]["tool_name"], "Write");
    let msg = bot.wait_for("the approval request", |c| {
        c.method == "sendMessage"
            && c.status == 200
            && text(c).contains(&sid)
            && c.body.pointer("/reply_markup/inline_keyboard").is_some()
    });
    let t = text(&msg);
    assert!(t.starts_with("🔒 <b>Permission needed</b>"), "{t}");
    assert!(
        t.contains("Write: ") && t.contains("f.txt") && t.contains("key: <code>user</code>"),
        "{t}"
    );
    let buttons = &msg.body["reply_markup"]["inline_keyboard"][0];
    let id = msg.answer["result"]["message_id"].as_i64().unwrap();
    (
        sid,
        id,
        buttons[0]["callback_data"].as_str().unwrap().to_string(),
        buttons[1]["callback_data"].as_str().unwrap().to_string(),
    )
}

fn press(bot: &Fake, cq: &str, chat: i64, message_id: i64, data: &str) {
    bot.push_update(json!({"callback_query": {
        "id": cq,
        "from": {"id": 7, "is_bot": false, "first_name": "Alice", "username": "alice"},
        "message": {"message_id": message_id, "chat": {"id": chat, "type": "group"}, "date": 0},
        "chat_instance": "1",
        "data": data,
    }}));
}

fn answered(bot: &Fake, cq: &str) -> String {
    let c = bot.wait_for(&format!("answerCallbackQuery {cq}"), |c| {
        c.method == "answerCallbackQuery" && c.body["callback_query_id"] == cq
    });
    c.body["text"].as_str().unwrap_or("").to_string()
}

fn edited(bot: &Fake, message_id: i64, contains: &str) -> Value {
    bot.wait_for(&format!("an edit of {message_id} with {contains:?}"), |c| {
        c.method == "editMessageText"
            && c.body["message_id"] == message_id
            && text(c).contains(contains)
    })
    .body
}

#[test]
fn messages_are_escaped_html_and_multibyte_text_is_cut_by_characters() {
    let bot = Fake::start();
    let srv = server(&bot, "", None);
    let prompt = format!("<b>bold</b> & \"q\" {}", "é😀".repeat(400));
    let r = srv.post("/task", Some(ADMIN), &json!({ "prompt": prompt }));
    assert_eq!(r.status, 200);
    let sid = r.json()["session_id"].as_str().unwrap().to_string();
    let c = bot.wait_for("the task's message", |c| {
        c.method == "sendMessage" && text(c).contains(&sid) && text(c).contains("Task completed")
    });
    assert_eq!(c.body["parse_mode"], "HTML");
    assert_eq!(c.body["chat_id"], CHAT);
    assert!(c.path.starts_with("/bot123456:TEST-token_x/"), "{}", c.path);
    let t = text(&c);
    assert!(
        t.starts_with("✅ <b>Task completed</b>\nkey: <code>admin</code>"),
        "{t}"
    );
    assert!(
        t.contains("<pre>echo: &lt;b&gt;bold&lt;/b&gt; &amp; \"q\" é😀é😀"),
        "{t}"
    );
    assert!(!t.contains("<b>bold"), "{t}");
    let pre = t
        .split("<pre>")
        .nth(1)
        .unwrap()
        .strip_suffix("</pre>")
        .unwrap();
    assert!(pre.ends_with('…'), "{pre}");
    assert!(
        pre.chars().count() <= 401 + 30,
        "capped by characters: {}",
        pre.chars().count()
    );
    // The server announced itself too.
    bot.wait_for("the start message", |c| {
        text(c).starts_with("🚀 <b>Claudeway started</b>")
    });
}

#[test]
fn deny_edits_the_message_and_publishes_the_denial() {
    let bot = Fake::start();
    let slack = Fake::start();
    let srv = server(
        &bot,
        "approve_label = \"Yes ✅\"\ndeny_label = \"No <way>\"",
        Some(&slack),
    );
    let (sid, mid, _approve, deny) = denied_task(&srv, &bot);
    let keyboard = &bot
        .wait_for("the keyboard", |c| {
            c.body.get("reply_markup").is_some() && c.method == "sendMessage"
        })
        .body["reply_markup"]["inline_keyboard"][0];
    assert_eq!(keyboard[0]["text"], "Yes ✅");
    assert_eq!(keyboard[1]["text"], "No <way>");

    // A press from another chat is answered and changes nothing.
    press(&bot, "cq-other", 999, mid, &deny);
    assert_eq!(answered(&bot, "cq-other"), "Not allowed here.");
    // The right chat, the wrong message.
    press(&bot, "cq-wrong-msg", CHAT, mid + 1000, &deny);
    assert_eq!(
        answered(&bot, "cq-wrong-msg"),
        "This request is no longer open."
    );

    press(&bot, "cq-deny", CHAT, mid, &deny);
    assert_eq!(answered(&bot, "cq-deny"), "Denied.");
    let e = edited(&bot, mid, "⛔ <b>Denied</b> by @alice.");
    assert_eq!(e["reply_markup"]["inline_keyboard"], json!([]));
    assert!(e["text"]
        .as_str()
        .unwrap()
        .starts_with("🔒 <b>Permission needed</b>"));
    // ApprovalDenied went out on the bus: Slack hears it.
    slack.wait_text(&["⛔ *Approval denied*", &sid]);

    // Telegram does not announce its own decision a second time: a later event arrives,
    // and no "Approval denied" message was sent before it.
    srv.app().publish(Event::SessionDeleted {
        key_id: "user".into(),
        session_id: "marker".into(),
    });
    bot.wait_for("the marker", |c| text(c).contains("marker"));
    assert!(!bot
        .calls()
        .iter()
        .any(|c| text(c).contains("Approval denied")));
    // The request is closed: another press is refused.
    press(&bot, "cq-again", CHAT, mid, &deny);
    assert_eq!(
        answered(&bot, "cq-again"),
        "This request is no longer open."
    );
    assert_eq!(
        bot.calls()
            .iter()
            .filter(|c| c.method == "editMessageText")
            .count(),
        1
    );
}

#[test]
fn an_unanswered_request_expires() {
    let bot = Fake::start();
    let srv = server(&bot, "approval_timeout_secs = 1", None);
    let (_sid, mid, approve, _deny) = denied_task(&srv, &bot);
    let e = edited(&bot, mid, "⌛ <b>Expired</b>: no answer within 1 s.");
    assert_eq!(e["reply_markup"]["inline_keyboard"], json!([]));
    press(&bot, "cq-late", CHAT, mid, &approve);
    assert_eq!(answered(&bot, "cq-late"), "This request is no longer open.");
}

#[test]
fn approve_reaches_the_approval_and_posts_its_outcome() {
    let bot = Fake::start();
    let srv = server(&bot, "", None);
    let (sid, mid, approve, _deny) = denied_task(&srv, &bot);
    press(&bot, "cq-yes", CHAT, mid, &approve);
    assert_eq!(answered(&bot, "cq-yes"), "Approved: running it now.");
    edited(
        &bot,
        mid,
        "⏳ <b>Approved</b> by @alice: running the approved tools…",
    );
    let outcome = bot.wait_for("the outcome", |c| {
        c.method == "sendMessage" && c.body["reply_parameters"]["message_id"] == mid
    });
    let t = text(&outcome);
    assert!(t.contains(&format!("session: <code>{sid}</code>")), "{t}");
    // The approved turn ran: the file exists and the CLI got exactly the denied tool.
    assert!(
        t.contains("Approved turn finished") && t.contains("success: yes"),
        "{t}"
    );
    edited(&bot, mid, "✅ <b>Approved</b> by @alice.");
    let run = srv.approval_run();
    let argv: Vec<&str> = run["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = argv
        .iter()
        .position(|a| *a == "--allowedTools")
        .expect("--allowedTools");
    assert_eq!(argv[at + 1], "Write");
    assert!(!argv.contains(&"--dangerously-skip-permissions"));
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(run["cwd"].as_str().unwrap()).join("f.txt"))
            .unwrap(),
        "x"
    );
}

#[test]
fn bot_api_errors_are_retried_with_backoff() {
    let bot = Fake::start();
    bot.fail_next("getUpdates", &[502, 502]);
    bot.fail_next("sendMessage", &[500]);
    let srv = server(&bot, "events = [\"permission_denied\"]", None);
    // The poller backs off (1 s, then 2 s) instead of spinning on the failures.
    std::thread::sleep(Duration::from_millis(2500));
    let polls = bot
        .calls()
        .iter()
        .filter(|c| c.method == "getUpdates")
        .count();
    assert!(polls <= 3, "{polls} polls in 2.5 s");
    bot.wait_for("a poll that works", |c| {
        c.method == "getUpdates" && c.status == 200
    });
    // The first sendMessage failed with 500 and was retried.
    let (_sid, mid, _approve, deny) = denied_task(&srv, &bot);
    let sends: Vec<u16> = bot
        .calls()
        .iter()
        .filter(|c| c.method == "sendMessage")
        .map(|c| c.status)
        .collect();
    assert_eq!(sends, [500, 200]);
    press(&bot, "cq-after-errors", CHAT, mid, &deny);
    edited(&bot, mid, "Denied");
}
