#!/usr/bin/env node
// Mock LLM provider for the conductor tests (node 20, no dependencies).
//
//   node t/mock/provider.js --ports 18001,18002,18003 [--pid-file FILE]
//
// One process listens on 127.0.0.1 on every given port. It answers the OpenAI
// (chat/completions, completions, embeddings, responses, models) and Anthropic
// (messages) endpoints with shapes the official SDKs parse, records every
// request, and changes behaviour on tokens found in the request's model name,
// its API key and its x-mock header (later ones win), e.g.
//   key k429 "k429;status=429;retry_after=3";
// Control endpoints (any port): GET /__mock/requests, DELETE /__mock/requests,
// POST /__mock/release. See the token list in BEHAVIOUR below.
// GET /__mock/requests lists what was received, in order: { seq, time, port,
// method, url (path and query as sent), headers (lower-case names, repeats
// joined by node), raw_headers ([name, value] per header line, as sent), body,
// json, key }.
'use strict';

const http = require('node:http');
const fs = require('node:fs');

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
    const opts = { ports: [], pidFile: null };
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        if (arg === '--ports') {
            opts.ports = String(argv[++i] || '').split(',').filter(Boolean).map(Number);
        } else if (arg === '--pid-file') {
            opts.pidFile = argv[++i];
        } else {
            die(`unknown argument ${arg}`);
        }
    }
    if (!opts.ports.length || opts.ports.some((p) => !Number.isInteger(p) || p <= 0 || p > 65535)) {
        die('usage: provider.js --ports P1[,P2...] [--pid-file FILE]');
    }
    return opts;
}

function die(msg) {
    process.stderr.write(`mock provider: ${msg}\n`);
    process.exit(2);
}

// ---------------------------------------------------------------- behaviour

// BEHAVIOUR: the tokens, separated by ';' in the model name, the API key or
// the x-mock header (later sources win).
//
// Failures (with fail_first=N only for the first N requests carrying the same
// string on this port, then the normal answer):
//   status=N         answer N with an error body in the endpoint's dialect
//   reset            destroy the connection before any answer
//   reset_mid        send half the answer (whole SSE events; half the bytes of
//                    a JSON body), then destroy the socket 20 ms later
//   cut_mid          the same cut at an event boundary (half the events, split
//                    by `chunk` if given), then a TCP reset (resetAndDestroy)
//   cut_partial      half the events and then half of the next event, so the
//                    cut falls inside its data line, then a TCP reset
//   no_terminal      the stream ends cleanly (proper chunked end) without its
//                    terminal event: no `data: [DONE]` (chat, completions), no
//                    message_stop (messages), no response.completed (responses)
//   stall_mid=MS     after half the events, send nothing for MS ms, then the rest
//   error_mid        after half the events, the provider's own error event in
//                    the endpoint's dialect, then a clean end (no terminal event)
//   fail_first=N     see above
// Rate-limit headers: retry_after, retry_after_ms, reset_requests,
//   reset_tokens, remaining_requests, remaining_tokens, limit_requests,
//   limit_tokens (x-ratelimit-*), an_reset=S (anthropic-ratelimit-*-reset)
// Raw rate-limit headers: the value is sent exactly as written (after the
// '=', up to the next ';', outer blanks trimmed), never parsed or computed,
// so hostile values reach the gateway as they are (choose values without ';'):
//   raw_retry_after=V     Retry-After: V   ("1000000000000", "-5", an HTTP-date)
//   raw_retry_after_ms=V  retry-after-ms: V
//   raw_reset_requests=V  x-ratelimit-reset-requests: V   ("999999h")
//   raw_reset_tokens=V    x-ratelimit-reset-tokens: V
//   raw_an_reset=V        anthropic-ratelimit-requests-reset: V and
//                         anthropic-ratelimit-tokens-reset: V ("9999-12-31T23:59:59Z")
//   A raw_* token replaces the header its computed counterpart would send.
// Timing and framing:
//   ttfb=MS          wait before the answer's head
//   chunk=N|random   write the body in N-byte (or random 1..64-byte) pieces
//   chunk_delay=MS   between writes (default 1)
//   gate             send the first event, then wait for POST /__mock/release
//   crlf             SSE lines end in \r\n
//   cr               SSE lines end in \r alone (wins over crlf)
//   nospace          `data:` / `event:` without the space after the colon
//   comments         a `: keep-alive` comment before every event but the first
//   spaced           every JSON (SSE data and JSON bodies) serialised with
//                    Python's default separators: {"id": "x", "choices": []}
// Content:
//   prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
//   cache_creation   the usage numbers (default 12, 5, 0, 0, 0); the text is
//                    streamed in completion_tokens pieces
//   usage=omit       no usage anywhere
//   usage=every_chunk  running usage on every chat / completions chunk (vLLM);
//                    with include_usage, still a final usage-only chunk
//   usage=on_finish  usage on the finish chunk, asked for or not, and no
//                    usage-only chunk (Cerebras)
//   big=KB           KB of padding before the usage of the last event / body
//   obfuscation      every chat stream chunk (the usage-only one too) ends in an
//                    "obfuscation":"<1..16 random characters>" member (OpenAI)
//   stop_reason      every choice of a chat / completions chunk gets
//                    "stop_reason":null after finish_reason (vLLM)
//   fixed_ids        deterministic ids, created times and obfuscation strings,
//                    so two requests for the same stream get the same bytes
//
// Tokens with a value (name=value) and bare flags. Anything else in a model,
// key or header string is ignored, so plain names like "llama3.1-8b" are inert.
const VALUED = new Set([
    'status', 'fail_first', 'retry_after', 'retry_after_ms',
    'reset_requests', 'reset_tokens', 'remaining_requests', 'remaining_tokens',
    'limit_requests', 'limit_tokens', 'an_reset',
    'raw_retry_after', 'raw_retry_after_ms', 'raw_reset_requests', 'raw_reset_tokens', 'raw_an_reset',
    'ttfb', 'chunk', 'chunk_delay',
    'prompt_tokens', 'completion_tokens', 'cached_tokens', 'reasoning_tokens',
    'cache_creation', 'usage', 'big', 'stall_mid',
]);
const FLAGS = new Set([
    'reset', 'reset_mid', 'gate', 'crlf', 'nospace', 'comments',
    'spaced', 'cr', 'obfuscation', 'stop_reason', 'no_terminal', 'cut_mid', 'cut_partial',
    'error_mid', 'fixed_ids',
]);

