"""The official OpenAI and Anthropic Python SDKs, unmodified, against Claudeway with the REAL
`claude` CLI, which talks to our mock of the Anthropic API (the `mock-anthropic` bin).

Starts mock-anthropic and the built gateway (argv[1]) with the CLI named by
CLAUDEWAY_E2E_CLI (`make e2e` installs it and sets it; unset, everything is skipped with a
message). The CLI's environment is the e2e harness's (tests/e2e/harness.rs), passed through
`[claude.env]`; the sandbox lets the CLI reach the mock's port because it is the port of
ANTHROPIC_BASE_URL. What the CLI sent is read back from the mock (`GET /_mock/requests`).

    CLAUDEWAY_E2E_CLI=... python tests/sdk/test_sdks_real.py target/debug/claudeway \\
        target/debug/mock-anthropic
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import anthropic
import openai

USER = "sk-sdk-user-0123456789"
ADMIN = "sk-sdk-admin-0123456789"
CLI_VAR = "CLAUDEWAY_E2E_CLI"
GATEWAY, MOCK = None, None


def started(proc, log, pattern, what):
    """Waits for `pattern` in the file `log` (a child's stderr); its first group."""
    until = time.time() + 30
    while time.time() < until:
        with open(log) as f:
            m = re.search(pattern, f.read())
        if m:
            return m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(log) as f:
        raise RuntimeError(f"{what} did not start: {f.read()}")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def toml_str(s):
    return json.dumps(s)  # a JSON string is a valid TOML basic string


class Stack:
    """mock-anthropic and the gateway as child processes, in a private directory tree."""

    def __init__(self, gateway, mock, cli):
        self.root = tempfile.mkdtemp(prefix="cw-sdk-real-")
        for d in ("home", "home/tmp", "cli-home", "cli-home/tmp", "work", "state", "logs"):
            os.makedirs(os.path.join(self.root, d))
        # Like the harness: nothing of the caller's ANTHROPIC_*/CLAUDE_*/proxy settings.
        env = {k: v for k, v in os.environ.items()
               if not ((k.startswith("ANTHROPIC_") or k.startswith("CLAUDE_"))
                       and not k.startswith("CLAUDEWAY_"))
               and not k.lower().endswith("_proxy")}
        env.pop("WRAPPER_KEYS", None)
        env.pop("CLAUDECODE", None)
        env.update(HOME=os.path.join(self.root, "home"), NO_PROXY="127.0.0.1,localhost")
        self.procs = []
        self.mock_err = os.path.join(self.root, "mock.log")
        self.mock = self.spawn([os.path.abspath(mock), "0"], env, self.mock_err)
        self.mock_url = started(self.mock, self.mock_err, r"listening on (http://\S+)", "mock")

        cli_home = os.path.join(self.root, "cli-home")
        claude_env = {
            "ANTHROPIC_BASE_URL": self.mock_url,
            "ANTHROPIC_API_KEY": "sk-test",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "HOME": cli_home,
            "TMPDIR": os.path.join(cli_home, "tmp"),
        }
        if os.geteuid() == 0:
            # The CLI refuses --dangerously-skip-permissions as root without it.
            claude_env["IS_SANDBOX"] = "1"
        config = os.path.join(self.root, "claudeway.toml")
        with open(config, "w") as f:
            f.write("[claude.env]\n")
            for k, v in claude_env.items():
                f.write(f"{k} = {toml_str(v)}\n")
        self.gw_err = os.path.join(self.root, "gateway.log")
        self.gateway = self.spawn([
            os.path.abspath(gateway),
            "--claude-bin", cli,
            "--host", "127.0.0.1", "--port", "0",
            "--keys", f"admin:{ADMIN},user:{USER}",
            "--workdir", os.path.join(self.root, "work"),
            "--state-dir", os.path.join(self.root, "state"),
            "--log-dir", os.path.join(self.root, "logs"),
            "--config", config,
        ], env, self.gw_err)
        port = started(self.gateway, self.gw_err, r"listening on [^:\s]+:(\d+)", "gateway")
        self.base = f"http://127.0.0.1:{port}"

    def spawn(self, args, env, log):
        with open(log, "w") as err:
            p = subprocess.Popen(args, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=err)
        self.procs.append(p)
        return p

    def requests(self):
        """Everything the mock received, in order."""
        with urllib.request.urlopen(self.mock_url + "/_mock/requests", timeout=10) as r:
            return json.load(r)

    def messages(self, prompt=None, session=None):
        """The POST /v1/messages the CLI sent, by the prompt the mock answered or session."""
        return [r for r in self.requests()
                if r["method"] == "POST" and r["url"].split("?")[0] == "/v1/messages"
                and (prompt is None or r["prompt"] == prompt)
                and (session is None or r["session_id"] == session)]

    def audit(self, key_id):
        """The gateway's audit lines for a key."""
        out = []
        d = os.path.join(self.root, "logs", key_id)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            with open(os.path.join(d, name)) as f:
                out += [json.loads(line) for line in f if line.strip()]
        return out

    def logs(self):
        out = []
        for name in (self.gw_err, self.mock_err):
            with open(name) as f:
                out.append(f"--- {os.path.basename(name)}\n{f.read()[-4000:]}")
        return "\n".join(out)

    def stop(self):
        for p in reversed(self.procs):
            stop(p)
        shutil.rmtree(self.root, ignore_errors=True)


def usage_sum(requests):
    t = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
         "cache_creation_input_tokens": 0}
    for r in requests:
        for k in t:
            t[k] += (r["usage"] or {}).get(k, 0)
    return t


