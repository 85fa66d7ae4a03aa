#!/usr/bin/python3
"""The gateway with httpx (Debian's python3-httpx): a chat request, a
stream, an Anthropic message, and a client key.

    make run && python3 examples/python/conductor.py

CONDUCTOR_BASE_URL    the gateway (default http://127.0.0.1:8000)
CONDUCTOR_CLIENT_KEY  a client key of conf/conductor.conf (demo-client-key)
"""

import json
import os
import sys

import httpx

BASE = os.environ.get("CONDUCTOR_BASE_URL", "http://127.0.0.1:8000")
CLIENT_KEY = os.environ.get("CONDUCTOR_CLIENT_KEY", "demo-client-key")
HELLO = [{"role": "user", "content": "Say hello"}]
ANTHROPIC = {"anthropic-version": "2023-06-01"}


def usage(u):
    return " ".join(f"{k}={v}" for k, v in u.items() if isinstance(v, int))


def chat(http, label, path, headers=None):
    """An OpenAI chat completion: its text and usage."""
    r = http.post(path, headers=headers,
                  json={"model": "fast", "messages": HELLO})
    r.raise_for_status()
    answer = r.json()
    print(f"{label}: {answer['choices'][0]['message']['content']}")
    print(f"{label} usage: {usage(answer['usage'])}")


def message(http, label, path, headers=None):
    """An Anthropic message: its text and usage."""
    r = http.post(path, headers={**ANTHROPIC, **(headers or {})},
                  json={"model": "claude", "max_tokens": 256,
                        "messages": HELLO})
    r.raise_for_status()
    answer = r.json()
    print(f"{label}: {answer['content'][0]['text']}")
    print(f"{label} usage: {usage(answer['usage'])}")


def main():
    # a provider's answer can take minutes: no read timeout of httpx's 5 s
    with httpx.Client(base_url=BASE, timeout=httpx.Timeout(10, read=300)) as http:

        # a chat request: the gateway picks a provider for the alias
        # "fast"; /v1/ of the shipped configuration needs no key
        chat(http, "chat", "/v1/chat/completions")

        # a stream: server-sent events, "data: {...}" lines, then
        # "data: [DONE]"; include_usage asks for a last chunk with the usage
        text, last = "", None
        with http.stream("POST", "/v1/chat/completions",
                         json={"model": "fast", "messages": HELLO,
                               "stream": True,
                               "stream_options": {"include_usage": True}}
                         ) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                # httpx before 0.24 leaves the line's end on
                line = line.rstrip("\r\n")
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk["choices"]:
                    text += choice["delta"].get("content") or ""
                if chunk.get("usage"):
                    last = chunk["usage"]
        print(f"stream: {text}")
        print(f"stream usage: {usage(last)}")

        # an Anthropic message: the same gateway speaks the Messages API
        message(http, "anthropic", "/v1/messages")

        # a client key on /auth/v1/: Authorization: Bearer (OpenAI style)
        # or x-api-key (Anthropic style); its limits and budget apply
        chat(http, "client key chat", "/auth/v1/chat/completions",
             {"Authorization": f"Bearer {CLIENT_KEY}"})
        message(http, "client key message", "/auth/v1/messages",
                {"x-api-key": CLIENT_KEY})

        # a key no client has: 401, in the OpenAI dialect on this endpoint
        r = http.post("/auth/v1/chat/completions",
                      headers={"Authorization": "Bearer not-a-client-key"},
                      json={"model": "fast", "messages": HELLO})
        print(f"wrong key: {r.status_code} {r.json()['error']['type']}")

        # what the client has used: the status report (from 127.0.0.1)
        r = http.get("/conductor/status")
        r.raise_for_status()
        demo = next(c for c in r.json()["clients"] if c["name"] == "demo")
        print(f"client demo: requests={demo['requests']}"
              f" cost_usd={demo['cost_usd']}"
              f" budget_day_remaining_usd="
              f"{demo['budgets']['day']['remaining_usd']}")


if __name__ == "__main__":
    try:
        main()
    except httpx.HTTPError as e:
        sys.exit(f"conductor.py: {e}")