function parseTokens(str) {
    const out = {};
    if (typeof str !== 'string') return out;
    for (const raw of str.split(';')) {
        const tok = raw.trim();
        const eq = tok.indexOf('=');
        if (eq < 0) {
            if (FLAGS.has(tok)) out[tok] = true;
        } else {
            const name = tok.slice(0, eq);
            if (VALUED.has(name)) out[name] = tok.slice(eq + 1);
        }
    }
    return out;
}

// Merge the three sources; remember which string carried fail_first, since
// the fail_first counter is kept per (port, that string).
function behaviour(model, key, header) {
    const b = {};
    let failSource = null;
    for (const src of [model, key, header]) {
        const t = parseTokens(src);
        Object.assign(b, t);
        if ('fail_first' in t) failSource = src;
    }
    b.failSource = failSource;
    return b;
}

function num(v, dflt) {
    const n = Number(v);
    return v === undefined || !Number.isFinite(n) ? dflt : n;
}

// ---------------------------------------------------------------- state

let requests = [];              // recorded non-control requests
let seq = 0;
const failCounters = new Map(); // "port|string" -> requests seen
const gateWaiters = new Set();  // resolvers of streams held by `gate`
let idCounter = 0;

function releaseGates() {
    const n = gateWaiters.size;
    for (const resolve of [...gateWaiters]) resolve();
    gateWaiters.clear();
    return n;
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

function nextId(prefix) {
    idCounter += 1;
    return `${prefix}${Date.now().toString(36)}${idCounter}`;
}

// Ids and times of an answer: fixed with `fixed_ids`.
const FIXED_TIME = 1700000000;
function answerId(b, prefix) {
    return b.fixed_ids ? `${prefix}fixed` : nextId(prefix);
}
function answerTime(b) {
    return b.fixed_ids ? FIXED_TIME : Math.floor(Date.now() / 1000);
}

// The `obfuscation` strings of one answer: 1..16 characters, random, or from
// a fixed seed with `fixed_ids`.
function obfuscator(b) {
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    let seed = 0x2545f491;
    const rand = b.fixed_ids
        ? () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296; }
        : Math.random;
    return () => {
        const n = 1 + Math.floor(rand() * 16);
        let s = '';
        for (let i = 0; i < n; i++) s += chars[Math.floor(rand() * chars.length)];
        return s;
    };
}

// JSON with Python's default separators (", " and ": "), for `spaced`.
function spacedJson(v) {
    if (v === null || typeof v !== 'object') return JSON.stringify(v);
    if (typeof v.toJSON === 'function') return spacedJson(v.toJSON());
    if (Array.isArray(v)) {
        return v.length ? `[${v.map((x) => (x === undefined || typeof x === 'function' ? 'null' : spacedJson(x))).join(', ')}]` : '[]';
    }
    const members = Object.entries(v).filter(([, x]) => x !== undefined && typeof x !== 'function');
    return members.length ? `{${members.map(([k, x]) => `${JSON.stringify(k)}: ${spacedJson(x)}`).join(', ')}}` : '{}';
}

