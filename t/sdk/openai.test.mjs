// The official OpenAI SDK against the gateway: the client changes only its
// base URL and holds a key that must never reach the provider.
// Gateway config: see t/sdk.t (alias `fast` -> provider mockoai, model
// mock-fast-8b, key k1 = sdk-key-1; alias `claude-fast` -> mockant).

import test from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import {
    BASE, CLIENT_KEY, TEST_TIMEOUT, MOCK_PROMPT_TOKENS, MOCK_COMPLETION_TOKENS,
    newId, opts, mockSaw, mockSawOne, assertNoClientKey, assertNoSecretInHeaders, mockVector,
} from './lib.mjs';

const client = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 30000 });

const MODEL = 'fast';
const UPSTREAM_MODEL = 'mock-fast-8b';
const PROVIDER_KEY = 'sdk-key-1';
const TEXT = `Hello from ${UPSTREAM_MODEL}`;
const MESSAGES = [
    { role: 'system', content: 'You are a terse assistant.' },
    { role: 'user', content: 'Say hello.' },
];
const T = { timeout: TEST_TIMEOUT };

// What every upstream request of the openai dialect must look like.
async function upstreamOk(id, path) {
    const rec = await mockSawOne(id);
    assert.equal(rec.method, 'POST');
    assert.ok(rec.url.split('?')[0].endsWith(`/v1${path}`), `upstream path ${rec.url} ends in /v1${path}`);
    assert.equal(rec.json?.model, UPSTREAM_MODEL, 'the alias was rewritten to the provider model');
    assert.equal(rec.headers.authorization, `Bearer ${PROVIDER_KEY}`, 'the provider key was injected');
    assert.equal(rec.key, PROVIDER_KEY);
    assertNoClientKey(rec);
    return rec;
}

async function collectChat(stream) {
    const chunks = [];
    let text = '';
    for await (const chunk of stream) {
        chunks.push(chunk);
        text += chunk.choices[0]?.delta?.content ?? '';
    }
    return { chunks, text };
}

function assertUsage(usage) {
    assert.ok(usage, 'usage is present');
    assert.equal(usage.prompt_tokens, MOCK_PROMPT_TOKENS);
    assert.equal(usage.completion_tokens, MOCK_COMPLETION_TOKENS);
    assert.equal(usage.total_tokens, MOCK_PROMPT_TOKENS + MOCK_COMPLETION_TOKENS);
}

// ---------------------------------------------------------------- chat

test('chat.completions.create, non-streaming', T, async () => {
    const id = newId();
    const r = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 32 }, opts(id));
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, TEXT);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assertUsage(r.usage);
    assert.equal(r.usage.prompt_tokens_details?.cached_tokens, 0);
    const rec = await upstreamOk(id, '/chat/completions');
    assert.deepEqual(rec.json.messages, MESSAGES, 'the messages went upstream unchanged');
    assert.equal(rec.json.max_tokens, 32);
});

test('response headers name provider and key, never the secret', T, async () => {
    const id = newId();
    const { data, response } = await client.chat.completions
        .create({ model: MODEL, messages: MESSAGES }, opts(id))
        .withResponse();
    assert.equal(data.choices[0].message.content, TEXT);
    assert.equal(response.headers.get('x-conductor-provider'), 'mockoai');
    assert.equal(response.headers.get('x-conductor-key'), 'k1');
    assert.equal(response.headers.get('x-conductor-attempts'), '1');
    assertNoSecretInHeaders(response.headers, [PROVIDER_KEY, 'sdk-ant-key-1']);
    await upstreamOk(id, '/chat/completions');
});

test('chat.completions.create, streaming', T, async () => {
    const id = newId();
    const stream = await client.chat.completions.create(
        { model: MODEL, messages: MESSAGES, stream: true }, opts(id));
    const { chunks, text } = await collectChat(stream);
    assert.equal(text, TEXT);
    assert.ok(chunks.length >= 3, `several chunks, got ${chunks.length}`);
    for (const c of chunks) assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(chunks.filter((c) => c.choices[0]?.finish_reason === 'stop').length, 1,
        'one chunk has finish_reason stop');
    const rec = await upstreamOk(id, '/chat/completions');
    assert.equal(rec.json.stream, true);
});

