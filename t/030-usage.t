# Usage and cost of every answer: the provider's numbers for each API shape,
# streaming or not, exactly; estimates flagged; the stream a client gets.
use lib 't/lib';
use Test::Conductor;
use JSON::PP ();

# the usage record of each request, from the shipped JSON log format; nginx
# writes it just after the client saw the end of the answer (its lingering
# close logs after shutting the write side): http_request waits for that,
# and this waits (bounded) too, for a record written without it
sub usage_log {
    my ($env) = @_;
    my @lines;
    wait_for(sub {
        open my $f, '<', "$env->{TEST_NGINX_SERVROOT}/logs/usage.log" or return 0;
        @lines = map { JSON::PP::decode_json($_) } <$f>;
        return scalar @lines;
    }, what => 'a usage.log record');
    return @lines;
}

sub chat_content {
    my ($events) = @_;
    return join '', map {
        $_->{json} && ref $_->{json}{choices} && @{ $_->{json}{choices} }
            ? $_->{json}{choices}[0]{delta}{content} // '' : ''
    } @$events;
}

our $OAI = '"k1;prompt_tokens=100;completion_tokens=7;cached_tokens=40;reasoning_tokens=3';
block_defaults(
    http_config => <<'HTTP',
    conductor_zone conductor:1m;
    include $TEST_NGINX_CONF_DIR/conductor_log.conf;
    access_log logs/usage.log conductor_json;
    conductor_provider oai {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
        key k1 "k1;prompt_tokens=100;completion_tokens=7;cached_tokens=40;reasoning_tokens=3";
        price priced-model input=1.5 output=6 cached_input=0.5;
        price split-model input=1.5 output=6 cached_input=0.5;
    }
    conductor_provider ant {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1;
        api anthropic;
        key a1 "a1;prompt_tokens=50;completion_tokens=9;cached_tokens=20;cache_creation=10;chunk=3";
        price claude-m input=3 output=15 cached_input=0.3 cache_write=3.75;
    }
    conductor_model priced   { oai priced-model; }
    conductor_model split    { oai "split-model;chunk=1"; }
    conductor_model vllm     { oai "vllm-model;usage=every_chunk"; }
    conductor_model cerebras { oai "c-model;usage=on_finish;chunk=7"; }
    conductor_model omit     { oai "omit-model;usage=omit"; }
    conductor_model big      { oai "big-model;big=300;chunk=random"; }
    conductor_model cut      { oai "cut-model;reset_mid"; }
    conductor_model gather   { oai "g-model;big=40;chunk=1500"; }
    conductor_model scanned  { oai "s-model;big=100;chunk=4000"; }
    conductor_model claude   { ant claude-m; }
    upstream conductor_backend { conductor_balancer; }
HTTP
    config => <<'SERVER',
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
SERVER
);

run_tests();

__DATA__

