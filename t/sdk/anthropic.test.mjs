// The official Anthropic SDK against the gateway: the client changes only its
// base URL and holds a key that must never reach the provider.
// Gateway config: see t/sdk.t (alias `claude-fast` -> provider mockant, model
// mock-claude-haiku, key a1 = sdk-ant-key-1).

import test from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';

import {
    BASE, CLIENT_KEY, TEST_TIMEOUT, MOCK_PROMPT_TOKENS, MOCK_COMPLETION_TOKENS,
    newId, opts, mockSaw, mockSawOne, assertNoClientKey, assertNoSecretInHeaders,
} from './lib.mjs';

const client = new Anthropic({ baseURL: BASE, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 30000 });

const MODEL = 'claude-fast';
const UPSTREAM_MODEL = 'mock-claude-haiku';
const PROVIDER_KEY = 'sdk-ant-key-1';
const TEXT = `Hello from ${UPSTREAM_MODEL}`;
const MESSAGES = [{ role: 'user', content: 'Say hello.' }];
const T = { timeout: TEST_TIMEOUT };

async function upstreamOk(id) {
    const rec = await mockSawOne(id);
    assert.equal(rec.method, 'POST');
    assert.ok(rec.url.split('?')[0].endsWith('/v1/messages'), `upstream path ${rec.url} ends in /v1/messages`);
    assert.equal(rec.json?.model, UPSTREAM_MODEL, 'the alias was rewritten to the provider model');
    assert.equal(rec.headers['x-api-key'], PROVIDER_KEY, 'the provider key was injected');
    assert.equal(rec.key, PROVIDER_KEY);
    assert.ok(rec.headers['anthropic-version'], 'anthropic-version went upstream');
    assertNoClientKey(rec);
    return rec;
}

function assertUsage(usage) {
    assert.ok(usage, 'usage is present');
    assert.equal(usage.input_tokens, MOCK_PROMPT_TOKENS);
    assert.equal(usage.output_tokens, MOCK_COMPLETION_TOKENS);
}

test('messages.create, non-streaming', T, async () => {
    const id = newId();
    const { data: m, response } = await client.messages
        .create({ model: MODEL, max_tokens: 64, system: 'Be terse.', messages: MESSAGES }, opts(id))
        .withResponse();
    assert.equal(m.type, 'message');
    assert.equal(m.role, 'assistant');
    assert.equal(m.content.length, 1);
    assert.equal(m.content[0].type, 'text');
    assert.equal(m.content[0].text, TEXT);
    assert.equal(m.stop_reason, 'end_turn');
    assertUsage(m.usage);
    assertNoSecretInHeaders(response.headers, [PROVIDER_KEY, 'sdk-key-1']);
    const rec = await upstreamOk(id);
    assert.deepEqual(rec.json.messages, MESSAGES, 'the messages went upstream unchanged');
    assert.equal(rec.json.max_tokens, 64);
    assert.equal(rec.json.system, 'Be terse.');
});

for (const [label, mock] of [['', undefined], [', 1-byte writes', 'chunk=1']]) {
    test(`messages.stream: finalMessage() text and usage${label}`, T, async () => {
        const id = newId();
        const stream = client.messages.stream({ model: MODEL, max_tokens: 64, messages: MESSAGES }, opts(id, mock));
        let text = '';
        stream.on('text', (delta) => { text += delta; });
        const m = await stream.finalMessage();
        assert.equal(text, TEXT, 'the text deltas add up');
        assert.equal(m.content[0].type, 'text');
        assert.equal(m.content[0].text, TEXT);
        assert.equal(m.stop_reason, 'end_turn');
        assertUsage(m.usage);
        const rec = await upstreamOk(id);
        assert.equal(rec.json.stream, true);
    });
}

test('messages.create with stream: true, raw events', T, async () => {
    const id = newId();
    const stream = await client.messages.create(
        { model: MODEL, max_tokens: 64, messages: MESSAGES, stream: true }, opts(id));
    const types = [];
    let text = '';
    let output = null;
    let input = null;
    for await (const ev of stream) {
        types.push(ev.type);
        if (ev.type === 'message_start') input = ev.message.usage.input_tokens;
        if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
        if (ev.type === 'message_delta') output = ev.usage.output_tokens;
    }
    assert.equal(types[0], 'message_start');
    assert.equal(types[types.length - 1], 'message_stop');
    assert.equal(text, TEXT);
    assert.equal(input, MOCK_PROMPT_TOKENS);
    assert.equal(output, MOCK_COMPLETION_TOKENS);
    await upstreamOk(id);
});

test('a messages body without "model" is refused with 400, Anthropic-shaped, nothing sent upstream', T, async () => {
    const id = newId();
    const err = await client.post('/v1/messages', {
        body: { max_tokens: 64, messages: MESSAGES }, ...opts(id),
    }).then(() => null, (e) => e);
    assert.ok(err instanceof Anthropic.APIError, `an APIError, got ${err}`);
    assert.ok(err instanceof Anthropic.BadRequestError);
    assert.equal(err.status, 400);
    assert.equal(err.error?.type, 'error', 'the Anthropic error envelope');
    assert.equal(err.error?.error?.type, 'invalid_request_error');
    assert.equal(err.type, 'invalid_request_error');
    assert.match(err.error.error.message, /model/);
    assert.deepEqual(await mockSaw(id), [], 'nothing was sent upstream');
});

test('a messages body that is not JSON is refused with 400, Anthropic-shaped', T, async () => {
    const id = newId();
    const res = await fetch(`${BASE}/v1/messages`, {
        method: 'POST',
        headers: {
            'content-type': 'application/json', 'x-api-key': CLIENT_KEY,
            'anthropic-version': '2023-06-01', 'x-sdk-test-id': id,
        },
        body: '{"model": "claude-fast", "max_tokens": ',
    });
    assert.equal(res.status, 400);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const body = await res.json();
    assert.equal(body.type, 'error');
    assert.equal(body.error?.type, 'invalid_request_error');
    assert.equal(typeof body.error.message, 'string');
    assert.deepEqual(await mockSaw(id), [], 'nothing was sent upstream');
});
