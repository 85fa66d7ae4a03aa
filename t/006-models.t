# /v1/models lists the aliases, in the OpenAI list format or Anthropic's.
use lib 't/lib';
use Test::Conductor;

block_defaults(
    http_config => <<'HTTP',
    conductor_zone conductor:1m;
    conductor_provider cerebras { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 s1; }
    conductor_model fast { cerebras llama3.1-8b; }
    conductor_model "we\"ird" { cerebras x; }
    conductor_builtin_models on;
HTTP
    config => 'location = /v1/models { conductor_models; }',
);

run_tests();

__DATA__

=== TEST 1: OpenAI list
--- request
GET /v1/models
--- error_code: 200
--- response_headers
Content-Type: application/json
--- checks
is $resp->{json}{object}, 'list', 'list object';
my @ids = map { $_->{id} } @{ $resp->{json}{data} };
is_deeply \@ids, ['fast', 'we"ird', 'llama-70b', 'llama-8b', 'llama-3.3-70b', 'llama-3.1-8b', 'llama-3.1-70b'],
    'aliases, then the built-in names';
is $resp->{json}{data}[0]{object}, 'model', 'model objects';
is $resp->{json}{data}[0]{owned_by}, 'conductor', 'owned_by';

=== TEST 2: Anthropic list when the client sends anthropic-version
--- request
GET /v1/models
--- more_headers
anthropic-version: 2023-06-01
--- error_code: 200
--- checks
is $resp->{json}{data}[0]{type}, 'model', 'Anthropic model objects';
is $resp->{json}{data}[0]{id}, 'fast', 'id';
is $resp->{json}{has_more}, JSON::PP::false, 'has_more';

=== TEST 3: POST is not allowed
--- request
POST /v1/models
{}
--- error_code: 405
