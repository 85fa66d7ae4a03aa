'use strict';
// A fast chat-stream provider for t/050-stream-slow.t: the chat stream of the
// mock (t/mock/provider.js) with completion_tokens=N, in the same bytes, but
// rendered once and served from memory, so many large streams at once are
// limited by the readers and not by the provider building them. The id and
// created time are fixed: every request for the same stream gets the same
// bytes.
//
//   node t/slow/provider.js --port-file FILE
//
// Listens on 127.0.0.1, on a port the kernel picks, written to FILE once it
// listens. POST .../chat/completions with "stream":true: the key (Bearer) or
// the model may carry completion_tokens=N (default 5); include_usage adds the
// usage-only chunk. GET /__fast/requests: what it received; DELETE clears.

const http = require('http');
const fs = require('fs');

const args = process.argv.slice(2);
const portFile = args[args.indexOf('--port-file') + 1];
if (args.indexOf('--port-file') < 0 || !portFile) {
    process.stderr.write('usage: provider.js --port-file FILE\n');
    process.exit(2);
}

let requests = [];
const cache = new Map();

function tokens(str) {
    const m = /(?:^|;)\s*completion_tokens=(\d+)/.exec(str || '');
    return m ? Number(m[1]) : null;
}

function splitText(text, n) {
    const pieces = [];
    for (let i = 0; i < n; i++) {
        pieces.push(text.slice(Math.floor((i * text.length) / n), Math.floor(((i + 1) * text.length) / n)));
    }
    return pieces;
}

// The mock's chat stream (no usage mode, no padding), as one buffer.
function chatStream(model, n, includeUsage) {
    const key = `${model}|${n}|${includeUsage}`;
    if (cache.has(key)) return cache.get(key);
    const id = 'chatcmpl-mockfast';
    const created = 1700000000;
    const base = () => ({ id, object: 'chat.completion.chunk', created, model, service_tier: 'default', system_fingerprint: 'fp_mock' });
    const chunks = [];
    chunks.push({ ...base(), choices: [{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }] });
    for (const p of splitText(`Hello from ${model}`, Math.max(1, n))) {
        chunks.push({ ...base(), choices: [{ index: 0, delta: { content: p }, logprobs: null, finish_reason: null }] });
    }
    chunks.push({ ...base(), choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }] });
    if (includeUsage) {
        for (const c of chunks) c.usage = null;
        chunks.push({
            ...base(), choices: [],
            usage: {
                prompt_tokens: 12, completion_tokens: n, total_tokens: 12 + n,
                prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
                completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
            },
        });
    }
    const text = chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join('') + 'data: [DONE]\n\n';
    const buf = Buffer.from(text);
    cache.set(key, buf);
    return buf;
}

// 64 KB writes, waiting for 'drain' when the socket is full, as a server that
// streams as fast as the connection takes it
async function send(res, buf) {
    for (let off = 0; off < buf.length; off += 65536) {
        if (res.destroyed || !res.socket || res.socket.destroyed) return;
        if (!res.write(buf.subarray(off, off + 65536))) {
            await new Promise((resolve) => { res.once('drain', resolve); res.once('close', resolve); });
        }
    }
    res.end();
}

function json(res, status, obj) {
    const body = Buffer.from(JSON.stringify(obj));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
}

const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('error', () => {});
    req.on('end', () => {
        const path = req.url.split('?')[0];
        if (path === '/__fast/requests') {
            if (req.method === 'DELETE') { requests = []; return json(res, 200, { cleared: true }); }
            return json(res, 200, requests);
        }
        const body = Buffer.concat(parts).toString('utf8');
        let j = null;
        try { j = JSON.parse(body); } catch { j = null; }
        requests.push({ url: req.url, method: req.method, headers: req.headers, body, json: j });
        if (req.method !== 'POST' || !path.endsWith('/chat/completions') || !j || j.stream !== true) {
            return json(res, 404, { error: { message: `no such stream: ${req.method} ${path}`, type: 'invalid_request_error' } });
        }
        const auth = /^\s*Bearer\s+(.*?)\s*$/i.exec(req.headers.authorization || '');
        const model = typeof j.model === 'string' ? j.model : '';
        const n = tokens(auth && auth[1]) ?? tokens(model) ?? 5;
        const includeUsage = !!(j.stream_options && j.stream_options.include_usage === true);
        const buf = chatStream(model, n, includeUsage);
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.flushHeaders();
        send(res, buf).catch(() => res.destroy());
    });
});
server.keepAliveTimeout = 600000;
server.headersTimeout = 610000;
server.requestTimeout = 0;
server.on('clientError', (err, socket) => socket.destroy());
server.listen(0, '127.0.0.1', () => {
    fs.writeFileSync(`${portFile}.tmp`, `${server.address().port}\n`);
    fs.renameSync(`${portFile}.tmp`, portFile);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
