# Failover inside one client request: a dead provider, a reset, a 5xx and a
# 429 send the request on to the next candidate, re-spliced for it.
use lib 't/lib';
use Test::Conductor;

block_defaults(
    config => <<'SERVER',
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
SERVER
);

run_tests();

__DATA__

=== TEST 1: connection refused, then the next provider with its own model and key
--- http_config
conductor_zone conductor:1m;
conductor_provider dead { url http://127.0.0.1:$TEST_NGINX_DEAD_PORT/v1; key d1 dead-secret; }
conductor_provider live { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key l1 live-secret; }
conductor_model m { dead dead-model; live live-model priority=2; }
upstream conductor_backend { conductor_balancer; }
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- error_code: 200
--- response_headers
X-Conductor-Provider: live
X-Conductor-Key: l1
X-Conductor-Attempts: 2
--- checks
is scalar(@$mock), 1, 'one request reached the live provider';
is $mock->[0]{body}, '{"model":"live-model","messages":[]}', 're-spliced for it';
is $mock->[0]{headers}{authorization}, 'Bearer live-secret', 'its key';
is $mock->[0]{headers}{'content-length'}, length($mock->[0]{body}), 'length';
--- error_log
connect() failed (111: Connection refused)

=== TEST 2: a provider that resets the connection, then a 503, then success
--- http_config
conductor_zone conductor:1m;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key k-reset "k;reset";
    key k-503 "k;status=503";
    key k-ok ok-secret;
}
conductor_model m { p long-provider-model-name; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- response_headers
X-Conductor-Key: k-ok
X-Conductor-Attempts: 3
--- checks
is scalar(@$mock), 3, 'three attempts reached the provider';
is_deeply [ map { $_->{key} } @$mock ], ['k;reset', 'k;status=503', 'ok-secret'], 'in order';
is $mock->[2]{body}, '{"model":"long-provider-model-name","messages":[{"role":"user","content":"hi"}]}', 'same body';

=== TEST 3: a 429 goes on to the next key
--- http_config
conductor_zone conductor:1m;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key limited "k;status=429;retry_after=7";
    key spare spare-secret;
}
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request
POST /v1/chat/completions
{"model":"m"}
--- error_code: 200
--- response_headers
X-Conductor-Key: spare
X-Conductor-Attempts: 2

=== TEST 4: the last candidate's 429 is the client's answer, with its Retry-After
--- http_config
conductor_zone conductor:1m;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key a "a;status=429;retry_after=7";
    key b "b;status=429;retry_after=9";
}
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request
POST /v1/chat/completions
{"model":"m"}
--- error_code: 429
--- response_headers
Retry-After: 9
X-Conductor-Key: b
X-Conductor-Attempts: 2
--- response_body_like: "error"
--- checks
is scalar(@$mock), 2, 'each key tried once';

=== TEST 5: every provider dead: 502 in the OpenAI shape, every candidate tried once
--- http_config
conductor_zone conductor:1m;
conductor_provider d1 { url http://127.0.0.1:$TEST_NGINX_DEAD_PORT/v1; key a s1; key b s2; }
conductor_model m { d1 pm; }
upstream conductor_backend { conductor_balancer; }
--- request
POST /v1/chat/completions
{"model":"m"}
--- error_code: 502
--- response_headers
Content-Type: application/json
X-Conductor-Attempts: 2
--- response_body
{"error":{"message":"no provider answered: every attempt failed","type":"server_error","param":null,"code":null}}

=== TEST 6: every provider dead on the Anthropic endpoint
--- http_config
conductor_zone conductor:1m;
conductor_provider d1 { url http://127.0.0.1:$TEST_NGINX_DEAD_PORT; api anthropic; key a s1; }
conductor_model m { d1 pm; }
upstream conductor_backend { conductor_balancer; }
--- request
POST /v1/messages
{"model":"m","max_tokens":1,"messages":[]}
--- error_code: 502
--- response_body
{"type":"error","error":{"type":"api_error","message":"no provider answered: every attempt failed"}}

=== TEST 7: conductor_retries 0 makes one attempt only
--- http_config
conductor_zone conductor:1m;
conductor_provider dead { url http://127.0.0.1:$TEST_NGINX_DEAD_PORT/v1; key d1 s; }
conductor_provider live { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key l1 s; }
conductor_model m { dead a; live b priority=2; }
conductor_retries 0;
upstream conductor_backend { conductor_balancer; }
--- request
POST /v1/chat/completions
{"model":"m"}
--- error_code: 502
--- checks
is scalar(@$mock), 0, 'the live provider was not tried';

=== TEST 8: a 400 from the provider goes to the client unchanged, no retry
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key a "a;status=400"; key b s; }
conductor_model m { p pm; }
upstream conductor_backend { conductor_balancer; }
--- request
POST /v1/chat/completions
{"model":"m"}
--- error_code: 400
--- checks
is scalar(@$mock), 1, 'one attempt';
is $resp->{json}{error}{type}, 'invalid_request_error', "the provider's own error";

=== TEST 9: kept-alive connections are reused per provider and never cross providers
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key a s1; }
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key b s2; }
conductor_model m { p1 m1; p2 m2; }
upstream conductor_backend { conductor_balancer keepalive=8; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m"}} } 1 .. 6 ]
--- error_code: 200
--- checks
is scalar(@$mock), 6, 'six requests';
my %by_port;
$by_port{$_->{port}}++ for @$mock;
is_deeply [ sort values %by_port ], [3, 3], 'alternating';
my @model_per_port = map { "$_->{port}=$_->{json}{model}" } @$mock;
my %seen = map { $_ => 1 } @model_per_port;
is scalar(keys %seen), 2, 'each port always got its own provider model';
--- error_log
conductor: reusing a kept-alive connection to provider "p1"
conductor: reusing a kept-alive connection to provider "p2"
--- no_error_log
[error]