test('chat stream split into 1-byte writes, with include_usage', T, async () => {
    const id = newId();
    const stream = await client.chat.completions.create(
        { model: MODEL, messages: MESSAGES, stream: true, stream_options: { include_usage: true } },
        opts(id, 'chunk=1'));
    const { chunks, text } = await collectChat(stream);
    assert.equal(text, TEXT);
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, [], 'the usage chunk has no choices');
    assertUsage(last.usage);
    await upstreamOk(id, '/chat/completions');
});

test('chat stream with stream_options.include_usage: the last chunk carries usage', T, async () => {
    const id = newId();
    const stream = await client.chat.completions.create(
        { model: MODEL, messages: MESSAGES, stream: true, stream_options: { include_usage: true } },
        opts(id));
    const { chunks, text } = await collectChat(stream);
    assert.equal(text, TEXT);
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, [], 'the usage chunk has no choices');
    assertUsage(last.usage);
    assert.equal(chunks.filter((c) => c.choices.length === 0).length, 1, 'exactly one usage-only chunk');
    const rec = await upstreamOk(id, '/chat/completions');
    assert.equal(rec.json.stream_options?.include_usage, true);
});

// The gateway asks the provider for usage (for its accounting) and must take
// the extra usage-only chunk out again for a client that did not ask for it.
for (const [label, mock] of [['', undefined], [', 1-byte writes', 'chunk=1']]) {
    test(`chat stream without include_usage: no usage-only chunk reaches the client${label}`, T, async () => {
        const id = newId();
        const stream = await client.chat.completions.create(
            { model: MODEL, messages: MESSAGES, stream: true }, opts(id, mock));
        const { chunks, text } = await collectChat(stream);
        assert.equal(text, TEXT, 'no content was lost');
        const empty = chunks.filter((c) => !c.choices || c.choices.length === 0);
        assert.equal(empty.length, 0,
            `no chunk with empty choices reaches the client, got ${JSON.stringify(empty)}`);
        assert.equal(chunks.filter((c) => c.choices[0]?.finish_reason === 'stop').length, 1);
        const rec = await upstreamOk(id, '/chat/completions');
        assert.equal(rec.json.stream_options?.include_usage, true,
            'the gateway asked the provider for usage');
    });
}

// ---------------------------------------------------------------- others

test('completions.create (legacy), non-streaming', T, async () => {
    const id = newId();
    const r = await client.completions.create({ model: MODEL, prompt: 'Say hello.', max_tokens: 16 }, opts(id));
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices[0].text, TEXT);
    assertUsage(r.usage);
    await upstreamOk(id, '/completions');
});

test('embeddings.create, base64 on the wire, decoded by the SDK', T, async () => {
    const id = newId();
    const r = await client.embeddings.create({ model: MODEL, input: ['hello', 'world'] }, opts(id));
    assert.equal(r.object, 'list');
    assert.equal(r.data.length, 2);
    for (const [i, item] of r.data.entries()) {
        assert.equal(item.index, i);
        assert.deepEqual(Array.from(item.embedding), mockVector(i), `vector ${i} decodes to the mock's numbers`);
    }
    assert.equal(r.usage.prompt_tokens, MOCK_PROMPT_TOKENS);
    assert.equal(r.usage.total_tokens, MOCK_PROMPT_TOKENS);
    const rec = await upstreamOk(id, '/embeddings');
    assert.equal(rec.json.encoding_format, 'base64', 'the SDK default base64 format went upstream');
    assert.deepEqual(rec.json.input, ['hello', 'world']);
});

test('responses.create, non-streaming', T, async () => {
    const id = newId();
    const r = await client.responses.create({ model: MODEL, input: 'Say hello.' }, opts(id));
    assert.equal(r.object, 'response');
    assert.equal(r.status, 'completed');
    assert.equal(r.output_text, TEXT);
    assert.equal(r.usage.input_tokens, MOCK_PROMPT_TOKENS);
    assert.equal(r.usage.output_tokens, MOCK_COMPLETION_TOKENS);
    assert.equal(r.usage.total_tokens, MOCK_PROMPT_TOKENS + MOCK_COMPLETION_TOKENS);
    await upstreamOk(id, '/responses');
});

