#!/usr/bin/env bash
# The gateway with curl (and jq to pick fields out of the answers): a chat
# request, a stream, an Anthropic message, and a client key.
#
#   make run && examples/curl/conductor.sh
#
# CONDUCTOR_BASE_URL  the gateway (default http://127.0.0.1:8000)
# CONDUCTOR_CLIENT_KEY  a client key of conf/conductor.conf (demo-client-key)
set -euo pipefail

BASE=${CONDUCTOR_BASE_URL:-http://127.0.0.1:8000}
KEY=${CONDUCTOR_CLIENT_KEY:-demo-client-key}

# a chat request: the gateway picks a provider for the alias "fast"; no key
# is needed on /v1/ of the shipped configuration
curl -sS --fail-with-body "$BASE/v1/chat/completions" \
     -H 'Content-Type: application/json' \
     -d '{"model":"fast","messages":[{"role":"user","content":"Say hello"}]}' \
| jq -r '"chat: \(.choices[0].message.content)",
         "chat usage: prompt_tokens=\(.usage.prompt_tokens) completion_tokens=\(.usage.completion_tokens) total_tokens=\(.usage.total_tokens)"'

# a stream: server-sent events, one "data: {...}" line each, then
# "data: [DONE]"; include_usage asks for a last chunk with the usage
curl -sS -N --fail-with-body "$BASE/v1/chat/completions" \
     -H 'Content-Type: application/json' \
     -d '{"model":"fast","stream":true,"stream_options":{"include_usage":true},
          "messages":[{"role":"user","content":"Say hello"}]}' \
| sed -n 's/^data: //p' | grep -v '^\[DONE\]$' \
| jq -rn '[inputs] as $c
          | "stream: \([$c[].choices[0].delta.content // empty] | join(""))",
            ($c[-1].usage | "stream usage: prompt_tokens=\(.prompt_tokens) completion_tokens=\(.completion_tokens) total_tokens=\(.total_tokens)")'

# an Anthropic message: the same gateway speaks the Messages API
curl -sS --fail-with-body "$BASE/v1/messages" \
     -H 'Content-Type: application/json' -H 'anthropic-version: 2023-06-01' \
     -d '{"model":"claude","max_tokens":256,
          "messages":[{"role":"user","content":"Say hello"}]}' \
| jq -r '"anthropic: \(.content[0].text)",
         "anthropic usage: input_tokens=\(.usage.input_tokens) output_tokens=\(.usage.output_tokens)"'

# a client key: /auth/v1/ asks for one, as Authorization: Bearer (OpenAI
# style) or x-api-key (Anthropic style); the client's limits and budget apply
curl -sS --fail-with-body "$BASE/auth/v1/chat/completions" \
     -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
     -d '{"model":"fast","messages":[{"role":"user","content":"Say hello"}]}' \
| jq -r '"client key chat: \(.choices[0].message.content)",
         "client key chat usage: prompt_tokens=\(.usage.prompt_tokens) completion_tokens=\(.usage.completion_tokens) total_tokens=\(.usage.total_tokens)"'

curl -sS --fail-with-body "$BASE/auth/v1/messages" \
     -H "x-api-key: $KEY" -H 'anthropic-version: 2023-06-01' \
     -H 'Content-Type: application/json' \
     -d '{"model":"claude","max_tokens":256,
          "messages":[{"role":"user","content":"Say hello"}]}' \
| jq -r '"client key message: \(.content[0].text)",
         "client key message usage: input_tokens=\(.usage.input_tokens) output_tokens=\(.usage.output_tokens)"'

# a key no client has: 401, in the OpenAI dialect on this endpoint
curl -sS "$BASE/auth/v1/chat/completions" -w '\n%{http_code}\n' \
     -H 'Authorization: Bearer not-a-client-key' \
     -H 'Content-Type: application/json' \
     -d '{"model":"fast","messages":[{"role":"user","content":"Say hello"}]}' \
| jq -rs '"wrong key: \(.[1]) \(.[0].error.type)"'

# what the client has used: the status report (allowed from 127.0.0.1)
curl -sS --fail-with-body "$BASE/conductor/status" \
| jq -r '.clients[] | select(.name == "demo")
         | "client demo: requests=\(.requests) cost_usd=\(.cost_usd) budget_day_remaining_usd=\(.budgets.day.remaining_usd)"'
