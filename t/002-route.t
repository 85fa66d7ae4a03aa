# Routing: alias resolution, the body splice (every other byte unchanged),
# key injection, Host and path, unknown models, round robin, dialects.
use lib 't/lib';
use Test::Conductor;

block_defaults(
    http_config => <<'HTTP',
    conductor_zone conductor:1m;
    conductor_provider cerebras {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
        key account-1 cerebras-secret-1;
        key account-2 cerebras-secret-2;
    }
    conductor_provider nvidia {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/nim/v1/;
        key nvidia-main nvidia-secret;
    }
    conductor_provider anthropic {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT3;
        api anthropic;
        key ant-main anthropic-secret;
    }
    conductor_model fast {
        cerebras llama3.1-8b;
        nvidia   meta/llama-3.1-8b-instruct;
    }
    conductor_model only-nvidia { nvidia "meta/llama\"quoted\"-3"; }
    conductor_model claude { anthropic claude-3-5-haiku; }
    conductor_builtin_models on;
    upstream conductor_backend { conductor_balancer; }
HTTP
    config => <<'SERVER',
    location /v1/ {
        conductor_route;
        include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
    }
    location /strict/v1/ {
        conductor_route;
        conductor_unknown_models reject;
        include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
    }
SERVER
);

run_tests();

__DATA__

=== TEST 1: the alias is rewritten, every other byte reaches the provider unchanged
--- request
POST /v1/chat/completions?trace=1
{ "temperature" : 0.7, "model":"fast" ,"messages":[{"role":"user","content":"h\u00e9llo \"model\": \"fast\""}],"max_tokens":12345678901234567890123}
--- more_headers
Authorization: Bearer client-secret-must-not-leak
x-api-key: client-ant-must-not-leak
api-key: client-azure-must-not-leak
--- error_code: 200
--- response_headers
X-Conductor-Provider: cerebras
X-Conductor-Key: account-1
X-Conductor-Attempts: 1
--- checks
my $r = $mock->[0];
is $r->{port}, $env->{TEST_NGINX_MOCK_PORT}, 'reached the first provider';
is $r->{body}, q{{ "temperature" : 0.7, "model":"llama3.1-8b" ,"messages":[{"role":"user","content":"h\u00e9llo \"model\": \"fast\""}],"max_tokens":12345678901234567890123}},
   'only the model value changed';
is $r->{headers}{'content-length'}, length($r->{body}), 'Content-Length fixed';
is $r->{url}, '/v1/chat/completions', 'provider path; the client query string is not forwarded';
is $r->{headers}{authorization}, 'Bearer cerebras-secret-1', 'provider key';
ok !exists $r->{headers}{'x-api-key'}, 'no client x-api-key';
ok !exists $r->{headers}{'api-key'}, 'no client api-key';
is $r->{headers}{host}, "127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}", 'Host of the provider';
ok !exists $r->{headers}{'accept-encoding'}, 'no compression asked';
unlike $r->{raw_headers} // join(',', %{$r->{headers}}), qr/must-not-leak/, 'no client key anywhere';
is $resp->{json}{choices}[0]{message}{content}, 'Hello from llama3.1-8b', 'answer passed back';

=== TEST 2: round robin alternates providers, then keys inside a provider
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"fast","messages":[]}} } 1 .. 6 ]
--- error_code: 200
--- checks
my @seen = map { "$_->{port}:$_->{headers}{authorization}" } @$mock;
my ($c, $n) = ($env->{TEST_NGINX_MOCK_PORT}, $env->{TEST_NGINX_MOCK_PORT2});
is_deeply \@seen, [
    "$c:Bearer cerebras-secret-1", "$n:Bearer nvidia-secret",
    "$c:Bearer cerebras-secret-2", "$n:Bearer nvidia-secret",
    "$c:Bearer cerebras-secret-1", "$n:Bearer nvidia-secret",
], 'cerebras, nvidia, cerebras, nvidia... as the seed shows';
is_deeply [ map { $_->{json}{model} } @$mock ],
    [ ('llama3.1-8b', 'meta/llama-3.1-8b-instruct') x 3 ], 'model per provider';
is $mock->[1]{url}, '/nim/v1/chat/completions', 'path prefix, trailing slash of the url folded';

=== TEST 3: a provider model that needs escaping is written as valid JSON
--- request
POST /v1/embeddings
{"input":"x","model":"only-nvidia"}
--- error_code: 200
--- checks
is $mock->[0]{json}{model}, 'meta/llama"quoted"-3', 'escaped model name';
is $mock->[0]{url}, '/nim/v1/embeddings', 'embeddings path';

