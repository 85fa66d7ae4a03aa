# conductor_failover: which answers send the request on to the next key.
use lib 't/lib';
use Test::Conductor;

block_defaults(
    http_config => <<'HTTP',
    conductor_zone conductor:1m;
    conductor_provider p {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
        key a429 "a;status=429";
        key b503 "b;status=503";
        key c403 "c;status=403";
        key ok okk;
    }
    conductor_provider dead { url http://127.0.0.1:$TEST_NGINX_DEAD_PORT/v1; key d s; }
    conductor_model limited { p pm; }
    conductor_model down { dead dm; p pm priority=2; }
    conductor_strategy sequential;
    upstream conductor_backend { conductor_balancer; }
HTTP
);

run_tests();

__DATA__

=== TEST 1: the default (the shipped snippet): 429 and 5xx fail over, 403 is not retried
--- config
location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
--- request
POST /v1/chat/completions
{"model":"limited"}
--- error_code: 403
--- response_headers
X-Conductor-Attempts: 3

=== TEST 2: conductor_failover 5xx: a 429 goes to the client as it is
--- config
location /v1/ { conductor_route; conductor_failover 5xx; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
--- request
POST /v1/chat/completions
{"model":"limited"}
--- error_code: 429
--- response_headers
X-Conductor-Attempts: 1
--- checks
is scalar(@$mock), 1, 'no second attempt';

=== TEST 3: conductor_failover 429 5xx auth: the 403 fails over too
--- config
location /v1/ { conductor_route; conductor_failover 429 5xx auth; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
--- request
POST /v1/chat/completions
{"model":"limited"}
--- error_code: 200
--- response_headers
X-Conductor-Key: ok
X-Conductor-Attempts: 4

=== TEST 4: conductor_failover off: a dead provider is the client's 502
--- config
location /v1/ { conductor_route; conductor_failover off; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
--- request
POST /v1/chat/completions
{"model":"down"}
--- error_code: 502
--- response_body_like: "type":"server_error"
--- checks
is scalar(@$mock), 0, 'the second provider was not tried';

=== TEST 5: conductor_failover error: a dead provider fails over
--- config
location /v1/ { conductor_route; conductor_failover error; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
--- request
POST /v1/chat/completions
{"model":"down"}
--- error_code: 429
--- response_headers
X-Conductor-Attempts: 2

=== TEST 6: an unknown class is refused
--- config
location /v1/ { conductor_route; conductor_failover 404; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
--- must_die
--- error_log
invalid value "404"

=== TEST 7: no retry once the answer has begun: a cut stream is the client's
--- config
location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key a "a;reset_mid"; key b bb; }
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[]}
--- error_code: 200
--- checks
is scalar(@$mock), 1, 'the second key was not tried after bytes went out';
unlike $resp->{body}, qr/\[DONE\]/, 'the client saw the cut';