function toJson(v, b) {
    return b.spaced ? spacedJson(v) : JSON.stringify(v);
}

// ---------------------------------------------------------------- helpers

function bearerKey(headers) {
    const auth = headers['authorization'];
    if (typeof auth === 'string') {
        const m = /^\s*Bearer\s+(.*?)\s*$/i.exec(auth);
        if (m) return m[1];
    }
    if (typeof headers['x-api-key'] === 'string') return headers['x-api-key'];
    if (typeof headers['api-key'] === 'string') return headers['api-key'];
    return null;
}

// Header values must be visible ASCII; anything else becomes '?'.
function headerSafe(v) {
    return String(v === null || v === undefined ? '' : v).replace(/[^\x20-\x7e]/g, '?');
}

// Text split into n consecutive pieces (n >= 1), as a model streams tokens.
function splitText(text, n) {
    n = Math.max(1, n);
    const pieces = [];
    for (let i = 0; i < n; i++) {
        pieces.push(text.slice(Math.floor((i * text.length) / n), Math.floor(((i + 1) * text.length) / n)));
    }
    return pieces;
}

function padding(b) {
    const kb = num(b.big, 0);
    return kb > 0 ? 'x'.repeat(Math.floor(kb * 1024)) : null;
}

// Copy of obj with `mock_padding` inserted before `usage`, so a usage object
// sits at the far end of an over-long line.
function withPadding(obj, pad) {
    if (pad === null) return obj;
    const out = {};
    for (const [k, v] of Object.entries(obj)) {
        if (k === 'usage') out.mock_padding = pad;
        out[k] = v;
    }
    if (!('mock_padding' in out)) out.mock_padding = pad;
    return out;
}

// ---------------------------------------------------------------- errors

const ERROR_TYPES = {
    400: ['invalid_request_error', 'invalid_request_error', null],
    401: ['authentication_error', 'invalid_request_error', 'invalid_api_key'],
    403: ['permission_error', 'permission_error', null],
    404: ['not_found_error', 'invalid_request_error', 'not_found'],
    408: ['timeout_error', 'timeout', null],
    413: ['request_too_large', 'invalid_request_error', null],
    429: ['rate_limit_error', 'requests', 'rate_limit_exceeded'],
    500: ['api_error', 'server_error', null],
    502: ['api_error', 'server_error', null],
    503: ['overloaded_error', 'server_error', 'service_unavailable'],
    504: ['timeout_error', 'server_error', null],
    529: ['overloaded_error', 'server_error', null],
};

function errorBody(dialect, status, message) {
    const [anType, oaType, oaCode] = ERROR_TYPES[status] || [status >= 500 ? 'api_error' : 'invalid_request_error',
        status >= 500 ? 'server_error' : 'invalid_request_error', null];
    if (dialect === 'anthropic') {
        return { type: 'error', error: { type: anType, message }, request_id: nextId('req_mock_') };
    }
    return { error: { message, type: oaType, param: null, code: oaCode } };
}

// ---------------------------------------------------------------- usage

function usageNumbers(b) {
    return {
        prompt: num(b.prompt_tokens, 12),
        completion: num(b.completion_tokens, 5),
        cached: num(b.cached_tokens, 0),
        reasoning: num(b.reasoning_tokens, 0),
        cacheCreation: num(b.cache_creation, 0),
    };
}

function chatUsage(u, completion = u.completion) {
    return {
        prompt_tokens: u.prompt,
        completion_tokens: completion,
        total_tokens: u.prompt + completion,
        prompt_tokens_details: { cached_tokens: u.cached, audio_tokens: 0 },
        completion_tokens_details: {
            reasoning_tokens: u.reasoning, audio_tokens: 0,
            accepted_prediction_tokens: 0, rejected_prediction_tokens: 0,
        },
    };
}

function responsesUsage(u) {
    return {
        input_tokens: u.prompt,
        input_tokens_details: { cached_tokens: u.cached },
        output_tokens: u.completion,
        output_tokens_details: { reasoning_tokens: u.reasoning },
        total_tokens: u.prompt + u.completion,
    };
}

function anthropicUsage(u, outputTokens) {
    return {
        input_tokens: u.prompt,
        cache_creation_input_tokens: u.cacheCreation,
        cache_read_input_tokens: u.cached,
        cache_creation: { ephemeral_5m_input_tokens: u.cacheCreation, ephemeral_1h_input_tokens: 0 },
        output_tokens: outputTokens,
        server_tool_use: null,
        service_tier: 'standard',
    };
}

// ---------------------------------------------------------------- SSE

