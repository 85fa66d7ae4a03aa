# What the provider receives of the client's request:
#   - only an allowlist of the client's headers (Content-Type, Accept,
#     User-Agent, anthropic-version, anthropic-beta, OpenAI-Beta,
#     Idempotency-Key), unchanged; never OpenAI-Organization, OpenAI-Project,
#     Cookie, Proxy-Authorization, Authorization, x-api-key, api-key,
#     X-Forwarded-For or anything else; the provider's own key header
#     (Authorization: Bearer, or x-api-key for anthropic) carries the
#     provider's secret;
#   - never the client's query string; the provider url's own query, when it
#     has one, on every attempt to that provider (and only to it);
#   - a provider's own `header NAME VALUE;` lines, on every request to that
#     provider only, never overridden by the client.
# Checked on what the mock recorded (GET /__mock/requests: url, headers,
# raw_headers).
use lib 't/lib';
use Test::Conductor;

use vars qw(@ALLOWED @DENIED $CHAT $MESSAGES);

$CHAT     = '{"model":"m","messages":[]}';
$MESSAGES = '{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}';

# the client's headers that must arrive unchanged
@ALLOWED = (
    [ 'Content-Type'      => 'application/json; charset=utf-8' ],
    [ 'Accept'            => 'application/json' ],
    [ 'User-Agent'        => 'OpenAI/Python 1.40.0 (conductor-test)' ],
    [ 'anthropic-version' => '2023-06-01' ],
    [ 'anthropic-beta'    => 'prompt-caching-2024-07-31,max-tokens-3-5-sonnet-2024-07-15' ],
    [ 'OpenAI-Beta'       => 'assistants=v2' ],
    [ 'Idempotency-Key'   => 'idem-7f3a91' ],
);

# the client's headers that must not arrive; every value carries LEAK, so no
# header of the upstream request may (whatever its name)
@DENIED = (
    [ 'OpenAI-Organization' => 'org-LEAK-client' ],
    [ 'OpenAI-Project'      => 'proj_LEAK' ],
    [ 'Cookie'              => 'session=LEAK-cookie' ],
    [ 'Proxy-Authorization' => 'Basic LEAK-proxy' ],
    [ 'Authorization'       => 'Bearer LEAK-client-key' ],
    [ 'x-api-key'           => 'LEAK-client-x-api-key' ],
    [ 'api-key'             => 'LEAK-client-api-key' ],
    [ 'X-Forwarded-For'     => '203.0.113.7, LEAK' ],
    [ 'X-Anything'          => 'LEAK-anything' ],
    [ 'X-Custom-Trace'      => 'LEAK-trace' ],
);

sub client_headers { return [ map { [@$_] } @ALLOWED, @DENIED ] }

# how many header lines of a recorded request have this name
sub header_count {
    my ($rec, $name) = @_;
    return scalar grep { lc $_->[0] eq lc $name } @{ $rec->{raw_headers} || [] };
}

# the checks of one upstream request: the allowlist only, with the provider's
# own key header; $auth is [name => value] of the provider's key header
sub check_clean {
    my ($rec, $what, $auth) = @_;
    my $h = $rec->{headers} || {};
    ok ref $rec->{raw_headers} eq 'ARRAY', "$what: the mock recorded its header lines";
    for my $d (@DENIED) {
        my $n = lc $d->[0];
        next if $n eq lc $auth->[0];
        ok !exists $h->{$n}, "$what: no $d->[0]" . (exists $h->{$n} ? " (got '$h->{$n}')" : '');
    }
    is $h->{ lc $auth->[0] }, $auth->[1], "$what: $auth->[0] is the provider's";
    is header_count($rec, $auth->[0]), 1, "$what: one $auth->[0] line";
    my @leaks = grep { $_->[1] =~ /LEAK/ } @{ $rec->{raw_headers} || [] };
    is_deeply [ map {"$_->[0]: $_->[1]"} @leaks ], [], "$what: no header carries a value of the client's denied headers";
    for my $a (@ALLOWED) {
        is $h->{ lc $a->[0] }, $a->[1], "$what: $a->[0] unchanged";
        is header_count($rec, $a->[0]), 1, "$what: $a->[0] once";
    }
}

block_defaults(
    config => <<'SERVER',
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
SERVER
);