=== TEST 1: chat, non-stream: the provider's numbers and the cost
--- request
POST /v1/chat/completions
{"model":"priced","messages":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- checks
my ($u) = usage_log($env);
is_deeply [ @$u{qw(prompt_tokens completion_tokens cached_tokens total_tokens)} ], [100, 7, 40, 107], 'tokens';
# 60 plain * 1.5 + 40 cached * 0.5 + 7 * 6, per million
is $u->{cost_usd}, '0.000152', 'cost';
is $u->{usage_source}, 'response', 'from the response';
is $u->{model}, 'priced', 'alias';
is $u->{upstream_model}, 'priced-model', 'provider model';
is $u->{provider}, 'oai', 'provider';
is $u->{key}, 'k1', 'key name';
like $u->{ttfb}, qr/^\d+\.\d{3}$/, 'ttfb in seconds';

=== TEST 2: chat stream the client did not ask usage for, split into 1-byte writes
--- request
POST /v1/chat/completions
{"model":"split","stream":true,"messages":[]}
--- error_code: 200
--- checks
my @ev = @{ parse_sse($resp->{body}) };
is chat_content(\@ev), 'Hello from split-model;chunk=1', 'content intact';
ok !(grep { $_->{json} && $_->{json}{usage} } @ev), 'no usage numbers in what the client got';
ok !(grep { $_->{json} && ref $_->{json}{choices} && !@{ $_->{json}{choices} } } @ev), 'no chunk without choices';
is $ev[-1]{data}, '[DONE]', '[DONE] kept';
unlike $resp->{body}, qr/\n\n\n/, 'no empty event left where the chunk was';
my ($u) = usage_log($env);
is_deeply [ @$u{qw(prompt_tokens completion_tokens cached_tokens)} ], [100, 7, 40], 'counted all the same';
is $u->{usage_source}, 'response', 'from the stream';

=== TEST 3: chat stream the client asked usage for is byte-identical to the provider's
--- request
POST /v1/chat/completions
{"model":"priced","stream":true,"stream_options":{"include_usage":true},"messages":[]}
--- error_code: 200
--- checks
my $direct = http_request(POST => '/v1/chat/completions',
    { Authorization => 'Bearer ' . $mock->[0]{key} }, $mock->[0]{body}, port => $env->{TEST_NGINX_MOCK_PORT});
my $norm = sub { (my $s = shift) =~ s/"(id|created)":("[^"]*"|\d+)/"$1":X/g; $s };
is $norm->($resp->{body}), $norm->($direct->{body}), 'same bytes as the provider sends (ids aside)';
my ($u) = usage_log($env);
is $u->{completion_tokens}, 7, 'counted';

=== TEST 4: running totals on every chunk (vLLM): the last wins, never a sum
--- request
POST /v1/chat/completions
{"model":"vllm","stream":true,"messages":[]}
--- error_code: 200
--- checks
my ($u) = usage_log($env);
is_deeply [ @$u{qw(prompt_tokens completion_tokens)} ], [100, 7], 'last running total';

=== TEST 5: usage riding on the finish chunk (Cerebras) is never stripped
--- request
POST /v1/chat/completions
{"model":"cerebras","stream":true,"messages":[]}
--- error_code: 200
--- checks
my @ev = @{ parse_sse($resp->{body}) };
is chat_content(\@ev), 'Hello from c-model;usage=on_finish;chunk=7', 'content';
my ($fin) = grep { $_->{json} && @{ $_->{json}{choices} || [] } && $_->{json}{choices}[0]{finish_reason} } @ev;
ok $fin && $fin->{json}{usage}, 'the finish chunk reached the client with its usage';
my ($u) = usage_log($env);
is $u->{completion_tokens}, 7, 'counted';

=== TEST 6: Responses, non-stream: the response's usage, not a tool's
--- request
POST /v1/responses
{"model":"priced","input":"hi"}
--- error_code: 200
--- checks
my ($u) = usage_log($env);
is_deeply [ @$u{qw(prompt_tokens completion_tokens cached_tokens)} ], [100, 7, 40], 'response usage';

=== TEST 7: Responses stream with a 300 KB response.completed line split at random
--- request
POST /v1/responses
{"model":"big","stream":true,"input":"hi"}
--- error_code: 200
--- checks
my @ev = @{ parse_sse($resp->{body}) };
is $ev[-1]{json}{type}, 'response.completed', 'the client got the whole event';
cmp_ok length($ev[-1]{data}), '>', 300_000, 'a long line';
my ($u) = usage_log($env);
is_deeply [ @$u{qw(prompt_tokens completion_tokens usage_source)} ], [100, 7, 'response'], 'found in it';

=== TEST 8: embeddings
--- request
POST /v1/embeddings
{"model":"priced","input":"hi"}
--- error_code: 200
--- checks
my ($u) = usage_log($env);
is_deeply [ @$u{qw(prompt_tokens completion_tokens total_tokens)} ], [100, 0, 100], 'prompt only'
    or diag explain $u, $resp;

=== TEST 9: legacy completions stream
--- request
POST /v1/completions
{"model":"split","stream":true,"prompt":"hi"}
--- error_code: 200
--- checks
my ($u) = usage_log($env);
is_deeply [ @$u{qw(prompt_tokens completion_tokens)} ], [100, 7], 'tokens';
unlike $resp->{body}, qr/"usage":\{/, 'the usage chunk the gateway asked for was taken out';
like $resp->{body}, qr/data: \[DONE\]\n\n\z/, 'the end kept';

=== TEST 10: Anthropic, non-stream: cache reads and writes, and their prices
--- request
POST /v1/messages
{"model":"claude","max_tokens":16,"messages":[]}
--- error_code: 200
--- checks
my ($u) = usage_log($env);
# input 50 + cache read 20 + cache write 10
is_deeply [ @$u{qw(prompt_tokens completion_tokens cached_tokens)} ], [80, 9, 20], 'tokens';
# 50 * 3 + 20 * 0.3 + 10 * 3.75 + 9 * 15 = 328.5 per million
is $u->{cost_usd}, '0.000328', 'cost';

=== TEST 11: Anthropic stream: message_start and message_delta counted once
--- request
POST /v1/messages
{"model":"claude","stream":true,"max_tokens":16,"messages":[]}
--- error_code: 200
--- checks
my ($u) = usage_log($env);
is_deeply [ @$u{qw(prompt_tokens completion_tokens cached_tokens)} ], [80, 9, 20], 'not 1 + 9';

=== TEST 12: no usage in the answer: estimated, and flagged
--- request
POST /v1/chat/completions
{"model":"omit","messages":[{"role":"user","content":"a prompt of some length"}]}
--- error_code: 200
--- checks
my ($u) = usage_log($env);
is $u->{usage_source}, 'estimated', 'flagged';
cmp_ok $u->{prompt_tokens}, '>', 0, 'never silently zero';
cmp_ok $u->{completion_tokens}, '>', 0, 'completion estimated from the answer';

=== TEST 13: a stream cut by the provider: estimated
--- request
POST /v1/chat/completions
{"model":"cut","stream":true,"messages":[]}
--- checks
my ($u) = usage_log($env);
is $u->{usage_source}, 'estimated', 'flagged';

=== TEST 14: a model without a price is unpriced, not free
--- request
POST /v1/chat/completions
{"model":"gpt-unknown","messages":[]}
--- error_code: 200
--- checks
my ($u) = usage_log($env);
is $u->{prompt_tokens}, 100, 'tokens counted';
is $u->{cost_usd}, '', 'no cost';

=== TEST 15: a 40 KB answer in pieces: gathered, its usage read whole
--- request
POST /v1/chat/completions
{"model":"gather","messages":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- checks
cmp_ok length($resp->{body}), '>', 40_000, 'a long answer';
my ($u) = usage_log($env);
is_deeply [ @$u{qw(prompt_tokens completion_tokens cached_tokens usage_source)} ], [100, 7, 40, 'response'], 'exact';

=== TEST 16: a 100 KB answer in pieces: over what is gathered, scanned
--- request
POST /v1/chat/completions
{"model":"scanned","messages":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- checks
cmp_ok length($resp->{body}), '>', 100_000, 'longer than what is gathered';
my ($u) = usage_log($env);
is_deeply [ @$u{qw(prompt_tokens completion_tokens cached_tokens usage_source)} ], [100, 7, 40, 'response'], 'exact';
