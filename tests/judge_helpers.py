"""A fake LLM judge: a local OpenAI-protocol chat endpoint on 127.0.0.1 with deterministic replies.

``FakeJudge(replies)`` serves either the calls VLMEvalKit made in ``make_fixtures.py``
(``judge_calls.json``: a request is answered only if its prompt hash, temperature and max_tokens are
those VLMEvalKit sent, the n-th time as VLMEvalKit's n-th time; anything else is HTTP 400, so a prompt
built differently fails the test) or, without ``replies``, a canned reply derived from the prompt.
Every request is recorded. The server thread is a daemon, polled every 50 ms, shut down by ``close``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "vlmeval"


def recorded_calls(benchmark: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "judge_calls.json").read_text())[benchmark]


def default_reply(prompt: str) -> str:
    """Any prompt: a reply the judged scorers can read (an option, a yes, a number, MIA scores)."""
    if "Here is an instruction for a multimodal LLM" in prompt:
        return "score of component 1: 1/2, total score: 6/10. Reasons."
    if "The options are only Yes / No" in prompt:
        return "Yes"
    if "match an answer with several options" in prompt:
        return "A"
    if prompt.endswith("Extracted answer:"):
        return "4"
    return "Hello"


class FakeJudge:
    def __init__(self, replies: list[dict[str, Any]] | None = None):
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        table: dict[tuple[str, float, int], dict[str, Any]] = {}
        for call in replies or []:
            table[(call["prompt_sha256"], float(call["temperature"]), call["n"])] = call
        asked: dict[tuple[str, float], int] = defaultdict(int)
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                content = body["messages"][-1]["content"]
                if isinstance(content, str):
                    text, images = content, []
                else:
                    text = "\n".join(p["text"] for p in content if p["type"] == "text")
                    images = [p["image_url"] for p in content if p["type"] == "image_url"]
                prompt_hash = hashlib.sha256(text.encode()).hexdigest()
                temperature = float(body.get("temperature", 0))
                with lock:
                    outer.requests.append({"auth": self.headers.get("Authorization"), "model": body["model"],
                                           "prompt": text, "temperature": temperature,
                                           "max_tokens": body.get("max_tokens"), "images": images})
                    n = asked[(prompt_hash, temperature)]
                    asked[(prompt_hash, temperature)] += 1
                if replies is None:
                    return self._reply(200, default_reply(text) if text != "Hello!" else "Hi")
                call = table.get((prompt_hash, temperature, n))
                problem = None
                if call is None:
                    problem = (f"no VLMEvalKit call for this prompt at temperature {temperature} (ask #{n}): "
                               f"{text[:300]!r}")
                elif call["max_tokens"] != body.get("max_tokens"):
                    problem = f"max_tokens {body.get('max_tokens')}, VLMEvalKit sent {call['max_tokens']}"
                else:
                    sent = [hashlib.sha256(base64.b64decode(i["url"].split("base64,", 1)[1])).hexdigest()
                            for i in images]
                    if sent != call["images"]:
                        problem = f"images {sent}, VLMEvalKit sent {call['images']}"
                if problem:
                    outer.errors.append(problem)
                    return self._reply(400, problem)
                self._reply(200, call["reply"])

            def _reply(self, status: int, content: str) -> None:
                payload = ({"id": "c1", "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
                    if status == 200 else {"error": {"message": content}})
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