=== TEST 4: anthropic messages get x-api-key, never Authorization
--- request
POST /v1/messages
{"model":"claude","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
x-api-key: client-ant-must-not-leak
anthropic-version: 2023-06-01
--- error_code: 200
--- checks
my $r = $mock->[0];
is $r->{port}, $env->{TEST_NGINX_MOCK_PORT3}, 'anthropic provider';
is $r->{url}, '/messages', 'no prefix';
is $r->{headers}{'x-api-key'}, 'anthropic-secret', 'provider key in x-api-key';
ok !exists $r->{headers}{authorization}, 'no Authorization';
is $r->{headers}{'anthropic-version'}, '2023-06-01', 'client headers kept';
is $r->{json}{model}, 'claude-3-5-haiku', 'rewritten';
is $resp->{json}{content}[0]{text}, 'Hello from claude-3-5-haiku', 'answer';

=== TEST 5: an OpenAI-only alias asked on the Anthropic endpoint is not served there
--- request
POST /v1/messages
{"model":"fast","max_tokens":16,"messages":[]}
--- error_code: 404
--- response_body_like: ^\{"type":"error","error":\{"type":"not_found_error","message":"no provider serves this model for this API"\}\}
--- checks
is scalar(@$mock), 0, 'nothing went upstream';

=== TEST 6: an unknown model goes through unchanged to the dialect's providers
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"gpt-unknown","messages":[]}} } 1 .. 2 ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{json}{model} } @$mock ], ['gpt-unknown', 'gpt-unknown'], 'model kept';
is_deeply [ sort map { $_->{port} } @$mock ],
    [ sort $env->{TEST_NGINX_MOCK_PORT}, $env->{TEST_NGINX_MOCK_PORT2} ], 'openai providers only';

=== TEST 7: conductor_unknown_models reject answers 404 in the OpenAI shape
--- request
POST /strict/v1/chat/completions
{"model":"gpt-unknown","messages":[]}
--- error_code: 404
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"error":\{"message":"the model does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"\}\}
--- checks
is scalar(@$mock), 0, 'nothing went upstream';

=== TEST 8: routing is stripped, other fields kept; duplicate and escaped model keys all rewritten
--- request
POST /v1/chat/completions
{"routing":{"strategy":"least_cost"},"mod\u0065l":"x","model":"fast","messages":[],"routing":null}
--- error_code: 200
--- checks
is $mock->[0]{body}, '{"mod\u0065l":"llama3.1-8b","model":"llama3.1-8b","messages":[]}',
   'exact body: values replaced, keys kept as written';

=== TEST 9: the seed's built-in names
--- request
POST /v1/chat/completions
{"model":"llama-70b","messages":[]}
--- error_code: 200
--- checks
is $mock->[0]{json}{model}, 'llama-3.3-70b', 'cerebras name of llama-70b';

=== TEST 10: streams: stream_options.include_usage is asked for upstream
--- request
POST /v1/chat/completions
{"model":"fast","stream":true,"messages":[]}
--- error_code: 200
--- response_headers_like
Content-Type: text/event-stream
--- checks
is $mock->[0]{body}, '{"model":"llama3.1-8b","stream":true,"messages":[],"stream_options":{"include_usage":true}}', 'added';
like $resp->{body}, qr/"content":"Hel/, 'stream content';

=== TEST 11: include_usage false becomes true, other stream options kept
--- request
POST /v1/chat/completions
{"model":"fast","stream":true,"stream_options":{"include_obfuscation":false,"include_usage":false}}
--- error_code: 200
--- checks
is $mock->[0]{body}, '{"model":"llama3.1-8b","stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}', 'flipped';

=== TEST 12: an empty stream_options object gets include_usage
--- request
POST /v1/completions
{"model":"fast","stream":true,"stream_options":{ }}
--- error_code: 200
--- checks
is $mock->[0]{body}, '{"model":"llama3.1-8b","stream":true,"stream_options":{"include_usage":true }}', 'inserted';

=== TEST 13: a body larger than the buffer goes through a temp file intact
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 s1; }
conductor_model fast { p1 provider-model; }
upstream conductor_backend { conductor_balancer; }
client_body_buffer_size 1k;
client_max_body_size 8m;
--- config
location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
--- request_eval
my $big = 'x' x (3 * 1024 * 1024);
qq{POST /v1/chat/completions\n{"messages":[{"role":"user","content":"$big"}],"model":"fast"}}
--- error_code: 200
--- checks
my $big = 'x' x (3 * 1024 * 1024);
ok $mock->[0]{body} eq qq{{"messages":[{"role":"user","content":"$big"}],"model":"provider-model"}}, '3 MB body spliced exactly';
is $mock->[0]{headers}{'content-length'}, length($mock->[0]{body}), 'length';
--- error_log
a client request body is buffered to a temporary file

=== TEST 14: a chunked request body is routed and re-sent with a length
--- request_eval
my ($a, $b) = ('{"model":"fast",', '"messages":[]}');
{ method => 'POST', uri => '/v1/chat/completions',
  body => sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", length $a, $a, length $b, $b) }
--- more_headers
Transfer-Encoding: chunked
--- error_code: 200
--- checks
is $mock->[0]{body}, '{"model":"llama3.1-8b","messages":[]}', 'body';
is $mock->[0]{headers}{'content-length'}, 37, 'Content-Length';
ok !exists $mock->[0]{headers}{'transfer-encoding'}, 'not chunked upstream';

=== TEST 15: /v1/responses is OpenAI
--- request
POST /v1/responses
{"model":"fast","input":"hi"}
--- error_code: 200
--- checks
is $mock->[0]{url}, '/v1/responses', 'path';
is $resp->{json}{object}, 'response', 'answer';
