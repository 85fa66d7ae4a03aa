# Configuration: what nginx -t accepts and what it refuses, with a message
# naming the file and line; keys from a literal, env= and file=.
use lib 't/lib';
use Test::Conductor;

run_tests();

__DATA__

=== TEST 1: unknown provider in a model
--- http_config
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 s1; }
conductor_model fast { nope m1; }
--- config
--- must_die
--- error_log
unknown provider "nope" in conductor_model "fast"

=== TEST 2: duplicate key name in a provider
--- http_config
conductor_provider p1 {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key k1 s1;
    key k1 s2;
}
--- config
--- must_die
--- error_log
duplicate key name "k1" in provider "p1"

=== TEST 3: missing environment variable
--- http_config
conductor_provider p1 {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key k1 env=CONDUCTOR_TEST_SURELY_UNSET;
}
--- config
--- must_die
--- error_log
environment variable "CONDUCTOR_TEST_SURELY_UNSET" of key "k1" is not set

=== TEST 4: unreadable key file
--- http_config
conductor_provider p1 {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key k1 file=/nonexistent/conductor/secret;
}
--- config
--- must_die
--- error_log
cannot read the file "/nonexistent/conductor/secret" of key "k1"

=== TEST 5: url without a scheme
--- http_config
conductor_provider p1 { url 127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 s1; }
--- config
--- must_die
--- error_log
must start with http:// or https://

=== TEST 6: url with a bad port
--- http_config
conductor_provider p1 { url http://127.0.0.1:99999/v1; key k1 s1; }
--- config
--- must_die
--- error_log
invalid port in url "http://127.0.0.1:99999/v1"

=== TEST 7: malformed limit
--- http_config
conductor_provider p1 {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key k1 s1 rpm=thirty;
}
--- config
--- must_die
--- error_log
invalid parameter "rpm=thirty" of key "k1"

=== TEST 8: unknown limit name
--- http_config
conductor_provider p1 {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key k1 s1 rps=3;
}
--- config
--- must_die
--- error_log
invalid parameter "rps=3" of key "k1"

=== TEST 9: unknown api
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; api gemini; key k1 s1; }
--- config
--- must_die
--- error_log
invalid api "gemini", expected openai or anthropic

=== TEST 10: provider without url
--- http_config
conductor_provider p1 { key k1 s1; }
--- config
--- must_die
--- error_log
conductor_provider "p1" has no url

=== TEST 11: provider without key
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; }
--- config
--- must_die
--- error_log
conductor_provider "p1" has no key

=== TEST 12: unknown strategy
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; key k1 s1; }
conductor_strategy fastest;
--- config
--- must_die
--- error_log
unknown strategy "fastest"

=== TEST 13: a secret with a control character
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; key k1 "s1\r\nX-Injected: 1"; }
--- config
--- must_die
--- error_log
the secret of key "k1" contains a control character

=== TEST 14: zone inside the balancer's upstream is refused
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; key k1 s1; }
upstream conductor_backend { zone backend 64k; conductor_balancer; }
--- config
--- must_die
--- error_log
"zone" cannot be used with conductor_balancer

=== TEST 15: the stock keepalive must not wrap the balancer
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; key k1 s1; }
upstream conductor_backend { conductor_balancer; keepalive 8; }
--- config
--- must_die
--- error_log
"keepalive" cannot wrap conductor_balancer

=== TEST 16: duplicate model alias
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; key k1 s1; }
conductor_model fast { p1 a; }
conductor_model fast { p1 b; }
--- config
--- must_die
--- error_log
duplicate conductor_model "fast"

=== TEST 17: bad priority
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; key k1 s1; }
conductor_model fast { p1 a priority=0; }
--- config
--- must_die
--- error_log
invalid parameter "priority=0"

=== TEST 18: bad price
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; key k1 s1; price m input=0.1234567 output=1; }
--- config
--- must_die
--- error_log
invalid price parameter "input=0.1234567"

=== TEST 19: keys from a literal, env= and file=, limits parsed, reach the provider
--- env
CONDUCTOR_TEST_KEY=from-the-environment
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key lit  from-a-literal rpm=30 tpm=60000 rph=900 tph=1000000 rpd=14400 tpd=1000000;
    key env  env=CONDUCTOR_TEST_KEY max_inflight=8;
    key file file=$TEST_NGINX_ROOT/t/data/secret.txt;
}
conductor_model m { p1 upstream-m; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- config
location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","routing":{"provider":"x"}}} } 1 .. 1 ]
--- error_code: 200
--- checks
is $mock->[0]{headers}{authorization}, 'Bearer from-a-literal', 'literal key';
--- no_error_log eval
# the mock echoes the key in its x-mock-key answer header: not a leak
[qr/\[error\]/, qr/^(?!.*x-mock-key).*from-a-literal/m,
 qr/^(?!.*x-mock-key).*from-the-environment/m]

=== TEST 20: every key source reaches the provider (sequential skips busy keys)
--- env
CONDUCTOR_TEST_KEY=from-the-environment
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key env env=CONDUCTOR_TEST_KEY; }
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key file file=$TEST_NGINX_ROOT/t/data/secret.txt; }
conductor_model m { p1 m1; p2 m2; }
upstream conductor_backend { conductor_balancer; }
--- config
location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m"}} } 1 .. 2 ]
--- error_code: 200
--- checks
is scalar(@$mock), 2, 'two requests reached the mocks';
is $mock->[0]{headers}{authorization}, 'Bearer from-the-environment', 'env= key';
is $mock->[1]{headers}{authorization}, 'Bearer from-a-file', 'file= key, trailing newline trimmed';
--- no_error_log eval
[qr/\[error\]/, qr/^(?!.*x-mock-key).*from-the-environment/m,
 qr/^(?!.*x-mock-key).*from-a-file/m]

=== TEST 21: conductor_breaker with a bad value
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; key k1 s1; }
conductor_breaker failures=0;
--- config
--- must_die
--- error_log
invalid parameter "failures=0"

=== TEST 22: conductor_queue needs a timeout
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; key k1 s1; }
conductor_queue max=10;
--- config
--- must_die
--- error_log
"conductor_queue" directive needs timeout=

=== TEST 23: health_check with an unknown parameter
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; health_check every=5s; key k1 s1; }
--- config
--- must_die
--- error_log
invalid health_check parameter "every=5s"

=== TEST 24: health_check before url
--- http_config
conductor_provider p1 { health_check interval=5s; url http://127.0.0.1:1/v1; key k1 s1; }
--- config
--- must_die
--- error_log
health_check must come after url

=== TEST 25: conductor_balancer with a bad keepalive
--- http_config
conductor_provider p1 { url http://127.0.0.1:1/v1; key k1 s1; }
upstream conductor_backend { conductor_balancer keepalive=lots; }
--- config
--- must_die
--- error_log
invalid parameter "keepalive=lots"

=== TEST 26: a provider address with a bad port (no name is ever resolved in tests)
--- http_config
conductor_provider p1 { url https://api.example.test/v1; address 127.0.0.1:99999; key k1 s1; }
--- config
--- must_die
--- error_log
invalid port in "127.0.0.1:99999" of provider "p1"
