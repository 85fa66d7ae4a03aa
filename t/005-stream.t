# Streams pass through unbuffered: the first event reaches the client while
# the provider still holds the rest; any split of the stream arrives intact.
use lib 't/lib';
use Test::Conductor;

my $http = <<'HTTP';
    conductor_zone conductor:1m;
    conductor_provider oai { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 "k1;gate"; }
    conductor_provider split { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key k2 "k2;chunk=1"; }
    conductor_provider ant { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT3/v1; api anthropic; key k3 "k3;chunk=random"; }
    conductor_model gated { oai gated-model; }
    conductor_model split { split split-model; }
    conductor_model claude { ant claude-model; }
    upstream conductor_backend { conductor_balancer; }
HTTP
my $server = <<'SERVER';
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
SERVER

block_defaults(http_config => $http, config => $server);

run_tests();

# the gate: the mock sends the first event, then waits for /__mock/release
{
    my $env = harness_env();
    s/\$(TEST_NGINX_\w+)/$env->{$1}/g for $http, $server;
    start_nginx(http_config => $http, config => $server);
    mock_clear();

    my $s = http_stream_open(POST => '/v1/chat/completions', {},
        '{"model":"gated","stream":true,"stream_options":{"include_usage":true},"messages":[]}');
    is $s->status, 200, 'gated stream: 200';
    like $s->header('Content-Type'), qr{text/event-stream}, 'event stream';
    is $s->header('X-Conductor-Provider'), 'oai', 'routed';
    ok $s->read_until(qr/"role":"assistant"/, 30), 'the first event reached the client';
    unlike $s->body, qr/\[DONE\]/, '... while the provider still holds the rest';
    is mock_release(), 1, 'released the provider';
    like $s->read_all(30), qr/data: \[DONE\]\n\n\z/, 'the rest followed';
    my @ev = @{ parse_sse($s->body) };
    is join('', map { $_->{json} && $_->{json}{choices}[0] ? $_->{json}{choices}[0]{delta}{content} // '' : '' } @ev),
        'Hello from gated-model', 'content intact';
    is_deeply stop_nginx(), [], 'nginx stopped cleanly';
}

done_testing();

__DATA__

=== TEST 1: a chat stream split into one-byte writes arrives byte for byte
--- request
POST /v1/chat/completions
{"model":"split","stream":true,"stream_options":{"include_usage":true},"messages":[]}
--- error_code: 200
--- checks
my @ev = @{ parse_sse($resp->{body}) };
is join('', map { $_->{json} && @{ $_->{json}{choices} } ? $_->{json}{choices}[0]{delta}{content} // '' : '' } @ev),
    'Hello from split-model', 'content';
is $ev[-1]{data}, '[DONE]', 'ends with [DONE]';
is $ev[-2]{json}{usage}{completion_tokens}, 5, 'the usage chunk the client asked for';

=== TEST 2: an Anthropic stream split at random boundaries
--- request
POST /v1/messages
{"model":"claude","stream":true,"max_tokens":8,"messages":[]}
--- error_code: 200
--- response_headers_like
Content-Type: text/event-stream
--- checks
my @ev = @{ parse_sse($resp->{body}) };
my @names = map { $_->{event} } grep { $_->{event} } @ev;
is_deeply [ @names[0, -1] ], ['message_start', 'message_stop'], 'events';
is join('', map { $_->{json}{delta}{text} // '' } grep { ($_->{event} // '') eq 'content_block_delta' } @ev),
    'Hello from claude-model', 'text';

=== TEST 3: a Responses stream
--- request
POST /v1/responses
{"model":"split","stream":true,"input":"hi"}
--- error_code: 200
--- checks
my @ev = @{ parse_sse($resp->{body}) };
is $ev[-1]{json}{type}, 'response.completed', 'ends with response.completed';
is $ev[-1]{json}{response}{usage}{output_tokens}, 5, 'usage in it';
