// The gateway with the official OpenAI and Anthropic SDKs: a chat request,
// a stream, an Anthropic message, and a client key. Only the base URL
// changes from talking to the providers themselves.
//
//   make run && (cd examples/node && npm ci && node conductor.mjs)
//
// CONDUCTOR_BASE_URL    the gateway (default http://127.0.0.1:8000)
// CONDUCTOR_CLIENT_KEY  a client key of conf/conductor.conf (demo-client-key)

import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

const base = process.env.CONDUCTOR_BASE_URL ?? 'http://127.0.0.1:8000';
const clientKey = process.env.CONDUCTOR_CLIENT_KEY ?? 'demo-client-key';
const hello = [{ role: 'user', content: 'Say hello' }];

const usage = (u) =>
  Object.entries(u).filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => `${k}=${v}`).join(' ');

// /v1/ of the shipped configuration needs no key: the SDKs insist on one,
// and the gateway never sends a client's key upstream (it adds the
// provider's own)
const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused' });
const anthropic = new Anthropic({ baseURL: base, apiKey: 'unused' });

// a chat request: the gateway picks a provider for the alias "fast"
const chat = await openai.chat.completions.create({ model: 'fast', messages: hello });
console.log(`chat: ${chat.choices[0].message.content}`);
console.log(`chat usage: ${usage(chat.usage)}`);

// a stream; include_usage asks for a last chunk with the usage
const stream = await openai.chat.completions.create({
  model: 'fast', messages: hello, stream: true,
  stream_options: { include_usage: true },
});
let text = '';
let streamUsage;
for await (const chunk of stream) {
  text += chunk.choices[0]?.delta?.content ?? '';
  if (chunk.usage) streamUsage = chunk.usage;
}
console.log(`stream: ${text}`);
console.log(`stream usage: ${usage(streamUsage)}`);

// an Anthropic message: the same gateway speaks the Messages API
const msg = await anthropic.messages.create({ model: 'claude', max_tokens: 256, messages: hello });
console.log(`anthropic: ${msg.content[0].text}`);
console.log(`anthropic usage: ${usage(msg.usage)}`);

// a client key: the SDK's apiKey, on /auth/v1/ (Authorization: Bearer from
// the OpenAI SDK, x-api-key from Anthropic's); the client's limits and
// budget apply
const team = new OpenAI({ baseURL: `${base}/auth/v1`, apiKey: clientKey });
const teamChat = await team.chat.completions.create({ model: 'fast', messages: hello });
console.log(`client key chat: ${teamChat.choices[0].message.content}`);
console.log(`client key chat usage: ${usage(teamChat.usage)}`);

const teamAnthropic = new Anthropic({ baseURL: `${base}/auth`, apiKey: clientKey });
const teamMsg = await teamAnthropic.messages.create({ model: 'claude', max_tokens: 256, messages: hello });
console.log(`client key message: ${teamMsg.content[0].text}`);
console.log(`client key message usage: ${usage(teamMsg.usage)}`);

// a key no client has: the SDK's own AuthenticationError (401)
try {
  await new OpenAI({ baseURL: `${base}/auth/v1`, apiKey: 'not-a-client-key', maxRetries: 0 })
    .chat.completions.create({ model: 'fast', messages: hello });
  console.log('wrong key: accepted');
} catch (err) {
  if (!(err instanceof OpenAI.AuthenticationError)) throw err;
  console.log(`wrong key: ${err.status} ${err.error?.type}`);
}

// what the client has used: the status report (allowed from 127.0.0.1)
const res = await fetch(`${base}/conductor/status`);
if (!res.ok) throw new Error(`status: ${res.status}`);
const demo = (await res.json()).clients.find((c) => c.name === 'demo');
console.log(`client demo: requests=${demo.requests} cost_usd=${demo.cost_usd}`
  + ` budget_day_remaining_usd=${demo.budgets.day.remaining_usd}`);
