use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
const GIF: &str = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==";

fn post_with(srv: &TestServer, path: &str, headers: &[(&str, &str)], body: &Value) -> Resp {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    request(
        srv.addr,
        "POST",
        path,
        None,
        &h,
        body.to_string().as_bytes(),
    )
}

fn chat(srv: &TestServer, body: Value) -> Resp {
    srv.post("/v1/chat/completions", Some(USER), &body)
}

fn messages(srv: &TestServer, body: Value) -> Resp {
    post_with(
        srv,
        "/v1/messages",
        &[("x-api-key", USER), ("anthropic-version", "2023-06-01")],
        &body,
    )
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

/// Asserts OpenAI's error shape; returns the error object.
fn openai_error(r: &Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    let e = v["error"].clone();
    for k in ["message", "type", "param", "code"] {
        assert!(e.get(k).is_some(), "no {k} in {v}");
    }
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    e
}

/// Asserts Anthropic's error shape; returns the error object.
fn anthropic_error(r: &Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "error", "{v}");
    assert!(v["error"]["type"].is_string() && v["error"]["message"].is_string());
    v["error"].clone()
}

/// Sessions stored on disk (every kind).
fn stored_sessions(srv: &TestServer) -> usize {
    std::fs::read_dir(srv.root().join("state/sessions"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

/// The `data:` payloads of an OpenAI stream (comments skipped).
fn data_lines(events: &[SseEvent]) -> Vec<String> {
    events.iter().map(|e| e.data.clone()).collect()
}

#[test]
fn chat_completion_answer_shape_usage_and_argv() {
    let srv = TestServer::start();
    let r = chat(
        &srv,
        json!({"model": "sonnet", "temperature": 0.2, "top_p": 0.5, "seed": 7, "stop": ["x"],
               "max_tokens": 100, "user": "u-1",
               "messages": [{"role": "system", "content": "Be terse."},
                            {"role": "developer", "content": [{"type": "text", "text": "Use British spelling."}]},
                            user("hello there")]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(v["model"], "sonnet");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "echo: hello there");
    assert_eq!(choice["finish_reason"], "stop");
    // The fake's result: input 100 + prompt length, cache_read 50, cache_write 10.
    let input = 100 + "hello there".len() as u64;
    let output = "echo: hello there".len() as u64;
    let u = &v["usage"];
    assert_eq!(u["prompt_tokens"], input + 50 + 10);
    assert_eq!(u["completion_tokens"], output);
    assert_eq!(u["total_tokens"], input + 60 + output);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 50);
    let ext = &v["claudeway"];
    let sid = ext["session_id"].as_str().unwrap();
    assert_eq!(ext["conversation"], "new");
    assert!(ext["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(ext["model"], "claude-sonnet-5-5");
    assert_eq!(r.header("x-claudeway-session"), Some(sid));

    let run = srv.fake_run("hello there");
    let a = argv(&run);
    assert_eq!(after(&a, "--model"), Some("sonnet"));
    assert_eq!(after(&a, "--session-id"), Some(sid));
    assert!(
        !a.contains(&"--system-prompt".to_string()),
        "Claude Code's prompt is kept"
    );
    assert_eq!(
        after(&a, "--append-system-prompt"),
        Some("Be terse.\n\nUse British spelling.")
    );
    assert!(!a.contains(&"--input-format".to_string()));
    let cwd = run["cwd"].as_str().unwrap();
    assert!(cwd.starts_with(srv.root().join("work/sdk").to_str().unwrap()));

    let line = srv.audit("user").pop().unwrap();
    assert_eq!(line["route"], "/v1/chat/completions");
    assert_eq!(line["message"], "task completed");
    assert_eq!(line["session_id"], sid);
    assert_eq!(line["tokens"]["cache_read"], 50);
}

#[test]
fn chat_stream_chunks_usage_and_done() {
    let srv = TestServer::start();
    let body = json!({"model": "opus", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [user("stream me please")]});
    let mut s = SseClient::open_path(srv.addr, "/v1/chat/completions", Some(USER), &body).unwrap();
    assert!(s
        .header("Content-Type")
        .unwrap()
        .starts_with("text/event-stream"));
    let sid = s.header("x-claudeway-session").unwrap().to_string();
    let events = s.rest();
    assert!(s.ended());
    let data = data_lines(&events);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["id"], id);
        assert_eq!(c["created"], chunks[0]["created"]);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "opus");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    // The text as the fake CLI printed its deltas: "echo: ", "stream ", "me please".
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(pieces, ["echo: ", "stream ", "me please"]);
    let n = chunks.len();
    let finish = &chunks[n - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["claudeway"]["session_id"], sid.as_str());
    for c in &chunks[..n - 1] {
        assert!(c["usage"].is_null() && c.get("usage").is_some(), "{c}");
        assert_eq!(c["choices"][0]["index"], 0);
    }
    let last = &chunks[n - 1];
    assert_eq!(last["choices"], json!([]));
    let input = 100 + "stream me please".len() as u64;
    assert_eq!(last["usage"]["prompt_tokens"], input + 60);
    assert_eq!(
        last["usage"]["completion_tokens"],
        "echo: stream me please".len()
    );

    // Without include_usage: no usage key, no usage chunk.
    let body = json!({"model": "opus", "stream": true, "messages": [user("no usage here")]});
    let mut s = SseClient::open_path(srv.addr, "/v1/chat/completions", Some(USER), &body).unwrap();
    let data = data_lines(&s.rest());
    assert_eq!(data.last().unwrap(), "[DONE]");
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).unwrap();
        assert!(c.get("usage").is_none(), "{c}");
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
}

#[test]
fn the_second_turn_resumes_and_sends_only_the_new_message() {
    let srv = TestServer::start();
    let system = json!({"role": "system", "content": "You remember things."});
    let first = chat(
        &srv,
        json!({"model": "sonnet", "messages": [system, user("remember the word kiwi")]}),
    )
    .json();
    let answer = first["choices"][0]["message"]["content"].as_str().unwrap();
    let sid = first["claudeway"]["session_id"].as_str().unwrap();
    let history = vec![
        system.clone(),
        user("remember the word kiwi"),
        assistant(answer),
    ];

    let mut msgs = history.clone();
    msgs.push(user("RECALL"));
    let second = chat(&srv, json!({"model": "sonnet", "messages": msgs})).json();
    assert_eq!(second["claudeway"]["conversation"], "resumed");
    assert_eq!(second["claudeway"]["session_id"], sid);
    assert_eq!(
        second["choices"][0]["message"]["content"],
        "earlier prompts: remember the word kiwi"
    );
    let a = argv(&srv.fake_run("RECALL"));
    assert_eq!(after(&a, "--resume"), Some(sid));
    assert_eq!(
        after(&a, "--append-system-prompt"),
        Some("You remember things."),
        "no history in the system prompt: the CLI has it"
    );

    // A third turn, with the answer sent back as content parts and other whitespace.
    let recall = second["choices"][0]["message"]["content"].as_str().unwrap();
    let mut msgs3 = msgs.clone();
    msgs3.push(json!({"role": "assistant", "content": [{"type": "text", "text": format!("  {recall}\n")}]}));
    msgs3.push(user("third turn"));
    let third = chat(&srv, json!({"model": "haiku", "messages": msgs3})).json();
    assert_eq!(third["claudeway"]["conversation"], "resumed");
    assert_eq!(third["claudeway"]["session_id"], sid);
    assert_eq!(
        after(&argv(&srv.fake_run("third turn")), "--model"),
        Some("haiku")
    );

    // Regenerating the second turn (same history again): the head moved on, so this is a
    // fork: a new CLI conversation that gets the earlier turns as context.
    let mut again = history.clone();
    again.push(user("RECALL again"));
    let fork = chat(&srv, json!({"model": "sonnet", "messages": again})).json();
    assert_eq!(fork["claudeway"]["conversation"], "history");
    assert_ne!(fork["claudeway"]["session_id"], sid);
    let run = srv.fake_run("RECALL again");
    let a = argv(&run);
    assert!(a.contains(&"--session-id".to_string()));
    let sp = after(&a, "--append-system-prompt").unwrap();
    assert!(
        sp.starts_with("You remember things.\n\n<earlier_conversation>\n"),
        "{sp}"
    );
    assert!(sp.contains("<message role=\"user\">\nremember the word kiwi\n</message>"));
    assert!(sp.contains(&format!(
        "<message role=\"assistant\">\n{answer}\n</message>"
    )));
    assert!(sp.ends_with("</earlier_conversation>"));
    assert_eq!(
        run["prompt"], "RECALL again",
        "only the new message is the prompt"
    );
    assert_eq!(
        fork["choices"][0]["message"]["content"], "earlier prompts: ",
        "never a transcript to continue"
    );

    // The fork is resumable too, and keeps its context on later turns.
    let fork_answer = fork["choices"][0]["message"]["content"].as_str().unwrap();
    let mut next = again.clone();
    next.push(assistant(fork_answer));
    next.push(user("after the fork"));
    let after_fork = chat(&srv, json!({"model": "sonnet", "messages": next})).json();
    assert_eq!(after_fork["claudeway"]["conversation"], "resumed");
    assert_eq!(
        after_fork["claudeway"]["session_id"],
        fork["claudeway"]["session_id"]
    );
    let a = argv(&srv.fake_run("after the fork"));
    assert!(after(&a, "--append-system-prompt")
        .unwrap()
        .contains("remember the word kiwi"));

    // Another key with the same history never finds this conversation.
    let mut other = history.clone();
    other.push(user("other key"));
    let o = srv
        .post(
            "/v1/chat/completions",
            Some(OTHER),
            &json!({"model": "sonnet", "messages": other}),
        )
        .json();
    assert_eq!(o["claudeway"]["conversation"], "history");
}

#[test]
fn conversations_survive_a_restart() {
    let srv = TestServer::start();
    let first = chat(
        &srv,
        json!({"model": "sonnet", "messages": [user("before restart")]}),
    )
    .json();
    let sid = first["claudeway"]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = first["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = srv.stop();
    let srv = TestServer::in_dir(dir, |_| {});
    let r = chat(
        &srv,
        json!({"model": "sonnet", "messages": [user("before restart"), assistant(&answer), user("RECALL")]}),
    )
    .json();
    assert_eq!(r["claudeway"]["conversation"], "resumed");
    assert_eq!(r["claudeway"]["session_id"], sid.as_str());
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "earlier prompts: before restart"
    );
}

#[test]
fn anthropic_message_shape_and_x_api_key() {
    let srv = TestServer::start();
    let r = messages(
        &srv,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "temperature": 1, "top_k": 5,
               "metadata": {"user_id": "u-1"}, "stop_sequences": ["\n\nHuman:"],
               "system": [{"type": "text", "text": "Answer in French."}],
               "messages": [{"role": "user", "content": [{"type": "text", "text": "bonjour"}, {"type": "text", "text": "toi"}]}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "echo: bonjour\ntoi"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null());
    let input = 100 + "bonjour\ntoi".len() as u64;
    assert_eq!(
        v["usage"],
        json!({"input_tokens": input, "output_tokens": "echo: bonjour\ntoi".len(),
               "cache_read_input_tokens": 50, "cache_creation_input_tokens": 10})
    );
    let a = argv(&srv.fake_run("bonjour\ntoi"));
    assert_eq!(after(&a, "--model"), Some("claude-sonnet-4-5"));
    assert_eq!(
        after(&a, "--append-system-prompt"),
        Some("Answer in French.")
    );
    assert_eq!(srv.audit("user").pop().unwrap()["route"], "/v1/messages");

    // Bearer works on /v1/messages too; x-api-key does not work on native routes.
    let r = srv.post(
        "/v1/messages",
        Some(USER),
        &json!({"model": "haiku", "max_tokens": 10, "messages": [user("with bearer")]}),
    );
    assert_eq!(r.status, 200);
    let r = post_with(
        &srv,
        "/task",
        &[("x-api-key", USER)],
        &json!({"prompt": "x"}),
    );
    r.error(401, "UNAUTHORIZED");
}

#[test]
fn anthropic_stream_of_a_run_with_tools_is_one_message() {
    let srv = TestServer::start();
    let body = json!({"model": "sonnet", "max_tokens": 64, "stream": true,
                      "messages": [user("TOOL_STREAM go")]});
    let mut s = SseClient::open_path(srv.addr, "/v1/messages", Some(USER), &body).unwrap();
    let events = s.rest();
    let named: Vec<(&str, Value)> = events
        .iter()
        .map(|e| (e.name.as_str(), serde_json::from_str(&e.data).unwrap()))
        .collect();
    for (name, data) in &named {
        assert_eq!(data["type"], *name, "the data's type is the event's name");
    }
    let names: Vec<&str> = named
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != "ping")
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(named.iter().any(|(n, _)| *n == "ping"));
    let start = &named[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["content"], json!([]));
    let indexes: Vec<u64> = named
        .iter()
        .filter(|(n, _)| *n == "content_block_start")
        .map(|(_, d)| d["index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        indexes,
        [0, 1],
        "blocks of the second model turn are renumbered"
    );
    let text = |i: u64| -> String {
        named
            .iter()
            .filter(|(n, d)| *n == "content_block_delta" && d["index"] == i)
            .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(text(0), "I'll write the file.");
    assert_eq!(text(1), "echo: TOOL_STREAM go");
    let delta = &named.iter().find(|(n, _)| *n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        delta["usage"]["output_tokens"],
        "echo: TOOL_STREAM go".len()
    );
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 50);
    assert!(delta["claudeway"]["session_id"].is_string());

    // The same run, not streamed: both text blocks; OpenAI joins them with a blank line.
    let v = messages(
        &srv,
        json!({"model": "sonnet", "max_tokens": 64, "messages": [user("TOOL_STREAM two")]}),
    )
    .json();
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "I'll write the file."}, {"type": "text", "text": "echo: TOOL_STREAM two"}])
    );
    let v = chat(
        &srv,
        json!({"model": "sonnet", "messages": [user("TOOL_STREAM three")]}),
    )
    .json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "I'll write the file.\n\necho: TOOL_STREAM three"
    );
    let body = json!({"model": "sonnet", "stream": true, "messages": [user("TOOL_STREAM four")]});
    let mut s = SseClient::open_path(srv.addr, "/v1/chat/completions", Some(USER), &body).unwrap();
    let streamed: String = data_lines(&s.rest())
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(streamed, "I'll write the file.\n\necho: TOOL_STREAM four");
}

