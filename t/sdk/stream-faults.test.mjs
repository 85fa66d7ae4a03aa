// Broken streams through the official SDKs, with only the base URL changed:
// when the provider cuts a stream (reset_mid, cut_mid), ends it cleanly
// without its terminal event (no_terminal) or goes idle (stall_mid, through
// the /short/v1/ location of t/sdk.t, proxy_read_timeout 1s), the gateway
// ends the client's stream with an error event in the endpoint's dialect, so
// the SDK raises instead of returning a silently truncated answer. Good
// streams never raise, and a chat stream without include_usage never yields
// a chunk with empty choices (chunk.choices[0] is what SDK users read),
// whatever the provider's spelling of the stream.
//
// The mock's behaviour comes from the x-mock header (t/mock/provider.js,
// BEHAVIOUR), which the gateway passes upstream.

import test from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

import { BASE, CLIENT_KEY, TEST_TIMEOUT, newId, opts, mockSawOne } from './lib.mjs';

// maxRetries: the SDKs' default (2), unlike the other files: a broken stream
// is never retried once it began (the assertions below are about what the
// iteration raises), but a connection the gateway closed after a broken
// stream may be reused by the shared connection pool, and the SDK retries
// that connection error as it would for any user (t/051-stream-faults.t
// TEST 24 checks the connection itself).
const common = { apiKey: CLIENT_KEY, maxRetries: 2, timeout: 30000 };
const openai = new OpenAI({ baseURL: `${BASE}/v1`, ...common });
const openaiShort = new OpenAI({ baseURL: `${BASE}/short/v1`, ...common });
const anthropic = new Anthropic({ baseURL: BASE, ...common });
const anthropicShort = new Anthropic({ baseURL: `${BASE}/short`, ...common });

// Gateway config: see t/sdk.t. The broken streams go to aliases of their own
// (`faulty` -> mockfault, `claude-faulty` -> mockantfault), so the keys the
// other test files use see no failure; the good streams use `fast` and
// `claude-fast`.
const MODEL = 'fast';
const TEXT = 'Hello from mock-fast-8b';
const CLAUDE = 'claude-fast';
const CLAUDE_TEXT = 'Hello from mock-claude-haiku';
const FAULTY = 'faulty';
const CLAUDE_FAULTY = 'claude-faulty';
const MESSAGES = [{ role: 'user', content: 'Say hello.' }];
const T = { timeout: TEST_TIMEOUT };

// The error fn() throws, or null; what it yielded before is in `seen`.
async function thrown(fn) {
    try {
        await fn();
    } catch (err) {
        return err;
    }
    return null;
}

function describe(err) {
    return err ? `${err.constructor?.name}: ${err.message}` : 'nothing thrown';
}

// The gateway's error, as the openai SDK raises it from the error event.
function assertOpenAICut(err, code, seen) {
    assert.ok(err, `iterating the broken stream throws (it yielded ${seen.length} items and ended quietly)`);
    assert.ok(err instanceof OpenAI.APIError,
        `an OpenAI.APIError from the gateway's error event, got ${describe(err)}`);
    assert.equal(err.code, code, `error.code ${code}, got ${describe(err)} code ${err.code}`);
    assert.equal(typeof err.message, 'string');
    assert.ok(err.message.length > 0, 'a message');
}

// The gateway's error, as the Anthropic SDK raises it from `event: error`.
function assertAnthropicCut(err, seen) {
    assert.ok(err, `iterating the broken stream throws (it yielded ${seen.length} events and ended quietly)`);
    assert.ok(err instanceof Anthropic.APIError,
        `an Anthropic.APIError from the gateway's error event, got ${describe(err)}`);
    assert.equal(err.error?.type, 'error', 'the Anthropic error envelope');
    assert.equal(err.error?.error?.type, 'api_error', `error.type api_error, got ${JSON.stringify(err.error)}`);
    assert.equal(typeof err.error.error.message, 'string');
    assert.ok(err.error.error.message.length > 0, 'a message');
}

// ---------------------------------------------------------------- openai chat

const CHAT_FAULTS = [
    ['reset_mid', 'reset_mid', 'stream_cut', openai],
    ['cut_mid', 'cut_mid', 'stream_cut', openai],
    ['no_terminal', 'no_terminal', 'stream_cut', openai],
    ['stall_mid past proxy_read_timeout', 'stall_mid=3000', 'stream_timeout', openaiShort],
];

for (const [label, mock, code, client] of CHAT_FAULTS) {
    for (const includeUsage of [false, true]) {
        const withUsage = includeUsage ? ', include_usage' : '';
        test(`openai chat stream, ${label}${withUsage}: the SDK raises ${code}`, T, async () => {
            const id = newId();
            const seen = [];
            const body = { model: FAULTY, messages: MESSAGES, stream: true };
            if (includeUsage) body.stream_options = { include_usage: true };
            const err = await thrown(async () => {
                const stream = await client.chat.completions.create(body, opts(id, mock));
                for await (const chunk of stream) seen.push(chunk);
            });
            assertOpenAICut(err, code, seen);
            assert.ok(seen.length > 0, 'the chunks before the fault reached the client');
            if (!includeUsage) {
                assert.ok(seen.every((c) => c.choices.length > 0), 'no usage-only chunk reached the client');
            }
            await mockSawOne(id);
        });
    }
}