// An answer is { json: object } or { events: [{event?, data}] }.
function sseText(events, b) {
    const eol = b.cr ? '\r' : b.crlf ? '\r\n' : '\n';
    const sep = b.nospace ? ':' : ': ';
    return events.map((ev, i) => {
        let s = '';
        if (b.comments && i > 0) s += `:${b.nospace ? '' : ' '}keep-alive${eol}${eol}`;
        if (ev.event) s += `event${sep}${ev.event}${eol}`;
        const data = typeof ev.data === 'string' ? ev.data : toJson(ev.data, b);
        s += `data${sep}${data}${eol}${eol}`;
        return s;
    });
}

// ---------------------------------------------------------------- endpoints

function chatAnswer(req, b) {
    const model = req.model;
    const u = usageNumbers(b);
    const text = `Hello from ${model}`;
    const id = answerId(b, 'chatcmpl-mock');
    const created = answerTime(b);
    const pad = padding(b);
    const mode = b.usage; // undefined | omit | every_chunk | on_finish

    if (!req.stream) {
        const body = {
            id, object: 'chat.completion', created, model,
            choices: [{
                index: 0,
                message: { role: 'assistant', content: text, refusal: null, annotations: [] },
                logprobs: null, finish_reason: 'stop',
            }],
            usage: chatUsage(u),
            service_tier: 'default',
            system_fingerprint: 'fp_mock',
        };
        if (mode === 'omit') delete body.usage;
        return { json: withPadding(body, pad) };
    }

    const includeUsage = !!(req.json.stream_options && req.json.stream_options.include_usage === true);
    const pieces = splitText(text, u.completion);
    const base = () => ({ id, object: 'chat.completion.chunk', created, model, service_tier: 'default', system_fingerprint: 'fp_mock' });
    const chunks = [];
    chunks.push({ ...base(), choices: [{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }] });
    for (const p of pieces) {
        chunks.push({ ...base(), choices: [{ index: 0, delta: { content: p }, logprobs: null, finish_reason: null }] });
    }
    chunks.push({ ...base(), choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }] });

    if (mode === 'every_chunk') {
        // vLLM continuous usage: running totals on every chunk
        chunks.forEach((c, i) => { c.usage = chatUsage(u, Math.min(i, u.completion)); });
        chunks[chunks.length - 1].usage = chatUsage(u);
    } else if (mode === 'on_finish') {
        // Cerebras: usage and time_info ride on the finish chunk, asked or not
        const fin = chunks[chunks.length - 1];
        fin.usage = chatUsage(u);
        fin.time_info = { queue_time: 0.0001, prompt_time: 0.001, completion_time: 0.002, total_time: 0.0031, created };
    } else if (includeUsage && mode !== 'omit') {
        for (const c of chunks) c.usage = null;
    }
    if (includeUsage && mode !== 'omit' && mode !== 'on_finish') {
        chunks.push({ ...base(), choices: [], usage: chatUsage(u) });
    }
    chunks[chunks.length - 1] = withPadding(chunks[chunks.length - 1], pad);
    if (b.stop_reason) stopReasons(chunks);
    if (b.obfuscation) {
        const obf = obfuscator(b);
        for (const c of chunks) c.obfuscation = obf();
    }
    const events = chunks.map((c) => ({ data: c }));
    events.push({ data: '[DONE]' });
    return { events };
}

// vLLM: "stop_reason":null after finish_reason in every choice of a chunk.
function stopReasons(chunks) {
    for (const c of chunks) {
        for (const ch of c.choices || []) {
            const out = {};
            for (const [k, v] of Object.entries(ch)) {
                out[k] = v;
                if (k === 'finish_reason') out.stop_reason = null;
            }
            if (!('stop_reason' in out)) out.stop_reason = null;
            for (const k of Object.keys(ch)) delete ch[k];
            Object.assign(ch, out);
        }
    }
}

function completionAnswer(req, b) {
    const model = req.model;
    const u = usageNumbers(b);
    const text = `Hello from ${model}`;
    const id = answerId(b, 'cmpl-mock');
    const created = answerTime(b);
    const usage = { prompt_tokens: u.prompt, completion_tokens: u.completion, total_tokens: u.prompt + u.completion };
    const pad = padding(b);

    if (!req.stream) {
        const body = {
            id, object: 'text_completion', created, model,
            choices: [{ text, index: 0, logprobs: null, finish_reason: 'stop' }],
            usage,
        };
        if (b.usage === 'omit') delete body.usage;
        return { json: withPadding(body, pad) };
    }
    const includeUsage = !!(req.json.stream_options && req.json.stream_options.include_usage === true);
    const chunks = splitText(text, u.completion).map((p) => ({
        id, object: 'text_completion', created, model,
        choices: [{ text: p, index: 0, logprobs: null, finish_reason: null }],
    }));
    chunks.push({ id, object: 'text_completion', created, model, choices: [{ text: '', index: 0, logprobs: null, finish_reason: 'stop' }] });
    if (b.usage === 'every_chunk') {
        chunks.forEach((c, i) => {
            const done = Math.min(i + 1, u.completion);
            c.usage = { prompt_tokens: u.prompt, completion_tokens: done, total_tokens: u.prompt + done };
        });
    } else if (b.usage === 'on_finish') {
        chunks[chunks.length - 1].usage = usage;
    } else if (includeUsage && b.usage !== 'omit') {
        for (const c of chunks) c.usage = null;
        chunks.push({ id, object: 'text_completion', created, model, choices: [], usage });
    }
    chunks[chunks.length - 1] = withPadding(chunks[chunks.length - 1], pad);
    if (b.stop_reason) stopReasons(chunks);
    const events = chunks.map((c) => ({ data: c }));
    events.push({ data: '[DONE]' });
    return { events };
}