#[test]
fn length_and_max_tokens_stop_reasons() {
    let srv = TestServer::start();
    let v = chat(
        &srv,
        json!({"model": "sonnet", "messages": [user("MAX_TOKENS a")]}),
    )
    .json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let v = messages(
        &srv,
        json!({"model": "sonnet", "max_tokens": 5, "messages": [user("MAX_TOKENS b")]}),
    )
    .json();
    assert_eq!(v["stop_reason"], "max_tokens");
}

#[test]
fn bad_requests_are_answered_in_each_shape_and_start_nothing() {
    let srv = TestServer::start();
    let e = openai_error(
        &chat(&srv, json!({"model": "gpt-4o", "messages": [user("x")]})),
        400,
    );
    assert_eq!(e["param"], "model");
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(e["type"], "invalid_request_error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("sonnet, opus, haiku"),
        "{e}"
    );
    let e = anthropic_error(
        &messages(
            &srv,
            json!({"model": "gpt-4o", "max_tokens": 1, "messages": [user("x")]}),
        ),
        400,
    );
    assert_eq!(e["type"], "invalid_request_error");
    assert!(e["message"].as_str().unwrap().contains("claude-"));

    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    let r = chat(
        &srv,
        json!({"model": "sonnet", "tools": tools, "messages": [user("x")]}),
    );
    let e = openai_error(&r, 400);
    assert_eq!(
        (e["param"].as_str(), e["code"].as_str()),
        (Some("tools"), Some("unsupported_parameter"))
    );
    assert!(e["message"].as_str().unwrap().contains("ignore_tools"));
    assert_eq!(r.header("x-should-retry"), Some("false"));
    let e = anthropic_error(
        &messages(
            &srv,
            json!({"model": "sonnet", "max_tokens": 1, "tools": [{"name": "f", "input_schema": {}}], "messages": [user("x")]}),
        ),
        400,
    );
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("`tools` is not supported"));

    for (body, needle) in [
        (json!({"messages": [user("x")]}), "`model` is required"),
        (json!({"model": "sonnet"}), "`messages` is required"),
        (
            json!({"model": "sonnet", "messages": []}),
            "must not be empty",
        ),
        (
            json!({"model": "sonnet", "messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "sonnet", "messages": [user("x"), assistant("prefill")]}),
            "must be a user message",
        ),
        (
            json!({"model": "sonnet", "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "sonnet", "stream": "yes", "messages": [user("x")]}),
            "`stream`",
        ),
        (
            json!({"model": "sonnet", "max_tokens": 0, "messages": [user("x")]}),
            "`max_tokens`",
        ),
        (
            json!({"model": "sonnet", "n": 2, "messages": [user("x")]}),
            "`n` must be 1",
        ),
        (
            json!({"model": "sonnet", "response_format": {"type": "json_object"}, "messages": [user("x")]}),
            "response_format",
        ),
        (
            json!({"model": "sonnet", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
            "input_audio",
        ),
    ] {
        let e = openai_error(&chat(&srv, body.clone()), 400);
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{body}: {e}"
        );
    }
    for (body, needle) in [
        (
            json!({"model": "sonnet", "messages": [{"role": "system", "content": "x"}]}),
            "user or assistant",
        ),
        (
            json!({"model": "sonnet", "system": 5, "messages": [user("x")]}),
            "`system`",
        ),
        (
            json!({"model": "sonnet", "metadata": "m", "messages": [user("x")]}),
            "`metadata`",
        ),
        (
            json!({"model": "sonnet", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]}]}),
            "tool result",
        ),
        (
            json!({"model": "sonnet", "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}),
            "document",
        ),
    ] {
        let e = anthropic_error(&messages(&srv, body.clone()), 400);
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{body}: {e}"
        );
    }
    let r = request(
        srv.addr,
        "POST",
        "/v1/chat/completions",
        Some(USER),
        &[],
        b"{nope",
    );
    assert!(openai_error(&r, 400)["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    let r = request(srv.addr, "POST", "/v1/messages", Some(USER), &[], b"[1]");
    anthropic_error(&r, 400);
    assert!(srv.fake_runs().is_empty(), "no bad request started the CLI");
    assert_eq!(stored_sessions(&srv), 0);
}

#[test]
fn tools_can_be_ignored_by_the_operator() {
    let srv = TestServer::with(|c| c.sdk.ignore_tools = true);
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    let r = chat(
        &srv,
        json!({"model": "sonnet", "tools": tools, "tool_choice": "auto", "messages": [user("tools ignored")]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "echo: tools ignored"
    );
}

#[test]
fn auth_routing_and_models() {
    let srv = TestServer::start();
    let r = srv.post("/v1/chat/completions", Some("wrong"), &json!({}));
    let e = openai_error(&r, 401);
    assert_eq!(e["code"], "invalid_api_key");
    assert!(e["message"].as_str().unwrap().contains("x-api-key"));
    assert_eq!(r.header("x-should-retry"), Some("false"));
    let r = post_with(&srv, "/v1/messages", &[("x-api-key", "wrong")], &json!({}));
    assert_eq!(anthropic_error(&r, 401)["type"], "authentication_error");
    let unauthorized = srv.audit("_unauthorized");
    assert_eq!(unauthorized.len(), 2);
    assert_eq!(unauthorized[1]["route"], "/v1/messages");

    let r = srv.get("/v1/nothing", Some(USER));
    assert_eq!(openai_error(&r, 404)["type"], "not_found_error");
    let r = request(
        srv.addr,
        "GET",
        "/v1/nothing",
        Some(USER),
        &[("anthropic-version", "2023-06-01")],
        b"",
    );
    assert_eq!(anthropic_error(&r, 404)["type"], "not_found_error");
    let r = srv.get("/v1/chat/completions", Some(USER));
    openai_error(&r, 405);
    assert_eq!(r.header("Allow"), Some("POST"));

    for r in [
        srv.get("/v1/models", Some(USER)),
        request(
            srv.addr,
            "GET",
            "/v1/models",
            None,
            &[("x-api-key", USER)],
            b"",
        ),
    ] {
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["object"], "list");
        assert_eq!(v["has_more"], false);
        let data = v["data"].as_array().unwrap();
        assert_eq!(v["first_id"], data[0]["id"]);
        assert_eq!(v["last_id"], data[data.len() - 1]["id"]);
        let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids[..3], ["sonnet", "opus", "haiku"]);
        for m in data {
            assert_eq!(m["object"], "model");
            assert_eq!(m["type"], "model");
            assert!(m["created"].is_i64() && m["created_at"].as_str().unwrap().ends_with('Z'));
            assert!(m["display_name"].is_string() && m["owned_by"].is_string());
        }
    }
    assert_eq!(srv.get("/v1/models/opus", Some(USER)).json()["id"], "opus");
    openai_error(&srv.get("/v1/models/gpt-4", Some(USER)), 404);
    openai_error(&srv.get("/v1/models", None), 401);
}

#[test]
fn a_failed_run_is_not_retried_and_leaves_no_conversation() {
    let srv = TestServer::start();
    let r = chat(
        &srv,
        json!({"model": "sonnet", "messages": [user("API_ERROR now")]}),
    );
    let e = openai_error(&r, 500);
    assert_eq!(e["type"], "server_error");
    assert!(
        e["message"].as_str().unwrap().contains("API Error: 500"),
        "{e}"
    );
    assert_eq!(r.header("x-should-retry"), Some("false"));
    let r = messages(
        &srv,
        json!({"model": "sonnet", "max_tokens": 9, "messages": [user("NO_RESULT now")]}),
    );
    assert_eq!(anthropic_error(&r, 500)["type"], "api_error");
    assert_eq!(r.header("x-should-retry"), Some("false"));
    let line = srv.audit("user").pop().unwrap();
    assert_eq!(
        (line["status"].as_u64(), line["success"].as_bool()),
        (Some(500), Some(false))
    );
    assert!(
        eventually(Duration::from_secs(10), || stored_sessions(&srv) == 0
            && std::fs::read_dir(srv.root().join("work/sdk"))
                .unwrap()
                .count()
                == 0),
        "a failed first turn removes its conversation and workdir"
    );

    // Failures after the stream began: an error in the stream, never a fake stop.
    let body = json!({"model": "sonnet", "stream": true, "messages": [user("API_ERROR streamed")]});
    let mut s = SseClient::open_path(srv.addr, "/v1/chat/completions", Some(USER), &body).unwrap();
    let data = data_lines(&s.rest());
    let n = data.len();
    assert_eq!(data[n - 1], "[DONE]");
    let err: Value = serde_json::from_str(&data[n - 2]).unwrap();
    assert_eq!(err["error"]["type"], "server_error");
    assert!(!data.iter().any(|d| d.contains("finish_reason\":\"stop")));
    let body = json!({"model": "sonnet", "max_tokens": 9, "stream": true, "messages": [user("NO_RESULT streamed")]});
    let mut s = SseClient::open_path(srv.addr, "/v1/messages", Some(USER), &body).unwrap();
    let events = s.rest();
    let last = events.last().unwrap();
    assert_eq!(last.name, "error");
    let v: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(v["error"]["type"], "api_error");
    assert!(!events.iter().any(|e| e.name == "message_stop"));
}

#[test]
fn a_resumed_conversation_that_fails_keeps_its_place() {
    let srv = TestServer::start();
    let first = chat(
        &srv,
        json!({"model": "sonnet", "messages": [user("keep me")]}),
    )
    .json();
    let answer = first["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let sid = first["claudeway"]["session_id"].clone();
    let msgs = |last: &str| json!({"model": "sonnet", "messages": [user("keep me"), assistant(&answer), user(last)]});
    openai_error(&chat(&srv, msgs("API_ERROR in the middle")), 500);
    let r = chat(&srv, msgs("retry works")).json();
    assert_eq!(r["claudeway"]["conversation"], "resumed");
    assert_eq!(r["claudeway"]["session_id"], sid);
}

#[test]
fn a_full_queue_is_retryable() {
    let srv = TestServer::with(|c| {
        c.max_concurrent = 1;
        c.max_queue = 0;
    });
    let gate = srv.root().join("release");
    let addr = srv.addr;
    let hold = format!("WAIT_FILE {} hold", gate.display());
    let t = std::thread::spawn(move || {
        request(
            addr,
            "POST",
            "/task",
            Some(USER),
            &[],
            json!({"prompt": hold}).to_string().as_bytes(),
        )
    });
    srv.wait_load(1, 0);
    let r = chat(
        &srv,
        json!({"model": "sonnet", "messages": [user("no room")]}),
    );
    assert_eq!(openai_error(&r, 503)["type"], "overloaded_error");
    assert_eq!(r.header("x-should-retry"), Some("true"));
    assert!(r.header("Retry-After").is_some());
    let body =
        json!({"model": "sonnet", "stream": true, "max_tokens": 5, "messages": [user("no room")]});
    let r = SseClient::open_path(srv.addr, "/v1/messages", Some(USER), &body)
        .err()
        .unwrap();
    assert_eq!(anthropic_error(&r, 503)["type"], "overloaded_error");
    std::fs::write(&gate, "").unwrap();
    assert_eq!(t.join().unwrap().status, 200);
    assert_eq!(
        stored_sessions(&srv),
        0,
        "refused turns leave no conversation"
    );
}

#[test]
fn images_go_to_the_cli_as_stream_json() {
    let srv = TestServer::start();
    let r = chat(
        &srv,
        json!({"model": "sonnet", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}"), "detail": "low"}}]}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        format!("echo: what is this [image image/png {}]", PNG.len())
    );
    let run = srv.fake_run("what is this");
    assert_eq!(after(&argv(&run), "--input-format"), Some("stream-json"));
    assert_eq!(run["images"], json!([format!("image/png {}", PNG.len())]));

    let r = messages(
        &srv,
        json!({"model": "sonnet", "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": GIF}},
            {"type": "text", "text": "and this"}]}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        srv.fake_run("and this")["images"],
        json!([format!("image/gif {}", GIF.len())])
    );

    let url = |u: &str| json!({"model": "sonnet", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": u}}]}]});
    let e = openai_error(&chat(&srv, url("https://example.com/cat.png")), 400);
    assert!(
        e["message"].as_str().unwrap().contains("not fetched"),
        "{e}"
    );
    let e = openai_error(
        &chat(&srv, url(&format!("data:image/jpeg;base64,{PNG}"))),
        400,
    );
    assert!(
        e["message"].as_str().unwrap().contains("not a image/jpeg"),
        "{e}"
    );
    let e = openai_error(&chat(&srv, url("data:image/bmp;base64,Qk0=")), 400);
    assert!(
        e["message"].as_str().unwrap().contains("not supported"),
        "{e}"
    );
    let e = anthropic_error(
        &messages(
            &srv,
            json!({"model": "sonnet", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]}),
        ),
        400,
    );
    assert!(e["message"].as_str().unwrap().contains("not fetched"));
    assert_eq!(srv.fake_runs().len(), 2, "refused images started nothing");

    let limited = TestServer::with(|c| {
        c.sdk.max_images = 1;
        c.sdk.max_image_bytes = 60;
    });
    let img =
        json!({"type": "image_url", "image_url": {"url": format!("data:image/gif;base64,{GIF}")}});
    let e = openai_error(
        &chat(
            &limited,
            json!({"model": "sonnet", "messages": [{"role": "user", "content": [img, img]}]}),
        ),
        400,
    );
    assert!(e["message"].as_str().unwrap().contains("at most 1"), "{e}");
    let big =
        json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}});
    let e = openai_error(
        &chat(
            &limited,
            json!({"model": "sonnet", "messages": [{"role": "user", "content": [big]}]}),
        ),
        400,
    );
    assert!(
        e["message"].as_str().unwrap().contains("max_image_bytes"),
        "{e}"
    );
}

#[test]
fn a_pinned_session_is_used_and_a_foreign_one_is_404() {
    let srv = TestServer::start();
    let s = srv
        .post("/session/start", Some(USER), &json!({"model": "opus"}))
        .json();
    let id = s["session_id"].as_str().unwrap();
    let (user_auth, other_auth) = (format!("Bearer {USER}"), format!("Bearer {OTHER}"));
    let pin = [
        ("Authorization", user_auth.as_str()),
        ("X-Claudeway-Session", id),
    ];
    let body = json!({"model": "sonnet", "messages": [user("ignored history"), assistant("x"), user("pinned turn")]});
    let r = post_with(&srv, "/v1/chat/completions", &pin, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["claudeway"]["conversation"], "pinned");
    assert_eq!(v["claudeway"]["session_id"], id);
    let run = srv.fake_run("pinned turn");
    assert_eq!(after(&argv(&run), "--session-id"), Some(id));
    assert_eq!(run["cwd"], s["workdir"]);
    let body = json!({"model": "sonnet", "messages": [user("RECALL")]});
    let r = post_with(&srv, "/v1/chat/completions", &pin, &body).json();
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "earlier prompts: pinned turn"
    );
    assert_eq!(
        srv.get(&format!("/session/{id}"), Some(USER)).json()["task_count"],
        2
    );

    let foreign = [
        ("Authorization", other_auth.as_str()),
        ("X-Claudeway-Session", id),
    ];
    let e = openai_error(
        &post_with(&srv, "/v1/chat/completions", &foreign, &body),
        404,
    );
    assert_eq!(e["type"], "not_found_error");
    let foreign = [("x-api-key", OTHER), ("X-Claudeway-Session", id)];
    let body = json!({"model": "sonnet", "max_tokens": 3, "messages": [user("x")]});
    anthropic_error(&post_with(&srv, "/v1/messages", &foreign, &body), 404);
}

#[test]
fn heartbeats_in_each_dialect_and_a_vanished_client_stops_the_run() {
    let srv = TestServer::with(|c| c.heartbeat = Duration::from_millis(100));
    // Anthropic: `ping` events while the CLI is silent (it waits for the gate file).
    let gate = srv.root().join("gate-a");
    let prompt = format!("WAIT_FILE {} pings", gate.display());
    let body =
        json!({"model": "sonnet", "max_tokens": 9, "stream": true, "messages": [user(&prompt)]});
    let mut s = SseClient::open_path(srv.addr, "/v1/messages", Some(USER), &body).unwrap();
    let mut seen_text = false;
    loop {
        let e = s.next_event().expect("the stream goes on");
        seen_text |= e.name == "content_block_delta";
        if seen_text && e.name == "ping" {
            break;
        }
    }
    std::fs::write(&gate, "").unwrap();
    assert_eq!(s.rest().last().unwrap().name, "message_stop");

    // OpenAI: SSE comments.
    let gate = srv.root().join("gate-o");
    let prompt = format!("WAIT_FILE {} comments", gate.display());
    let body = json!({"model": "sonnet", "stream": true, "messages": [user(&prompt)]});
    let mut conn = connect(srv.addr);
    send_request(
        &mut conn,
        "POST",
        "/v1/chat/completions",
        Some(USER),
        &[],
        body.to_string().as_bytes(),
    );
    let mut r = std::io::BufReader::new(conn);
    assert_eq!(read_head(&mut r).0, 200);
    let mut seen = String::new();
    while !seen.contains(": keep-alive\n\n") {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut r, &mut line).unwrap() > 0);
        seen.push_str(&line);
    }
    assert!(
        seen.contains("\"content\":\"echo: \""),
        "text came first: {seen}"
    );
    std::fs::write(&gate, "").unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut r, &mut rest);
    assert!(rest.contains("data: [DONE]"));

    // A client that goes away: its run is stopped and its new conversation removed.
    let gate = srv.root().join("gate-never");
    let prompt = format!("WAIT_FILE {} abandoned", gate.display());
    let body = json!({"model": "sonnet", "stream": true, "messages": [user(&prompt)]});
    let mut s = SseClient::open_path(srv.addr, "/v1/chat/completions", Some(USER), &body).unwrap();
    while !s.next_event().unwrap().data.contains("echo: ") {}
    drop(s);
    assert!(eventually(Duration::from_secs(20), || {
        srv.audit("user").iter().any(|l| l["status"] == 499)
    }));
    assert!(eventually(Duration::from_secs(20), || srv
        .app()
        .registry
        .is_empty()));
    assert!(eventually(Duration::from_secs(10), || stored_sessions(
        &srv
    ) == 2));
}
