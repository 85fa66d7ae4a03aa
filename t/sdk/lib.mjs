// Shared helpers of the SDK tests (not a test file itself).
//
//   CONDUCTOR_BASE_URL  the gateway, e.g. http://127.0.0.1:8000 (no /v1)
//   MOCK_CONTROL_URL    one port of the mock provider, e.g. http://127.0.0.1:18001,
//                       whose /__mock/requests lists what every mock port received
//
// Every request a test makes carries a unique `x-sdk-test-id` header, and the
// test finds what the mock received by that id: the log is never cleared, so
// test files may run in parallel and share one mock.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

function requiredUrl(name) {
    const v = process.env[name];
    if (!v) {
        throw new Error(`${name} is not set: run these tests through t/sdk.t, or set ` +
            'CONDUCTOR_BASE_URL (the gateway) and MOCK_CONTROL_URL (a mock provider port)');
    }
    return v.replace(/\/+$/, '');
}

export const BASE = requiredUrl('CONDUCTOR_BASE_URL');
export const MOCK = requiredUrl('MOCK_CONTROL_URL');

// The only key the SDK clients know: it must never reach a provider.
export const CLIENT_KEY = 'client-key-must-not-leak';

export const TEST_TIMEOUT = 60000;

// The mock's default usage numbers (t/mock/provider.js usageNumbers()).
export const MOCK_PROMPT_TOKENS = 12;
export const MOCK_COMPLETION_TOKENS = 5;

export function newId() {
    return randomUUID();
}

// Per-request options for an SDK call: the test id and optional x-mock tokens.
export function opts(id, mock) {
    const headers = { 'x-sdk-test-id': id };
    if (mock) headers['x-mock'] = mock;
    return { headers };
}

// The requests the mock recorded with this test id.
export async function mockSaw(id) {
    const res = await fetch(`${MOCK}/__mock/requests`);
    assert.equal(res.status, 200, `GET ${MOCK}/__mock/requests`);
    const all = await res.json();
    assert.ok(Array.isArray(all), 'the mock request log is an array');
    return all.filter((r) => r.headers && r.headers['x-sdk-test-id'] === id);
}

// Exactly one upstream request carried this id; returns it.
export async function mockSawOne(id) {
    const seen = await mockSaw(id);
    assert.equal(seen.length, 1,
        `exactly one upstream request for test id ${id}, got ${seen.length}: ` +
        JSON.stringify(seen.map((r) => ({ port: r.port, url: r.url, key: r.key }))));
    return seen[0];
}

// The client's own key appears in no header value and not in the body.
export function assertNoClientKey(rec) {
    for (const [name, value] of Object.entries(rec.headers)) {
        const v = Array.isArray(value) ? value.join(', ') : String(value);
        assert.ok(!v.includes(CLIENT_KEY), `the client key leaked upstream in header ${name}: ${v}`);
    }
    assert.ok(!String(rec.body).includes(CLIENT_KEY), 'the client key leaked upstream in the body');
}

// Response headers never carry a provider secret. The mock's own x-mock-*
// headers echo the key it received on purpose (test instrumentation a real
// provider does not have), so they are not the gateway's doing.
export function assertNoSecretInHeaders(headers, secrets) {
    for (const [name, value] of headers.entries()) {
        if (name.startsWith('x-mock-')) continue;
        for (const s of secrets) {
            assert.ok(!value.includes(s), `response header ${name} carries a provider secret`);
        }
    }
}

// The mock's embedding vector i (t/mock/provider.js embeddingsAnswer()).
export function mockVector(i, dims = 8) {
    return Array.from({ length: dims }, (_, j) => Math.fround(Math.sin(i * dims + j + 1) / 2));
}