function embeddingsAnswer(req, b) {
    const input = req.json.input;
    let count = 1;
    if (Array.isArray(input) && input.length && typeof input[0] !== 'number') count = input.length;
    const dims = Number.isInteger(req.json.dimensions) && req.json.dimensions > 0 ? req.json.dimensions : 8;
    const base64 = req.json.encoding_format === 'base64';
    const data = [];
    for (let i = 0; i < count; i++) {
        // deterministic values, exactly representable as float32
        const vec = Array.from({ length: dims }, (_, j) => Math.fround(Math.sin(i * dims + j + 1) / 2));
        const embedding = base64
            ? Buffer.from(new Float32Array(vec).buffer).toString('base64')
            : vec;
        data.push({ object: 'embedding', index: i, embedding });
    }
    const u = usageNumbers(b);
    const body = { object: 'list', data, model: req.model, usage: { prompt_tokens: u.prompt, total_tokens: u.prompt } };
    if (b.usage === 'omit') delete body.usage;
    return { json: withPadding(body, padding(b)) };
}

function responsesAnswer(req, b) {
    const model = req.model;
    const u = usageNumbers(b);
    const text = `Hello from ${model}`;
    const id = answerId(b, 'resp_mock');
    const msgId = answerId(b, 'msg_mock');
    const createdAt = answerTime(b);
    const pad = padding(b);

    // A hosted-tool item with its own token counters: an extractor that takes
    // the first "usage" it meets, or sums them, gets it wrong.
    const toolItem = (status) => ({
        id: 'mcp_mock_1', type: 'mcp_call', server_label: 'mock', name: 'lookup',
        arguments: '{}', output: status === 'completed' ? '{"ok":true}' : null, error: null, status,
        usage: { input_tokens: 901, output_tokens: 902, total_tokens: 1803 },
    });
    const outputText = (t) => ({ type: 'output_text', text: t, annotations: [], logprobs: [] });
    const message = (status, content) => ({ id: msgId, type: 'message', status, role: 'assistant', content });
    const response = (status, output, usage) => {
        const r = {
            id, object: 'response', created_at: createdAt, status, background: false,
            completed_at: status === 'completed' ? answerTime(b) : null,
            error: null, incomplete_details: null, instructions: req.json.instructions ?? null,
            max_output_tokens: req.json.max_output_tokens ?? null, model, output,
            parallel_tool_calls: true, previous_response_id: null,
            reasoning: { effort: null, summary: null }, service_tier: 'default', store: true,
            temperature: 1, text: { format: { type: 'text' }, verbosity: 'medium' },
            tool_choice: 'auto', tools: [], top_p: 1, truncation: 'disabled',
            usage, user: null, metadata: {},
        };
        if (usage === undefined) delete r.usage;
        return r;
    };
    const finalUsage = b.usage === 'omit' ? undefined : responsesUsage(u);
    const final = () => response('completed', [toolItem('completed'), message('completed', [outputText(text)])], finalUsage);

    if (!req.stream) return { json: withPadding(final(), pad) };

    let sn = 0;
    const ev = (type, fields) => ({ event: type, data: { type, ...fields, sequence_number: sn++ } });
    const pieces = splitText(text, u.completion);
    const events = [
        ev('response.created', { response: response('in_progress', [], null) }),
        ev('response.in_progress', { response: response('in_progress', [], null) }),
        ev('response.output_item.added', { output_index: 0, item: toolItem('in_progress') }),
        ev('response.output_item.done', { output_index: 0, item: toolItem('completed') }),
        ev('response.output_item.added', { output_index: 1, item: message('in_progress', []) }),
        ev('response.content_part.added', { item_id: msgId, output_index: 1, content_index: 0, part: outputText('') }),
        ...pieces.map((p) => ev('response.output_text.delta', { item_id: msgId, output_index: 1, content_index: 0, delta: p, logprobs: [] })),
        ev('response.output_text.done', { item_id: msgId, output_index: 1, content_index: 0, text, logprobs: [] }),
        ev('response.content_part.done', { item_id: msgId, output_index: 1, content_index: 0, part: outputText(text) }),
        ev('response.output_item.done', { output_index: 1, item: message('completed', [outputText(text)]) }),
    ];
    const completed = ev('response.completed', { response: withPadding(final(), pad) });
    events.push(completed);
    return { events };
}

