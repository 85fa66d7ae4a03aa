# Bad input never goes upstream and gets a JSON error in the dialect of its
# endpoint, with the right status.
use lib 't/lib';
use Test::Conductor;

block_defaults(
    http_config => <<'HTTP',
    conductor_zone conductor:1m;
    conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 s1; }
    conductor_provider a1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; api anthropic; key k1 s1; }
    conductor_model fast { p1 m1; }
    upstream conductor_backend { conductor_balancer; }
    client_max_body_size 1k;
HTTP
    config => <<'SERVER',
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
SERVER
    checks => q{is scalar(@$mock), 0, 'nothing went upstream';},
    response_headers => 'Content-Type: application/json',
);

run_tests();

__DATA__

=== TEST 1: not JSON (OpenAI)
--- request
POST /v1/chat/completions
{"model":"fast",
--- error_code: 400
--- response_body
{"error":{"message":"the request body is not valid JSON","type":"invalid_request_error","param":null,"code":null}}

=== TEST 2: not JSON (Anthropic)
--- request
POST /v1/messages
model=fast
--- error_code: 400
--- response_body
{"type":"error","error":{"type":"invalid_request_error","message":"the request body is not valid JSON"}}

=== TEST 3: not an object
--- request
POST /v1/embeddings
["fast"]
--- error_code: 400
--- response_body
{"error":{"message":"the request body must be a JSON object","type":"invalid_request_error","param":null,"code":null}}

=== TEST 4: model missing (Anthropic)
--- request
POST /v1/messages
{"max_tokens":1,"messages":[]}
--- error_code: 400
--- response_body
{"type":"error","error":{"type":"invalid_request_error","message":"\"model\" is required"}}

=== TEST 5: model not a string
--- request
POST /v1/chat/completions
{"model":42,"messages":[]}
--- error_code: 400
--- response_body
{"error":{"message":"\"model\" must be a string","type":"invalid_request_error","param":null,"code":null}}

=== TEST 6: model empty
--- request
POST /v1/chat/completions
{"model":"","messages":[]}
--- error_code: 400
--- response_body_like: "message":"\\"model\\" must be a non-empty string"

=== TEST 7: body over client_max_body_size, with Content-Length (OpenAI)
--- request_eval
"POST /v1/chat/completions\n" . '{"model":"fast","x":"' . ('a' x 2000) . '"}'
--- error_code: 413
--- response_body
{"error":{"message":"the request body is too large","type":"invalid_request_error","param":null,"code":null}}

=== TEST 8: body over client_max_body_size, chunked (Anthropic)
--- request_eval
my $b = '{"model":"fast","x":"' . ('a' x 2000) . '"}';
{ method => 'POST', uri => '/v1/messages', headers => ['Transfer-Encoding' => 'chunked'],
  body => sprintf("%x\r\n%s\r\n0\r\n\r\n", length $b, $b) }
--- error_code: 413
--- response_body
{"type":"error","error":{"type":"request_too_large","message":"the request body is too large"}}

=== TEST 9: wrong method
--- request
GET /v1/chat/completions
--- error_code: 405
--- response_headers
Allow: POST
Content-Type: application/json
--- response_body
{"error":{"message":"method not allowed: use POST","type":"invalid_request_error","param":null,"code":null}}

=== TEST 10: unsupported path
--- request
POST /v1/images/generations
{"model":"fast"}
--- error_code: 404
--- response_body_like: ^\{"error":\{"message":"unsupported path

=== TEST 11: empty body
--- request
POST /v1/chat/completions
--- error_code: 400
--- response_body_like: "the request body is empty"

=== TEST 12: deeply nested body
--- request_eval
"POST /v1/chat/completions\n" . '{"model":"fast","x":' . ('[' x 200) . (']' x 200) . '}'
--- error_code: 400
--- response_body_like: nested too deeply

=== TEST 13: a body with trailing garbage
--- request
POST /v1/chat/completions
{"model":"fast"} {"model":"other"}
--- error_code: 400
--- response_body_like: not valid JSON

=== TEST 14: HEAD gets the status and headers, no body
--- request
HEAD /v1/chat/completions
--- error_code: 405
--- response_body