run_tests();

__DATA__

=== TEST 1: OpenAI: only the allowlisted client headers reach the provider, on every attempt
--- http_config
conductor_zone conductor:1m;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key a "a-secret;status=429";
    key b b-secret;
}
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request_eval
{ method => 'POST', uri => '/v1/chat/completions', body => $::CHAT, headers => ::client_headers() }
--- error_code: 200
--- checks
is scalar(@$mock), 2, 'a 429 on key a, then key b';
check_clean($mock->[0], 'attempt 1', [ Authorization => 'Bearer a-secret;status=429' ]);
check_clean($mock->[1], 'attempt 2', [ Authorization => 'Bearer b-secret' ]);

=== TEST 2: Anthropic: the same on /v1/messages; the key goes in x-api-key
--- http_config
conductor_zone conductor:1m;
conductor_provider a { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; api anthropic; key k ant-secret; }
conductor_model m { a am; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
{ method => 'POST', uri => '/v1/messages', body => $::MESSAGES, headers => ::client_headers() }
--- error_code: 200
--- checks
is scalar(@$mock), 1, 'one request upstream';
check_clean($mock->[0], 'messages', [ 'x-api-key' => 'ant-secret' ]);

=== TEST 3: a location may still pass a header of its own (the mock's X-Mock)
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k k-secret; }
conductor_model m { p pm; }
upstream conductor_backend { conductor_balancer; }
--- config
location /v1/ {
    conductor_route;
    include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
    proxy_set_header X-Mock $http_x_mock;
}
--- request_eval
{ method => 'POST', uri => '/v1/chat/completions', body => $::CHAT,
  headers => [ [ 'X-Mock' => 'completion_tokens=3' ], [ 'X-Anything' => 'LEAK-anything' ] ] }
--- error_code: 200
--- checks
is $mock->[0]{headers}{'x-mock'}, 'completion_tokens=3', 'X-Mock passed by the location';
is $resp->{json}{usage}{completion_tokens}, 3, 'and the mock acted on it';
ok !exists $mock->[0]{headers}{'x-anything'}, 'X-Anything still not passed';

=== TEST 4: the client's query string never reaches the provider
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k k-secret; }
conductor_provider a { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; api anthropic; key k a-secret; }
conductor_model m { p pm; }
conductor_model c { a am; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ qq{POST /v1/chat/completions?api-key=abc&x=1\n$::CHAT},
  qq{POST /v1/chat/completions?\n$::CHAT},
  { method => 'POST', uri => '/v1/messages?beta=true&api-key=abc', headers => { 'anthropic-version' => '2023-06-01' },
    body => '{"model":"c","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}' } ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{status} } @$resps ], [200, 200, 200], 'all served';
is_deeply [ map { $_->{url} } @$mock ],
    ['/v1/chat/completions', '/v1/chat/completions', '/v1/messages'],
    'the provider saw the paths without any query';

=== TEST 5: a provider url with a query: that query on every request to it, the client's still dropped
--- http_config
conductor_zone conductor:1m;
conductor_provider az { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1?api-version=2024-06-01; key k k-secret; }
conductor_provider an { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1?beta=true; api anthropic; key k a-secret; }
conductor_model m { az deployment-1; }
conductor_model c { an am; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ qq{POST /v1/chat/completions?api-key=abc&x=1\n$::CHAT},
  qq{POST /v1/chat/completions\n$::CHAT},
  { method => 'POST', uri => '/v1/messages?x=1', headers => { 'anthropic-version' => '2023-06-01' },
    body => '{"model":"c","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}' } ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{status} } @$resps ], [200, 200, 200], 'all served';
is_deeply [ map { $_->{url} } @$mock ],
    ['/v1/chat/completions?api-version=2024-06-01', '/v1/chat/completions?api-version=2024-06-01',
     '/v1/messages?beta=true'],
    "the provider url's query, never the client's";
is $mock->[0]{json}{model}, 'deployment-1', 'the model spliced as usual';