function messagesAnswer(req, b) {
    const model = req.model;
    const u = usageNumbers(b);
    const text = `Hello from ${model}`;
    const id = answerId(b, 'msg_mock');
    const omit = b.usage === 'omit';
    const pad = padding(b);
    const message = (content, stopReason, outputTokens) => {
        const m = {
            id, type: 'message', role: 'assistant', model, content,
            stop_reason: stopReason, stop_sequence: null, usage: anthropicUsage(u, outputTokens),
        };
        if (omit) delete m.usage;
        return m;
    };

    if (!req.stream) {
        return { json: withPadding(message([{ type: 'text', text }], 'end_turn', u.completion), pad) };
    }
    const pieces = splitText(text, u.completion);
    const ev = (type, fields) => ({ event: type, data: { type, ...fields } });
    const delta = { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null } };
    if (!omit) delta.usage = { output_tokens: u.completion };
    const events = [
        ev('message_start', { message: message([], null, 1) }),
        ev('ping', {}),
        ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
        ...pieces.map((p) => ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: p } })),
        ev('content_block_stop', { index: 0 }),
        { event: 'message_delta', data: withPadding(delta, pad) },
        ev('message_stop', {}),
    ];
    return { events };
}

function modelsAnswer(req) {
    const created = 1700000000;
    const ids = ['mock-model-1', 'mock-model-2'];
    if (req.headers['anthropic-version']) {
        return {
            json: {
                data: ids.map((id) => ({ type: 'model', id, display_name: id, created_at: '2024-01-01T00:00:00Z' })),
                has_more: false, first_id: ids[0], last_id: ids[ids.length - 1],
            },
        };
    }
    return { json: { object: 'list', data: ids.map((id) => ({ id, object: 'model', created, owned_by: 'mock' })) } };
}

// Longest suffixes first: /chat/completions also ends in /completions.
const ENDPOINTS = [
    ['/chat/completions', chatAnswer],
    ['/completions', completionAnswer],
    ['/embeddings', embeddingsAnswer],
    ['/responses', responsesAnswer],
    ['/messages', messagesAnswer],
    ['/models', modelsAnswer],
];

// ---------------------------------------------------------------- responding