@unittest.skipUnless(os.environ.get(CLI_VAR),
                     f"set {CLI_VAR} to the claude binary (`make e2e` installs it and sets it)")
class RealCliSdkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cli = os.environ[CLI_VAR]
        if not os.path.isfile(cli):
            raise RuntimeError(f"{CLI_VAR}={cli} is not a file; run tests/e2e/install-cli.sh")
        cls.stack = Stack(GATEWAY, MOCK, cli)
        base = cls.stack.base
        cls.base = base
        cls.openai = openai.OpenAI(base_url=base + "/v1", api_key=USER, timeout=90)
        cls.anthropic = anthropic.Anthropic(base_url=base, api_key=USER, timeout=90)

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def run(self, result=None):
        # On failure, show what the gateway and the mock said.
        before = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        if result and len(result.failures) + len(result.errors) > before:
            print(self.stack.logs(), file=sys.stderr)
        return out

    def one_request(self, prompt):
        sent = self.stack.messages(prompt=prompt)
        self.assertEqual(len(sent), 1, f"API requests with prompt {prompt!r}: {sent}")
        return sent[0]

    # --- create -------------------------------------------------------------------------

    def test_openai_create(self):
        p = "hello from openai"
        r = self.openai.chat.completions.create(
            model="sonnet", messages=[{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": p}])
        self.assertEqual(r.choices[0].message.content, f"echo: {p}")
        self.assertEqual(r.choices[0].finish_reason, "stop")
        sent = self.one_request(p)
        self.assertEqual(sent["session_id"], r.model_extra["claudeway"]["session_id"])
        self.assertIn("Be brief.", json.dumps(sent["body"]["system"]))
        u = usage_sum([sent])
        self.assertEqual(r.usage.completion_tokens, u["output_tokens"])
        self.assertEqual(r.usage.prompt_tokens, u["input_tokens"] + u["cache_read_input_tokens"]
                         + u["cache_creation_input_tokens"])
        self.assertEqual(r.usage.prompt_tokens_details.cached_tokens,
                         u["cache_read_input_tokens"])

    def test_anthropic_create(self):
        p = "hello from anthropic"
        m = self.anthropic.messages.create(
            model="haiku", max_tokens=256, system="Answer briefly.",
            messages=[{"role": "user", "content": p}])
        self.assertEqual(m.content[0].text, f"echo: {p}")
        self.assertEqual(m.stop_reason, "end_turn")
        sent = self.one_request(p)
        self.assertEqual(sent["session_id"], m.model_extra["claudeway"]["session_id"])
        self.assertIn("haiku", sent["body"]["model"])
        u = usage_sum([sent])
        self.assertEqual(m.usage.input_tokens, u["input_tokens"])
        self.assertEqual(m.usage.output_tokens, u["output_tokens"])
        self.assertEqual(m.usage.cache_read_input_tokens, u["cache_read_input_tokens"])

    # --- stream with usage --------------------------------------------------------------

    def test_openai_stream_with_usage(self):
        p = "stream from openai"
        chunks = list(self.openai.chat.completions.create(
            model="sonnet", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": p}]))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, f"echo: {p}")
        self.assertEqual(chunks[-2].choices[0].finish_reason, "stop")
        self.assertEqual(chunks[-1].choices, [])
        u = usage_sum([self.one_request(p)])
        self.assertEqual(chunks[-1].usage.completion_tokens, u["output_tokens"])
        self.assertEqual(chunks[-1].usage.prompt_tokens,
                         u["input_tokens"] + u["cache_read_input_tokens"]
                         + u["cache_creation_input_tokens"])

    def test_anthropic_stream_with_usage(self):
        p = "stream from anthropic"
        with self.anthropic.messages.stream(
                model="sonnet", max_tokens=256,
                messages=[{"role": "user", "content": p}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        self.assertEqual(text, f"echo: {p}")
        self.assertEqual(final.stop_reason, "end_turn")
        u = usage_sum([self.one_request(p)])
        self.assertEqual(final.usage.output_tokens, u["output_tokens"])
        self.assertEqual(final.usage.input_tokens, u["input_tokens"])

    # --- a second turn resumes ----------------------------------------------------------

    def check_resumed(self, sid, first, second):
        sent = self.stack.messages(session=sid)
        self.assertEqual(len(sent), 2, f"two API requests in session {sid}: {sent}")
        # The CLI resumed its own transcript: the first turn is there, and the new message
        # was sent once (not the client's whole history flattened into a prompt).
        self.assertEqual(sent[1]["user_prompts"], [first, second])
        messages = sent[1]["body"]["messages"]
        users = json.dumps([m for m in messages if m["role"] == "user"])
        self.assertEqual(users.count(first), 1, users)
        self.assertEqual(users.count(second), 1, users)
        answers = [m for m in messages if m["role"] == "assistant"]
        self.assertIn(f"echo: {first}", json.dumps(answers), "the first answer is resumed")

    def test_openai_second_turn_resumes(self):
        first_p, second_p = "remember mango (openai)", "RECALL openai"
        history = [{"role": "user", "content": first_p}]
        first = self.openai.chat.completions.create(model="sonnet", messages=history)
        sid = first.model_extra["claudeway"]["session_id"]
        history += [{"role": "assistant", "content": first.choices[0].message.content},
                    {"role": "user", "content": second_p}]
        second = self.openai.chat.completions.create(model="sonnet", messages=history)
        self.assertEqual(second.choices[0].message.content, f"earlier prompts: {first_p}")
        self.assertEqual(second.model_extra["claudeway"]["conversation"], "resumed")
        self.assertEqual(second.model_extra["claudeway"]["session_id"], sid)
        self.check_resumed(sid, first_p, second_p)

    def test_anthropic_second_turn_resumes(self):
        first_p, second_p = "remember papaya (anthropic)", "RECALL anthropic"
        history = [{"role": "user", "content": first_p}]
        first = self.anthropic.messages.create(model="haiku", max_tokens=64, messages=history)
        sid = first.model_extra["claudeway"]["session_id"]
        history += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                    {"role": "user", "content": second_p}]
        second = self.anthropic.messages.create(model="haiku", max_tokens=64, messages=history)
        self.assertEqual(second.content[0].text, f"earlier prompts: {first_p}")
        self.assertEqual(second.model_extra["claudeway"]["session_id"], sid)
        self.check_resumed(sid, first_p, second_p)

    # --- models -------------------------------------------------------------------------

    def test_models(self):
        ids = [m.id for m in self.openai.models.list()]
        self.assertEqual(ids[:3], ["sonnet", "opus", "haiku"])
        self.assertEqual(self.openai.models.retrieve("haiku").id, "haiku")
        models = list(self.anthropic.models.list())
        self.assertEqual([m.id for m in models], ids)
        self.assertTrue(all(m.type == "model" and m.display_name for m in models))
        # A listed full id works with the real CLI and reaches the API as it is.
        full = next(i for i in ids if i.startswith("claude-"))
        r = self.openai.chat.completions.create(
            model=full, messages=[{"role": "user", "content": "listed model"}])
        self.assertEqual(r.choices[0].message.content, "echo: listed model")
        self.assertEqual(self.one_request("listed model")["body"]["model"], full)

    # --- a wrong key --------------------------------------------------------------------

    def test_wrong_key(self):
        bad = openai.OpenAI(base_url=self.base + "/v1", api_key="sk-wrong", timeout=30)
        with self.assertRaises(openai.AuthenticationError) as cm:
            bad.chat.completions.create(
                model="sonnet", messages=[{"role": "user", "content": "wrong key openai"}])
        self.assertEqual(cm.exception.code, "invalid_api_key")
        worse = anthropic.Anthropic(base_url=self.base, api_key="sk-wrong", timeout=30)
        with self.assertRaises(anthropic.AuthenticationError):
            worse.messages.create(model="sonnet", max_tokens=5,
                                  messages=[{"role": "user", "content": "wrong key anthropic"}])
        self.assertEqual(self.stack.messages(prompt="wrong key openai"), [])
        self.assertEqual(self.stack.messages(prompt="wrong key anthropic"), [])

    # --- a failed run is not retried ----------------------------------------------------

    def check_one_run(self, prompt):
        sent = self.stack.messages(prompt=prompt)
        # CLAUDE_CODE_MAX_RETRIES=0: one CLI run makes one request; a retry by the SDK (or
        # the gateway) would be another run, with another request and session.
        self.assertEqual(len(sent), 1, f"API requests with prompt {prompt!r}: {sent}")
        self.assertEqual(sent[0]["status"], 500)
        sid = sent[0]["session_id"]
        self.assertIsNotNone(sid)
        # One CLI run in the gateway's audit log (written by its own thread: poll for it).
        until = time.time() + 20
        while True:
            runs = [a for a in self.stack.audit("user") if a["session_id"] == sid]
            if runs or time.time() > until:
                break
            time.sleep(0.05)
        self.assertEqual(len(runs), 1, runs)
        self.assertFalse(runs[0]["success"])
        self.assertIsNotNone(runs[0]["claude_exit_code"], "the CLI ran")

    def test_openai_failed_run(self):
        p = "API_ERROR 500 openai"
        with self.assertRaises(openai.InternalServerError) as cm:
            self.openai.chat.completions.create(
                model="sonnet", messages=[{"role": "user", "content": p}])
        self.assertEqual(cm.exception.response.headers.get("x-should-retry"), "false")
        self.check_one_run(p)

    def test_anthropic_failed_run(self):
        p = "API_ERROR 500 anthropic"
        with self.assertRaises(anthropic.InternalServerError) as cm:
            self.anthropic.messages.create(
                model="sonnet", max_tokens=5, messages=[{"role": "user", "content": p}])
        self.assertEqual(cm.exception.response.headers.get("x-should-retry"), "false")
        self.check_one_run(p)

    # --- client tools: the documented 400 -----------------------------------------------

    def test_openai_tools_are_refused(self):
        with self.assertRaises(openai.BadRequestError) as cm:
            self.openai.chat.completions.create(
                model="sonnet", messages=[{"role": "user", "content": "tools openai"}],
                tools=[{"type": "function", "function": {
                    "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}])
        self.assertEqual(cm.exception.status_code, 400)
        self.assertEqual(cm.exception.code, "unsupported_parameter")
        self.assertEqual(cm.exception.param, "tools")
        self.assertEqual(self.stack.messages(prompt="tools openai"), [])

    def test_anthropic_tools_are_refused(self):
        with self.assertRaises(anthropic.BadRequestError) as cm:
            self.anthropic.messages.create(
                model="sonnet", max_tokens=5,
                messages=[{"role": "user", "content": "tools anthropic"}],
                tools=[{"name": "get_weather", "input_schema": {"type": "object"}}])
        self.assertEqual(cm.exception.status_code, 400)
        self.assertIn("`tools` is not supported", str(cm.exception))
        self.assertEqual(self.stack.messages(prompt="tools anthropic"), [])


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: test_sdks_real.py <claudeway binary> <mock-anthropic binary>")
    GATEWAY, MOCK = sys.argv[1], sys.argv[2]
    if not os.environ.get(CLI_VAR):
        print(f"sdk-real: skipped: set {CLI_VAR} to the claude binary "
              "(`make e2e` installs it and sets it)", file=sys.stderr)
    unittest.main(argv=sys.argv[:1], verbosity=2)