test('openai chat.completions.stream() helper, no_terminal: finalChatCompletion() rejects', T, async () => {
    const id = newId();
    const stream = openai.chat.completions.stream({ model: FAULTY, messages: MESSAGES }, opts(id, 'no_terminal'));
    stream.on('error', () => {});    // the rejection below is what is checked
    const err = await thrown(() => stream.finalChatCompletion());
    assertOpenAICut(err, 'stream_cut', []);
});

// ---------------------------------------------------------------- openai responses

const RESPONSES_FAULTS = [
    ['reset_mid', 'reset_mid', 'stream_cut', openai],
    ['cut_mid', 'cut_mid', 'stream_cut', openai],
    ['no_terminal (no response.completed)', 'no_terminal', 'stream_cut', openai],
    ['stall_mid past proxy_read_timeout', 'stall_mid=3000', 'stream_timeout', openaiShort],
];

for (const [label, mock, code, client] of RESPONSES_FAULTS) {
    test(`openai responses stream, ${label}: the SDK raises ${code}`, T, async () => {
        const id = newId();
        const seen = [];
        const err = await thrown(async () => {
            const stream = await client.responses.create({ model: FAULTY, input: 'Say hello.', stream: true }, opts(id, mock));
            for await (const ev of stream) seen.push(ev);
        });
        assertOpenAICut(err, code, seen);
        assert.ok(seen.length > 0, 'the events before the fault reached the client');
        assert.ok(!seen.some((ev) => ev.type === 'response.completed'), 'no response.completed');
        await mockSawOne(id);
    });
}

test('openai responses.stream() helper, no_terminal: finalResponse() rejects', T, async () => {
    const id = newId();
    const stream = openai.responses.stream({ model: FAULTY, input: 'Say hello.' }, opts(id, 'no_terminal'));
    stream.on('error', () => {});    // the rejection below is what is checked
    const err = await thrown(() => stream.finalResponse());
    assertOpenAICut(err, 'stream_cut', []);
});

test('openai responses stream, good: no error, ends with response.completed', T, async () => {
    const id = newId();
    const stream = await openai.responses.create({ model: MODEL, input: 'Say hello.', stream: true }, opts(id));
    const types = [];
    for await (const ev of stream) types.push(ev.type);
    assert.equal(types[types.length - 1], 'response.completed');
    assert.ok(!types.includes('error'), 'no error event');
});

// ---------------------------------------------------------------- anthropic

const MESSAGES_FAULTS = [
    ['reset_mid', 'reset_mid', anthropic],
    ['cut_mid', 'cut_mid', anthropic],
    ['no_terminal (no message_stop)', 'no_terminal', anthropic],
    ['stall_mid past proxy_read_timeout', 'stall_mid=3000', anthropicShort],
];

for (const [label, mock, client] of MESSAGES_FAULTS) {
    test(`anthropic messages stream, ${label}: the SDK raises`, T, async () => {
        const id = newId();
        const seen = [];
        const err = await thrown(async () => {
            const stream = await client.messages.create(
                { model: CLAUDE_FAULTY, max_tokens: 64, messages: MESSAGES, stream: true }, opts(id, mock));
            for await (const ev of stream) seen.push(ev);
        });
        assertAnthropicCut(err, seen);
        assert.equal(seen[0]?.type, 'message_start', 'the events before the fault reached the client');
        assert.ok(!seen.some((ev) => ev.type === 'message_stop'), 'no message_stop');
        await mockSawOne(id);
    });
}

test('anthropic messages.stream() helper, no_terminal: finalMessage() rejects', T, async () => {
    const id = newId();
    const stream = anthropic.messages.stream({ model: CLAUDE_FAULTY, max_tokens: 64, messages: MESSAGES }, opts(id, 'no_terminal'));
    stream.on('error', () => {});    // the rejection below is what is checked
    const err = await thrown(() => stream.finalMessage());
    assertAnthropicCut(err, []);
});

for (const mock of [undefined, 'spaced', 'cr', 'crlf;nospace;chunk=random']) {
    test(`anthropic messages stream, good${mock ? ` (${mock})` : ''}: finalMessage() resolves`, T, async () => {
        const id = newId();
        const stream = anthropic.messages.stream({ model: CLAUDE, max_tokens: 64, messages: MESSAGES }, opts(id, mock));
        const m = await stream.finalMessage();
        assert.equal(m.content[0].text, CLAUDE_TEXT);
        assert.equal(m.stop_reason, 'end_turn');
    });
}

// ---------------------------------------------------------------- a cut inside a line

