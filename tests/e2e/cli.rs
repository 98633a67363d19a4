use crate::harness::E2e;

#[test]
fn the_mock_sees_earlier_turns_when_the_cli_resumes() {
    // What the session tests will rely on: a resumed conversation sends the earlier turns,
    // and the mock's RECALL answers with them.
    let Some(e) = E2e::start() else { return };
    let id = uuid::Uuid::new_v4().to_string();
    let json = ["-p", "--output-format", "json", "--model", "haiku"];
    let first = e.run_cli(
        &[&json[..], &["--session-id", &id]].concat(),
        "my name is Zed",
    );
    assert_eq!(first["result"], "echo: my name is Zed", "{first}");
    let second = e.run_cli(&[&json[..], &["--resume", &id]].concat(), "RECALL please");
    assert_eq!(second["session_id"], id.as_str());
    assert_eq!(
        second["result"], "earlier prompts: my name is Zed",
        "{second}"
    );
    let sent = e.mock.messages_for(&id);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].user_prompts(), ["my name is Zed", "RECALL please"]);
}