function rateLimitHeaders(b) {
    const h = {};
    if (b.retry_after !== undefined) h['retry-after'] = b.retry_after;
    if (b.retry_after_ms !== undefined) h['retry-after-ms'] = b.retry_after_ms;
    if (b.reset_requests !== undefined) h['x-ratelimit-reset-requests'] = b.reset_requests;
    if (b.reset_tokens !== undefined) h['x-ratelimit-reset-tokens'] = b.reset_tokens;
    if (b.remaining_requests !== undefined) h['x-ratelimit-remaining-requests'] = b.remaining_requests;
    if (b.remaining_tokens !== undefined) h['x-ratelimit-remaining-tokens'] = b.remaining_tokens;
    if (b.limit_requests !== undefined) h['x-ratelimit-limit-requests'] = b.limit_requests;
    if (b.limit_tokens !== undefined) h['x-ratelimit-limit-tokens'] = b.limit_tokens;
    if (b.an_reset !== undefined) {
        const at = new Date(Date.now() + num(b.an_reset, 0) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
        h['anthropic-ratelimit-requests-reset'] = at;
        h['anthropic-ratelimit-tokens-reset'] = at;
    }
    // raw_*: the string as written, after the computed ones (they win)
    if (b.raw_retry_after !== undefined) h['retry-after'] = b.raw_retry_after;
    if (b.raw_retry_after_ms !== undefined) h['retry-after-ms'] = b.raw_retry_after_ms;
    if (b.raw_reset_requests !== undefined) h['x-ratelimit-reset-requests'] = b.raw_reset_requests;
    if (b.raw_reset_tokens !== undefined) h['x-ratelimit-reset-tokens'] = b.raw_reset_tokens;
    if (b.raw_an_reset !== undefined) {
        h['anthropic-ratelimit-requests-reset'] = b.raw_an_reset;
        h['anthropic-ratelimit-tokens-reset'] = b.raw_an_reset;
    }
    return h;
}

// Byte pieces of text as `chunk` asks: fixed size, random 1..64, or whole.
function splitBytes(buf, chunk) {
    if (chunk === undefined) return [buf];
    const pieces = [];
    let off = 0;
    while (off < buf.length) {
        const n = chunk === 'random' ? 1 + Math.floor(Math.random() * 64) : Math.max(1, num(chunk, buf.length));
        pieces.push(buf.subarray(off, off + n));
        off += n;
    }
    return pieces;
}

function gone(res) {
    return res.destroyed || res.writableEnded || !res.socket || res.socket.destroyed;
}

// Writes the pieces one socket write at a time, chunk_delay ms apart.
async function writePieces(res, pieces, delay) {
    for (let i = 0; i < pieces.length; i++) {
        if (gone(res)) return false;
        if (i > 0 && delay > 0) await sleep(delay);
        if (gone(res)) return false;
        res.write(pieces[i]);
    }
    return !gone(res);
}

// Waits for /__mock/release (or 30 s, or the client going away).
function gateWait(res) {
    return new Promise((resolve) => {
        const done = () => { clearTimeout(timer); gateWaiters.delete(done); resolve(); };
        const timer = setTimeout(done, 30000);
        gateWaiters.add(done);
        res.on('close', done);
    });
}

function destroyAfterFlush(res) {
    // give the kernel the bytes written so far, then cut the connection
    setTimeout(() => { if (res.socket) res.socket.destroy(); }, 20);
}

function resetAfterFlush(res) {
    // the same, with a TCP RST instead of a FIN
    setTimeout(() => {
        const s = res.socket;
        if (!s || s.destroyed) return;
        if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
        else s.destroy();
    }, 20);
}

// The provider's own error event in the endpoint's dialect (`error_mid`).
function providerErrorEvent(path, events) {
    if (path.endsWith('/messages')) {
        return { event: 'error', data: { type: 'error', error: { type: 'overloaded_error', message: 'mock provider error mid-stream' } } };
    }
    if (path.endsWith('/responses')) {
        return {
            event: 'error',
            data: { type: 'error', code: 'server_error', message: 'mock provider error mid-stream', param: null, sequence_number: events.length },
        };
    }
    return { data: { error: { message: 'mock provider error mid-stream', type: 'server_error', param: null, code: 'mock_stream_error' } } };
}

async function respond(ctx, res) {
    const { b, dialect, path } = ctx;
    const common = {
        'x-mock-port': String(ctx.port),
        'x-mock-model': headerSafe(ctx.model),
        'x-mock-key': headerSafe(ctx.key),
        'x-request-id': nextId('req_mock_'),
        ...rateLimitHeaders(b),
    };

    // fail_first=N: the failure tokens apply to the first N requests that carry
    // the same string on this port; later ones get the normal answer.
    let failing = true;
    if (b.failSource !== null) {
        const k = `${ctx.port}|${b.failSource}`;
        const seen = (failCounters.get(k) || 0) + 1;
        failCounters.set(k, seen);
        failing = seen <= num(b.fail_first, 0);
    }

    if (failing && b.reset) {
        res.socket.destroy();
        return;
    }
    if (b.ttfb !== undefined) {
        await sleep(num(b.ttfb, 0));
        if (gone(res)) return;
    }

    let status = 200;
    let answer;
    if (failing && b.status !== undefined) {
        status = num(b.status, 500);
        answer = { json: errorBody(dialect, status, `mock error ${status}`) };
    } else {
        const ep = ENDPOINTS.find(([suffix]) => path.endsWith(suffix));
        if (ep) {
            answer = ep[1](ctx, b);
        } else {
            status = 404;
            answer = { json: errorBody(dialect, 404, `mock has no endpoint ${path}`) };
        }
    }

    const delay = num(b.chunk_delay, 1);
    const midReset = failing && b.reset_mid;

    const cut = failing && (b.cut_mid || b.cut_partial);

    if (answer.json !== undefined) {
        const body = Buffer.from(toJson(answer.json, b));
        res.writeHead(status, { ...common, 'content-type': 'application/json', 'content-length': body.length });
        if (midReset || cut) {
            res.write(body.subarray(0, Math.max(1, Math.floor(body.length / 2))));
            if (midReset) destroyAfterFlush(res);
            else resetAfterFlush(res);
            return;
        }
        if (await writePieces(res, splitBytes(body, b.chunk), delay)) res.end();
        return;
    }

    // Event stream: no Content-Length, so HTTP/1.1 clients get chunked encoding.
    let events = answer.events;
    const halfOf = (n) => Math.max(1, Math.floor(n / 2));
    if (failing && b.error_mid) {
        const h = halfOf(events.length);
        events = [...events.slice(0, h), providerErrorEvent(path, events.slice(0, h))];
    } else if (failing && b.no_terminal && events.length > 1) {
        events = events.slice(0, -1);
    }
    const texts = sseText(events, b);
    res.writeHead(status, { ...common, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    if (midReset) {
        const half = texts.slice(0, halfOf(texts.length)).join('');
        res.write(half);
        destroyAfterFlush(res);
        return;
    }
    // Without `chunk`, every event is its own write; with it, the byte stream
    // is cut at arbitrary places regardless of event boundaries.
    const piecesOf = (list) => (b.chunk === undefined
        ? list.map((t) => Buffer.from(t))
        : splitBytes(Buffer.from(list.join('')), b.chunk));
    if (cut) {
        const h = halfOf(texts.length);
        const sent = texts.slice(0, h);
        if (b.cut_partial && h < texts.length) {
            // into the middle of the next event's data line
            const next = texts[h];
            const d = Math.max(0, next.lastIndexOf('data'));
            sent.push(next.slice(0, d + Math.max(1, Math.floor((next.length - d) / 2))));
        }
        if (await writePieces(res, piecesOf(sent), delay)) resetAfterFlush(res);
        return;
    }
    // phases: the gate holds everything after the first event until
    // /__mock/release; stall_mid holds the second half for MS ms
    const phases = [];
    if (b.gate) {
        phases.push({ list: texts.slice(0, 1) }, { list: texts.slice(1), wait: () => gateWait(res) });
    } else if (failing && b.stall_mid !== undefined && texts.length > 1) {
        const h = halfOf(texts.length);
        const ms = num(b.stall_mid, 0);
        phases.push({ list: texts.slice(0, h) }, { list: texts.slice(h), wait: () => sleep(ms) });
    } else {
        phases.push({ list: texts });
    }
    for (const phase of phases) {
        if (phase.wait) {
            await phase.wait();
            if (gone(res)) return;
            await sleep(delay);
        }
        if (!(await writePieces(res, piecesOf(phase.list), delay))) return;
    }
    res.end();
}

// ---------------------------------------------------------------- server

function sendJson(res, status, obj) {
    const body = Buffer.from(JSON.stringify(obj));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
}

function control(req, res, path) {
    if (path === '/__mock/requests' && req.method === 'GET') return sendJson(res, 200, requests);
    if (path === '/__mock/requests' && req.method === 'DELETE') {
        const n = requests.length;
        requests = [];
        failCounters.clear();
        return sendJson(res, 200, { cleared: n });
    }
    if (path === '/__mock/release' && req.method === 'POST') return sendJson(res, 200, { released: releaseGates() });
    return sendJson(res, 404, { error: `unknown control endpoint ${req.method} ${path}` });
}

function rawHeaderPairs(raw) {
    const pairs = [];
    for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i], raw[i + 1]]);
    return pairs;
}

