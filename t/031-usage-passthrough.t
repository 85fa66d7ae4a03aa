# conductor_usage: an accounting-only pass-through (the Valohai seed): the
# client's own key and body go to the provider untouched, the answer's usage
# is counted for the provider.
use lib 't/lib';
use Test::Conductor;

# the provider's counters; http_request (so status_report) returns once nginx
# has logged the request, which is when the module has counted it
sub provider_status {
    my ($name) = @_;
    my $st = status_report() or die "no status report\n";
    my ($p) = grep { $_->{name} eq $name } @{ $st->{providers} };
    return $p;
}

block_defaults(
    http_config => <<'HTTP',
    conductor_zone conductor:1m;
    include $TEST_NGINX_CONF_DIR/conductor_log.conf;
    access_log logs/usage.log conductor_json;
    conductor_provider openai { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key unused unused-secret; }
    conductor_provider anthropic { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; api anthropic; key unused unused-secret; }
HTTP
    config => <<'SERVER',
    location /openai/ {
        conductor_usage openai;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT/;
        proxy_buffering off;
    }
    location /anthropic/ {
        conductor_usage anthropic;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/;
        proxy_buffering off;
    }
    location = /conductor/status { conductor_status; }
SERVER
);

run_tests();

__DATA__

=== TEST 1: OpenAI chat through the pass-through: untouched, and counted
--- request
POST /openai/v1/chat/completions
{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer client-own-key;prompt_tokens=21;completion_tokens=4
--- error_code: 200
--- checks
my $r = $mock->[0];
is $r->{url}, '/v1/chat/completions', 'prefix stripped by proxy_pass';
is $r->{headers}{authorization}, 'Bearer client-own-key;prompt_tokens=21;completion_tokens=4', "the client's own key";
is $r->{body}, '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}', 'the body untouched';
ok !exists $resp->{headers}{'x-conductor-provider'}, 'no routing headers';
my $p = provider_status('openai');
is $p->{requests}, 1, 'one request for the provider';
is_deeply [ @{ $p->{tokens} }{qw(prompt completion)} ], [21, 4], 'its usage';
is $p->{unpriced}, 1, 'unpriced';

=== TEST 2: Anthropic stream through the pass-through
--- request
POST /anthropic/v1/messages
{"model":"claude-x","stream":true,"max_tokens":5,"messages":[]}
--- more_headers
x-api-key: client-ant;prompt_tokens=30;completion_tokens=6;cached_tokens=10
--- error_code: 200
--- checks
like $resp->{body}, qr/event: message_stop/, 'the stream passed';
my $p = provider_status('anthropic');
is_deeply [ @{ $p->{tokens} }{qw(prompt completion cached)} ], [40, 6, 10], 'counted once';

=== TEST 3: a path that is no LLM endpoint passes, uncounted
--- request
GET /openai/v1/models
--- error_code: 200
--- checks
is provider_status('openai')->{requests}, 0, 'not counted';
