// Client keys with the official SDKs, unchanged: the gateway's client key
// is the SDK's apiKey (OpenAI sends it as Authorization: Bearer, Anthropic
// as x-api-key). Gateway config: see t/sdk.t (the /auth/ locations have
// conductor_auth on; client sdk-team may use `fast` and `claude-fast`,
// with two keys; client sdk-poor has a budget of one micro-dollar a day).

import test from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

import { BASE, TEST_TIMEOUT, newId, opts, mockSawOne } from './lib.mjs';

const TEAM_KEYS = ['sdk-client-key-1', 'sdk-client-key-2'];
const POOR_KEY = 'sdk-poor-key';
const T = { timeout: TEST_TIMEOUT };

function openai(apiKey) {
    return new OpenAI({ baseURL: `${BASE}/auth/v1`, apiKey, maxRetries: 0, timeout: 30000 });
}

function anthropic(apiKey) {
    return new Anthropic({ baseURL: `${BASE}/auth`, apiKey, maxRetries: 0, timeout: 30000 });
}

const MESSAGES = [{ role: 'user', content: 'Say hello.' }];

// no client key in any header the provider got
function assertNoClientKeyUpstream(rec) {
    const all = JSON.stringify(rec.headers);
    for (const k of TEAM_KEYS) assert.ok(!all.includes(k), `the client key ${k} went upstream`);
}

test('OpenAI SDK: a client key as apiKey, each of a rotation pair, JSON and stream', T, async () => {
    for (const key of TEAM_KEYS) {
        const id = newId();
        const r = await openai(key).chat.completions.create(
            { model: 'fast', messages: MESSAGES }, opts(id));
        assert.match(r.choices[0].message.content, /Hello from mock-fast-8b/);
        const rec = await mockSawOne(id);
        assert.equal(rec.headers.authorization, 'Bearer sdk-key-1', 'the provider key upstream');
        assertNoClientKeyUpstream(rec);
    }
    const id = newId();
    const stream = await openai(TEAM_KEYS[0]).chat.completions.create(
        { model: 'fast', messages: MESSAGES, stream: true }, opts(id));
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.match(text, /Hello from mock-fast-8b/);
});

test('OpenAI SDK: a wrong key is an AuthenticationError with invalid_api_key', T, async () => {
    await assert.rejects(
        openai('sdk-wrong-key').chat.completions.create({ model: 'fast', messages: MESSAGES }),
        (err) => {
            assert.ok(err instanceof OpenAI.AuthenticationError, `an AuthenticationError, got ${err?.constructor?.name}`);
            assert.equal(err.status, 401);
            assert.equal(err.code, 'invalid_api_key');
            return true;
        });
});

test('OpenAI SDK: a model outside the client is a PermissionDeniedError', T, async () => {
    await assert.rejects(
        openai(TEAM_KEYS[1]).chat.completions.create({ model: 'priced', messages: MESSAGES }),
        (err) => {
            assert.ok(err instanceof OpenAI.PermissionDeniedError, `a PermissionDeniedError, got ${err?.constructor?.name}`);
            assert.equal(err.status, 403);
            assert.match(err.message, /client "sdk-team" may not use the model "priced"/);
            return true;
        });
});

test('OpenAI SDK: models.list shows the client its models only', T, async () => {
    const ids = [];
    for await (const m of openai(TEAM_KEYS[0]).models.list()) ids.push(m.id);
    assert.deepEqual(ids.sort(), ['claude-fast', 'fast']);
});

test('OpenAI SDK: a spent budget is a RateLimitError with insufficient_quota', T, async () => {
    const c = openai(POOR_KEY);
    const r = await c.chat.completions.create({ model: 'priced', messages: MESSAGES });
    assert.ok(r.choices.length, 'the first request is admitted');
    await assert.rejects(
        c.chat.completions.create({ model: 'priced', messages: MESSAGES }),
        (err) => {
            assert.ok(err instanceof OpenAI.RateLimitError, `a RateLimitError, got ${err?.constructor?.name}`);
            assert.equal(err.status, 429);
            assert.equal(err.code, 'insufficient_quota');
            assert.equal(err.type, 'insufficient_quota');
            assert.match(err.message, /client "sdk-poor" has spent its budget per=day of 0\.000001 USD: it resets at \d{4}-\d\d-\d\dT00:00:00Z/);
            return true;
        });
});

test('Anthropic SDK: a client key as apiKey (x-api-key), JSON and stream', T, async () => {
    const id = newId();
    const msg = await anthropic(TEAM_KEYS[1]).messages.create(
        { model: 'claude-fast', max_tokens: 32, messages: MESSAGES }, opts(id));
    assert.equal(msg.type, 'message');
    const rec = await mockSawOne(id);
    assert.equal(rec.headers['x-api-key'], 'sdk-ant-key-1', 'the provider key upstream');
    assertNoClientKeyUpstream(rec);

    const stream = anthropic(TEAM_KEYS[0]).messages.stream(
        { model: 'claude-fast', max_tokens: 32, messages: MESSAGES });
    const final = await stream.finalMessage();
    assert.equal(final.type, 'message');
});

test('Anthropic SDK: a wrong key is an AuthenticationError; a model outside the client a PermissionDeniedError', T, async () => {
    await assert.rejects(
        anthropic('sdk-wrong-key').messages.create({ model: 'claude-fast', max_tokens: 8, messages: MESSAGES }),
        (err) => {
            assert.ok(err instanceof Anthropic.AuthenticationError, `an AuthenticationError, got ${err?.constructor?.name}`);
            assert.equal(err.status, 401);
            assert.equal(err.error?.error?.type, 'authentication_error');
            return true;
        });
    await assert.rejects(
        anthropic(TEAM_KEYS[0]).messages.create({ model: 'priced', max_tokens: 8, messages: MESSAGES }),
        (err) => {
            assert.ok(err instanceof Anthropic.PermissionDeniedError, `a PermissionDeniedError, got ${err?.constructor?.name}`);
            assert.equal(err.status, 403);
            return true;
        });
});