function handler(port) {
    return (req, res) => {
        const parts = [];
        req.on('data', (c) => parts.push(c));
        req.on('error', () => {});
        req.on('end', () => {
            const path = req.url.split('?')[0];
            if (path.startsWith('/__mock/')) return control(req, res, path);

            const body = Buffer.concat(parts).toString('utf8');
            let json = null;
            try { json = JSON.parse(body); } catch { json = null; }
            const key = bearerKey(req.headers);
            const model = json && typeof json.model === 'string' ? json.model : '';
            requests.push({
                seq: ++seq, time: Date.now() / 1000, port, method: req.method, url: req.url,
                headers: req.headers, body, json, key,
                // every header line as received, name case kept, repeats
                // not joined: [[name, value], ...]
                raw_headers: rawHeaderPairs(req.rawHeaders),
            });
            const ctx = {
                port, path, headers: req.headers, key, model,
                json: json && typeof json === 'object' ? json : {},
                stream: !!(json && json.stream === true),
                dialect: path.endsWith('/messages') ? 'anthropic' : 'openai',
                b: behaviour(model, key, req.headers['x-mock']),
            };
            respond(ctx, res).catch((err) => {
                process.stderr.write(`mock provider: ${err.stack || err}\n`);
                if (!res.headersSent) sendJson(res, 500, { error: { message: String(err), type: 'mock_bug' } });
                else if (res.socket) res.socket.destroy();
            });
        });
    };
}

function main() {
    const opts = parseArgs(process.argv.slice(2));
    let listening = 0;
    for (const port of opts.ports) {
        const server = http.createServer(handler(port));
        // nginx keeps upstream connections alive; never close them first, or a
        // request sent on a connection we are closing fails spuriously.
        server.keepAliveTimeout = 600000;
        server.headersTimeout = 610000;
        server.requestTimeout = 0;
        server.on('clientError', (err, socket) => socket.destroy());
        server.on('error', (err) => die(`port ${port}: ${err.message}`));
        server.listen(port, '127.0.0.1', () => {
            listening += 1;
            if (listening === opts.ports.length && opts.pidFile) {
                fs.writeFileSync(opts.pidFile, `${process.pid}\n`);
            }
        });
    }
    const quit = () => {
        if (opts.pidFile) { try { fs.unlinkSync(opts.pidFile); } catch { /* already gone */ } }
        process.exit(0);
    };
    process.on('SIGTERM', quit);
    process.on('SIGINT', quit);
}

main();