// cut_partial: the provider's bytes end inside a data line. The gateway ends
// that line and the event (an empty line) before its error event, as it must
// for the byte stream to stay well formed; but both SDKs then dispatch the
// partial data as an event and JSON.parse it, so what they raise is the
// SyntaxError of the truncated JSON, before they read the error event. Only
// "it raises" can be asserted here.
test('openai chat stream cut inside a data line (cut_partial): the SDK raises', T, async () => {
    const id = newId();
    const seen = [];
    const err = await thrown(async () => {
        const stream = await openai.chat.completions.create(
            { model: FAULTY, messages: MESSAGES, stream: true }, opts(id, 'cut_partial'));
        for await (const chunk of stream) seen.push(chunk);
    });
    assert.ok(err, `iterating the cut stream throws (it yielded ${seen.length} chunks and ended quietly)`);
    assert.ok(err instanceof OpenAI.APIError || err instanceof SyntaxError, `raised ${describe(err)}`);
});

test('anthropic messages stream cut inside a data line (cut_partial): the SDK raises', T, async () => {
    const id = newId();
    const err = await thrown(async () => {
        const stream = await anthropic.messages.create(
            { model: CLAUDE_FAULTY, max_tokens: 64, messages: MESSAGES, stream: true }, opts(id, 'cut_partial'));
        for await (const ev of stream) void ev;
    });
    assert.ok(err, 'iterating the cut stream throws');
    assert.ok(err instanceof Anthropic.APIError || err instanceof SyntaxError, `raised ${describe(err)}`);
});

// ---------------------------------------------------------------- the provider's own error

// error_mid: the provider sends its own error event mid-stream and ends; the
// SDK raises the provider's error, not a second one from the gateway.
test('openai chat stream with the provider\'s own error event: the SDK raises that one', T, async () => {
    const id = newId();
    const seen = [];
    const err = await thrown(async () => {
        const stream = await openai.chat.completions.create(
            { model: FAULTY, messages: MESSAGES, stream: true }, opts(id, 'error_mid'));
        for await (const chunk of stream) seen.push(chunk);
    });
    assert.ok(err instanceof OpenAI.APIError, `an APIError, got ${describe(err)}`);
    assert.equal(err.code, 'mock_stream_error', "the provider's error code, not the gateway's");
    assert.match(err.message, /mock provider error mid-stream/);
});

test('anthropic messages stream with the provider\'s own error event: the SDK raises that one', T, async () => {
    const id = newId();
    const err = await thrown(async () => {
        const stream = await anthropic.messages.create(
            { model: CLAUDE_FAULTY, max_tokens: 64, messages: MESSAGES, stream: true }, opts(id, 'error_mid'));
        for await (const ev of stream) void ev;
    });
    assert.ok(err instanceof Anthropic.APIError, `an APIError, got ${describe(err)}`);
    assert.equal(err.error?.error?.type, 'overloaded_error', "the provider's error type, not the gateway's");
});

// OpenAI's own Responses error event has no nested "error" object, so the SDK
// yields it as an event instead of raising: the gateway must leave it alone.
test('openai responses stream with the provider\'s own error event: passed through, no second one', T, async () => {
    const id = newId();
    const seen = [];
    const err = await thrown(async () => {
        const stream = await openai.responses.create(
            { model: FAULTY, input: 'Say hello.', stream: true }, opts(id, 'error_mid'));
        for await (const ev of stream) seen.push(ev);
    });
    assert.equal(err, null, `the SDK yields a Responses error event without "error" inside, got ${describe(err)}`);
    const errors = seen.filter((ev) => ev.type === 'error');
    assert.equal(errors.length, 1, `one error event, got ${JSON.stringify(errors)}`);
    assert.equal(errors[0].code, 'server_error', "the provider's");
    assert.equal(seen[seen.length - 1].type, 'error', 'it is the last event');
});

// ---------------------------------------------------------------- no empty choices

// What a typical SDK user writes: chunk.choices[0].delta.content, no `?.`.
const SPELLINGS = [
    undefined, 'spaced', 'crlf', 'cr', 'nospace', 'obfuscation', 'stop_reason',
    'usage=every_chunk', 'usage=on_finish', 'chunk=1', 'chunk=random',
    'spaced;cr;chunk=1', 'obfuscation;crlf;chunk=random',
];

for (const mock of SPELLINGS) {
    test(`openai chat stream without include_usage${mock ? ` (${mock})` : ''}: every chunk has choices[0]`, T, async () => {
        const id = newId();
        const stream = await openai.chat.completions.create(
            { model: MODEL, messages: MESSAGES, stream: true }, opts(id, mock));
        let text = '';
        const chunks = [];
        for await (const chunk of stream) {
            chunks.push(chunk);
            assert.ok(chunk.choices.length > 0,
                `a chunk with empty choices reached the client: ${JSON.stringify(chunk)}`);
            text += chunk.choices[0].delta.content ?? '';
        }
        assert.equal(text, TEXT, 'no content lost');
        assert.equal(chunks.filter((c) => c.choices[0].finish_reason === 'stop').length, 1, 'one finish chunk');
        if (mock === 'usage=on_finish') {
            const fin = chunks.find((c) => c.choices[0].finish_reason === 'stop');
            assert.ok(fin.usage, 'the usage riding on the finish chunk was kept');
        }
        const rec = await mockSawOne(id);
        assert.equal(rec.json.stream_options?.include_usage, true, 'the gateway asked for usage upstream');
    });
}