test('responses.create, streaming: response.completed carries usage', T, async () => {
    const id = newId();
    const stream = await client.responses.create({ model: MODEL, input: 'Say hello.', stream: true }, opts(id));
    const types = [];
    let text = '';
    let completed = null;
    for await (const ev of stream) {
        types.push(ev.type);
        if (ev.type === 'response.output_text.delta') text += ev.delta;
        if (ev.type === 'response.completed') completed = ev;
    }
    assert.equal(types[0], 'response.created');
    assert.equal(types[types.length - 1], 'response.completed');
    assert.equal(text, TEXT);
    assert.ok(completed, 'a response.completed event arrived');
    assert.equal(completed.response.status, 'completed');
    const finalText = completed.response.output
        .filter((o) => o.type === 'message').flatMap((o) => o.content).map((c) => c.text).join('');
    assert.equal(finalText, TEXT);
    assert.equal(completed.response.usage.input_tokens, MOCK_PROMPT_TOKENS);
    assert.equal(completed.response.usage.output_tokens, MOCK_COMPLETION_TOKENS);
    assert.equal(completed.response.usage.total_tokens, MOCK_PROMPT_TOKENS + MOCK_COMPLETION_TOKENS);
    const rec = await upstreamOk(id, '/responses');
    assert.equal(rec.json.stream, true);
});

test('models.list lists the aliases', T, async () => {
    const ids = [];
    for await (const m of client.models.list()) {
        assert.equal(m.object, 'model');
        ids.push(m.id);
    }
    assert.ok(ids.includes('fast'), `"fast" in ${JSON.stringify(ids)}`);
    assert.ok(ids.includes('claude-fast'), `"claude-fast" in ${JSON.stringify(ids)}`);
    assert.ok(!ids.includes(UPSTREAM_MODEL), 'provider model names are not listed as aliases');
});

// ---------------------------------------------------------------- errors

test('a body without "model" is refused with 400, OpenAI-shaped, nothing sent upstream', T, async () => {
    const id = newId();
    const err = await client.post('/chat/completions', { body: { messages: MESSAGES }, ...opts(id) })
        .then(() => null, (e) => e);
    assert.ok(err instanceof OpenAI.APIError, `an APIError, got ${err}`);
    assert.ok(err instanceof OpenAI.BadRequestError);
    assert.equal(err.status, 400);
    assert.equal(typeof err.error?.message, 'string');
    assert.match(err.error.message, /model/);
    assert.equal(err.error.type, 'invalid_request_error');
    assert.deepEqual(await mockSaw(id), [], 'nothing was sent upstream');
});

test('a body that is not JSON is refused with 400, OpenAI-shaped', T, async () => {
    const id = newId();
    const res = await fetch(`${BASE}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}`, 'x-sdk-test-id': id },
        body: '{"model": "fast", "messages": [',
    });
    assert.equal(res.status, 400);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const body = await res.json();
    assert.equal(typeof body.error?.message, 'string');
    assert.equal(body.error.type, 'invalid_request_error');
    assert.ok(!('type' in body && body.type === 'error'), 'not the Anthropic shape');
    assert.deepEqual(await mockSaw(id), [], 'nothing was sent upstream');
});

test('an unknown endpoint is a 404 APIError, nothing sent upstream', T, async () => {
    const id = newId();
    const err = await client.post('/no-such-endpoint', { body: { model: MODEL }, ...opts(id) })
        .then(() => null, (e) => e);
    assert.ok(err instanceof OpenAI.NotFoundError, `a NotFoundError, got ${err}`);
    assert.equal(err.status, 404);
    assert.equal(typeof err.error?.message, 'string');
    assert.deepEqual(await mockSaw(id), [], 'nothing was sent upstream');
});
