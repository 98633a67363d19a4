"""The official OpenAI and Anthropic Python SDKs, unmodified, against Claudeway.

Starts the built gateway (argv[1]) on 127.0.0.1 with a free port and the fake CLI (argv[2])
as `claude`, then uses the SDKs the way their users do: create, stream with usage, a second
turn that resumes the CLI conversation, the model list, a wrong key, a failed run (which the
SDKs must not retry) and client-defined tools (refused). What the CLI was asked is read back
from the fake's records (FAKE_CLAUDE_LOG): argv and prompt of every run.

    python tests/sdk/test_sdks.py target/debug/claudeway target/debug/fake-claude
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import anthropic
import openai

USER = "sk-sdk-user-0123456789"
ADMIN = "sk-sdk-admin-0123456789"
GATEWAY, FAKE = None, None


class Server:
    """The gateway as a child process, in a private directory tree."""

    def __init__(self, gateway, fake):
        self.root = tempfile.mkdtemp(prefix="cw-sdk-")
        for d in ("home", "fake", "work", "state", "logs"):
            os.makedirs(os.path.join(self.root, d))
        env = dict(os.environ)
        env.update(
            HOME=os.path.join(self.root, "home"),
            IS_SANDBOX="1",
            FAKE_CLAUDE_LOG=os.path.join(self.root, "fake"),
            NO_PROXY="127.0.0.1,localhost",
        )
        env.pop("WRAPPER_KEYS", None)
        # Runs are sandboxed: let the fake CLI write its records.
        config = os.path.join(self.root, "claudeway.toml")
        with open(config, "w") as f:
            f.write('[sandbox]\nwrite = ["%s"]\n' % os.path.join(self.root, "fake"))
        self.stderr = open(os.path.join(self.root, "stderr.log"), "w+")
        args = [
            os.path.abspath(gateway),
            "--claude-bin", os.path.abspath(fake),
            "--host", "127.0.0.1", "--port", "0",
            "--keys", f"admin:{ADMIN},user:{USER}",
            "--workdir", os.path.join(self.root, "work"),
            "--state-dir", os.path.join(self.root, "state"),
            "--log-dir", os.path.join(self.root, "logs"),
            "--config", config,
        ]
        self.proc = subprocess.Popen(args, cwd=self.root, env=env, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr)
        self.port = None
        until = time.time() + 30
        while self.port is None and time.time() < until:
            if self.proc.poll() is not None:
                raise RuntimeError("the gateway exited: " + self.log())
            m = re.search(r"listening on [^:\s]+:(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
            else:
                time.sleep(0.05)
        if self.port is None:
            raise RuntimeError("the gateway did not start: " + self.log())

    def log(self):
        with open(self.stderr.name) as f:
            return f.read()

    def runs(self, prompt):
        """What the fake CLI recorded for each run with this prompt."""
        out = []
        for path in glob.glob(os.path.join(self.root, "fake", "*.json")):
            with open(path) as f:
                rec = json.load(f)
            if rec["prompt"] == prompt:
                out.append(rec)
        return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)


def after(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


class SdkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(GATEWAY, FAKE)
        base = f"http://127.0.0.1:{cls.srv.port}"
        cls.openai = openai.OpenAI(base_url=base + "/v1", api_key=USER, timeout=60)
        cls.anthropic = anthropic.Anthropic(base_url=base, api_key=USER, timeout=60)
        cls.base = base

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def one_run(self, prompt):
        runs = self.srv.runs(prompt)
        self.assertEqual(len(runs), 1, f"runs with prompt {prompt!r}: {len(runs)}")
        return runs[0]

    # --- OpenAI -------------------------------------------------------------------------

    def test_openai_create(self):
        r = self.openai.chat.completions.create(
            model="sonnet",
            messages=[{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "hello from openai"}],
            temperature=0.3, max_tokens=200, user="someone")
        self.assertTrue(r.id.startswith("chatcmpl-"))
        self.assertEqual(r.choices[0].message.content, "echo: hello from openai")
        self.assertEqual(r.choices[0].finish_reason, "stop")
        prompt_in = 100 + len("hello from openai")
        self.assertEqual(r.usage.prompt_tokens, prompt_in + 50 + 10)
        self.assertEqual(r.usage.completion_tokens, len("echo: hello from openai"))
        self.assertEqual(r.usage.prompt_tokens_details.cached_tokens, 50)
        ext = r.model_extra["claudeway"]
        self.assertGreater(ext["cost_usd"], 0)
        argv = self.one_run("hello from openai")["argv"]
        self.assertEqual(after(argv, "--session-id"), ext["session_id"])
        self.assertEqual(after(argv, "--append-system-prompt"), "Be brief.")

    def test_openai_stream_with_usage(self):
        stream = self.openai.chat.completions.create(
            model="opus", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "stream from openai"}])
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, "echo: stream from openai")
        self.assertEqual(len({c.id for c in chunks}), 1)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertEqual(chunks[-2].choices[0].finish_reason, "stop")
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, len(text))
        self.assertTrue(all(c.usage is None for c in chunks[:-1]))

    def test_openai_second_turn_resumes(self):
        history = [{"role": "user", "content": "remember mango (openai)"}]
        first = self.openai.chat.completions.create(model="sonnet", messages=history)
        sid = first.model_extra["claudeway"]["session_id"]
        history += [{"role": "assistant", "content": first.choices[0].message.content},
                    {"role": "user", "content": "RECALL openai"}]
        second = self.openai.chat.completions.create(model="sonnet", messages=history)
        self.assertEqual(second.choices[0].message.content,
                         "earlier prompts: remember mango (openai)")
        self.assertEqual(second.model_extra["claudeway"]["conversation"], "resumed")
        run = self.one_run("RECALL openai")
        self.assertEqual(after(run["argv"], "--resume"), sid)
        self.assertNotIn("--session-id", run["argv"])
        self.assertEqual(run["prompt"], "RECALL openai", "only the new message is sent")

    def test_openai_models(self):
        ids = [m.id for m in self.openai.models.list()]
        self.assertEqual(ids[:3], ["sonnet", "opus", "haiku"])
        self.assertEqual(self.openai.models.retrieve("haiku").id, "haiku")

    def test_openai_wrong_key(self):
        bad = openai.OpenAI(base_url=self.base + "/v1", api_key="sk-wrong", timeout=30)
        with self.assertRaises(openai.AuthenticationError) as cm:
            bad.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "x"}])
        self.assertEqual(cm.exception.code, "invalid_api_key")
        with self.assertRaises(openai.AuthenticationError):
            bad.models.list()

    def test_openai_failed_run_is_not_retried(self):
        with self.assertRaises(openai.InternalServerError) as cm:
            self.openai.chat.completions.create(
                model="sonnet", messages=[{"role": "user", "content": "API_ERROR openai"}])
        self.assertIn("API Error: 500", cm.exception.message)
        self.one_run("API_ERROR openai")
        # In a stream, the failure comes after the head: the SDK raises, nothing retries.
        with self.assertRaises(openai.APIError):
            for _ in self.openai.chat.completions.create(
                    model="sonnet", stream=True,
                    messages=[{"role": "user", "content": "API_ERROR openai stream"}]):
                pass
        self.one_run("API_ERROR openai stream")

    def test_openai_tools_are_refused(self):
        with self.assertRaises(openai.BadRequestError) as cm:
            self.openai.chat.completions.create(
                model="sonnet", messages=[{"role": "user", "content": "tools openai"}],
                tools=[{"type": "function", "function": {
                    "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}])
        self.assertEqual(cm.exception.code, "unsupported_parameter")
        self.assertEqual(cm.exception.param, "tools")
        self.assertEqual(self.srv.runs("tools openai"), [])

    def test_openai_unknown_model(self):
        with self.assertRaises(openai.BadRequestError) as cm:
            self.openai.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        self.assertEqual(cm.exception.code, "model_not_found")
        self.assertIn("sonnet, opus, haiku", cm.exception.message)

    # --- Anthropic ----------------------------------------------------------------------

    def test_anthropic_create(self):
        m = self.anthropic.messages.create(
            model="claude-sonnet-5-5", max_tokens=1024, system="Answer briefly.",
            messages=[{"role": "user", "content": "hello from anthropic"}],
            metadata={"user_id": "u-1"}, stop_sequences=["END"],
            extra_body={"temperature": 0.5, "top_k": 5})
        self.assertTrue(m.id.startswith("msg_"))
        self.assertEqual(m.content[0].text, "echo: hello from anthropic")
        self.assertEqual(m.stop_reason, "end_turn")
        self.assertEqual(m.usage.input_tokens, 100 + len("hello from anthropic"))
        self.assertEqual(m.usage.cache_read_input_tokens, 50)
        self.assertEqual(m.usage.cache_creation_input_tokens, 10)
        argv = self.one_run("hello from anthropic")["argv"]
        self.assertEqual(after(argv, "--model"), "claude-sonnet-5-5")
        self.assertEqual(after(argv, "--append-system-prompt"), "Answer briefly.")

    def test_anthropic_stream_with_usage(self):
        with self.anthropic.messages.stream(
                model="sonnet", max_tokens=256,
                messages=[{"role": "user", "content": "TOOL_STREAM anthropic"}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        self.assertEqual(text, "I'll write the file.echo: TOOL_STREAM anthropic")
        self.assertEqual([b.text for b in final.content],
                         ["I'll write the file.", "echo: TOOL_STREAM anthropic"])
        self.assertEqual(final.usage.output_tokens, len("echo: TOOL_STREAM anthropic"))
        self.assertEqual(final.usage.input_tokens, 100 + len("TOOL_STREAM anthropic"))
        self.assertEqual(final.stop_reason, "end_turn")

    def test_anthropic_second_turn_resumes(self):
        history = [{"role": "user", "content": "remember papaya (anthropic)"}]
        first = self.anthropic.messages.create(model="haiku", max_tokens=64, messages=history)
        sid = first.model_extra["claudeway"]["session_id"]
        history += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                    {"role": "user", "content": "RECALL anthropic"}]
        second = self.anthropic.messages.create(model="haiku", max_tokens=64, messages=history)
        self.assertEqual(second.content[0].text, "earlier prompts: remember papaya (anthropic)")
        run = self.one_run("RECALL anthropic")
        self.assertEqual(after(run["argv"], "--resume"), sid)
        self.assertEqual(run["prompt"], "RECALL anthropic")

    def test_anthropic_models(self):
        models = list(self.anthropic.models.list())
        self.assertEqual(models[0].id, "sonnet")
        self.assertTrue(all(m.type == "model" and m.display_name for m in models))

    def test_anthropic_wrong_key(self):
        bad = anthropic.Anthropic(base_url=self.base, api_key="sk-wrong", timeout=30)
        with self.assertRaises(anthropic.AuthenticationError):
            bad.messages.create(model="sonnet", max_tokens=5,
                                messages=[{"role": "user", "content": "x"}])

    def test_anthropic_failed_run_is_not_retried(self):
        with self.assertRaises(anthropic.InternalServerError):
            self.anthropic.messages.create(
                model="sonnet", max_tokens=5,
                messages=[{"role": "user", "content": "API_ERROR anthropic"}])
        self.one_run("API_ERROR anthropic")

    def test_anthropic_tools_are_refused(self):
        with self.assertRaises(anthropic.BadRequestError) as cm:
            self.anthropic.messages.create(
                model="sonnet", max_tokens=5,
                messages=[{"role": "user", "content": "tools anthropic"}],
                tools=[{"name": "get_weather", "input_schema": {"type": "object"}}])
        self.assertIn("`tools` is not supported", str(cm.exception))
        self.assertEqual(self.srv.runs("tools anthropic"), [])


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: test_sdks.py <claudeway binary> <fake-claude binary>")
    GATEWAY, FAKE = sys.argv[1], sys.argv[2]
    unittest.main(argv=sys.argv[:1], verbosity=2)