=== TEST 6: a retry to another provider gets that provider's query, not the first one's
--- http_config
conductor_zone conductor:1m;
conductor_provider one   { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1?api-version=one; key k1 "k1;status=429"; }
conductor_provider two   { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key k2 "k2;status=500"; }
conductor_provider three { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT3/openai/v1?api-version=three&deployment=x; key k3 k3; }
conductor_model m { one m1; two m2 priority=2; three m3 priority=3; }
upstream conductor_backend { conductor_balancer; }
--- request
POST /v1/chat/completions?client=1
{"model":"m","messages":[]}
--- error_code: 200
--- response_headers
X-Conductor-Attempts: 3
X-Conductor-Provider: three
--- checks
is_deeply [ map { [ $_->{port}, $_->{url} ] } @$mock ],
    [ [ $env->{TEST_NGINX_MOCK_PORT},  '/v1/chat/completions?api-version=one' ],
      [ $env->{TEST_NGINX_MOCK_PORT2}, '/v1/chat/completions' ],
      [ $env->{TEST_NGINX_MOCK_PORT3}, '/openai/v1/chat/completions?api-version=three&deployment=x' ] ],
    "each attempt with its own provider's query (or none)";
is_deeply [ map { $_->{json}{model} } @$mock ], [qw(m1 m2 m3)], 'each with its own model';

=== TEST 7: a provider's own headers: on every request to it, on no other provider's, never the client's
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key k k1-secret;
    header OpenAI-Organization org-123;
    header X-Tenant tenant-a;
}
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key k k2-secret; }
conductor_model m1 { p1 a; }
conductor_model m2 { p2 b; }
upstream conductor_backend { conductor_balancer; }
--- more_headers
OpenAI-Organization: org-LEAK-client
X-Tenant: LEAK-tenant
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"$_","messages":[]}} } qw(m1 m1 m2) ]
--- error_code: 200
--- checks
is scalar(@$mock), 3, 'three requests upstream';
for my $i (0, 1) {
    my $rec = $mock->[$i];
    is $rec->{port}, $env->{TEST_NGINX_MOCK_PORT}, "request $i went to p1";
    is $rec->{headers}{'openai-organization'}, 'org-123', "request $i: p1's OpenAI-Organization";
    is header_count($rec, 'OpenAI-Organization'), 1, "request $i: one OpenAI-Organization line";
    is $rec->{headers}{'x-tenant'}, 'tenant-a', "request $i: p1's X-Tenant";
    is header_count($rec, 'X-Tenant'), 1, "request $i: one X-Tenant line";
    is $rec->{headers}{authorization}, 'Bearer k1-secret', "request $i: p1's key";
}
my $rec = $mock->[2];
is $rec->{port}, $env->{TEST_NGINX_MOCK_PORT2}, 'request 2 went to p2';
ok !exists $rec->{headers}{'openai-organization'}, "p2: no OpenAI-Organization (neither p1's nor the client's)";
ok !exists $rec->{headers}{'x-tenant'}, 'p2: no X-Tenant';
is $rec->{headers}{authorization}, 'Bearer k2-secret', "p2's key";
is_deeply [ grep { $_->[1] =~ /LEAK/ } map { @{ $_->{raw_headers} || [] } } @$mock ], [],
    "the client's values reached no provider";

=== TEST 8: failover: each attempt carries its own provider's headers only
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k "k1;status=429"; header OpenAI-Organization org-1; }
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key k "k2;status=500"; }
conductor_provider p3 {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT3/v1;
    key k k3;
    header OpenAI-Organization org-3;
    header X-Tenant t3;
}
conductor_model m { p1 a; p2 b priority=2; p3 c priority=3; }
upstream conductor_backend { conductor_balancer; }
--- more_headers
OpenAI-Organization: org-LEAK-client
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- error_code: 200
--- response_headers
X-Conductor-Attempts: 3
--- checks
is_deeply [ map { $_->{port} } @$mock ],
    [ @$env{qw(TEST_NGINX_MOCK_PORT TEST_NGINX_MOCK_PORT2 TEST_NGINX_MOCK_PORT3)} ], 'p1, p2, p3';
is_deeply [ map { [ header_count($_, 'OpenAI-Organization'), $_->{headers}{'openai-organization'} ] } @$mock ],
    [ [1, 'org-1'], [0, undef], [1, 'org-3'] ], "OpenAI-Organization: each provider's own, once, or none";
is_deeply [ map { $_->{headers}{'x-tenant'} } @$mock ], [undef, undef, 't3'], 'X-Tenant only to p3';
