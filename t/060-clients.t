# Client keys (conductor_client, conductor_auth): who may use the gateway,
# which models, how fast and for how much, through a real nginx:
#   - 401 for no key and an unknown key, in both dialects and both header
#     styles, nothing sent upstream; 403 for a model outside the client's
#   - both header styles on every endpoint, rotation (several keys), a key
#     given as its sha256; the client's key never goes upstream
#   - a client limit: 429 with Retry-After, the limit named; exact under
#     200 concurrent requests on two workers
#   - a budget: 429 insufficient_quota naming the budget and its reset;
#     under 200 concurrent requests on two workers the provider gets what
#     the budget allows and no more; the overshoot bound of README
#   - /v1/models per client, /conductor/status for admin clients only,
#     X-Conductor-* headers only for admins, $conductor_client
#   - configuration errors
use lib 't/lib';
use Test::Conductor;
use Digest::SHA ();

my $VALGRIND = $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0;

our $SHA_C = Digest::SHA::sha256_hex('sk-client-c');

block_defaults(
    http_config => <<'HTTP',
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp provider-secret-p; price pm input=1 output=2; }
conductor_provider a { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; api anthropic; key ka provider-secret-a; price am input=1 output=2; }
conductor_model fast { p pm; }
conductor_model other { p pm; }
conductor_model claude { a am; }
conductor_client team-a {
    key sk-team-a-1;
    key sk-team-a-2;
    models fast claude;
}
conductor_client ops { key sk-ops; admin on; }
conductor_auth on;
log_format clients '$conductor_client|$status|$conductor_model';
access_log logs/clients.log clients;
upstream conductor_backend { conductor_balancer; }
HTTP
    config => <<'SERVER',
    location /v1/ {
        conductor_route;
        include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
    }
    location = /v1/models { conductor_models; }
    location = /conductor/status { conductor_status; }
SERVER
);

run_tests();

__DATA__

=== TEST 1: no key: 401 in OpenAI's dialect, nothing upstream
--- request
POST /v1/chat/completions
{"model":"fast","messages":[]}
--- error_code: 401
--- response_headers
Content-Type: application/json
--- checks
is $resp->{json}{error}{type}, 'authentication_error', 'type';
is $resp->{json}{error}{code}, 'invalid_api_key', 'code';
like $resp->{json}{error}{message}, qr/Authorization: Bearer KEY.*x-api-key/, 'how to send one';
is scalar(@$mock), 0, 'nothing sent upstream';

=== TEST 2: an unknown key, both header styles, both dialects
--- request eval
[ { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"fast","messages":[]}',
    headers => { Authorization => 'Bearer sk-nope' } },
  { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"fast","messages":[]}',
    headers => { 'x-api-key' => 'sk-nope' } },
  { method => 'POST', uri => '/v1/messages', body => '{"model":"claude","max_tokens":5,"messages":[]}',
    headers => { 'x-api-key' => 'sk-team-a-1x', 'anthropic-version' => '2023-06-01' } },
  { method => 'POST', uri => '/v1/messages', body => '{"model":"claude","max_tokens":5,"messages":[]}' },
  { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"fast","messages":[]}',
    headers => { Authorization => 'Bearer ' } },
  { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"fast","messages":[]}',
    headers => { Authorization => 'Basic c2stdGVhbS1hLTE6' } } ]
--- error_code: 401
--- checks
is_deeply [ map { $_->{status} } @$resps ], [ (401) x 6 ], 'every one 401';
is $resps->[0]{json}{error}{code}, 'invalid_api_key', 'OpenAI code';
is $resps->[0]{json}{error}{message}, 'invalid API key', 'unknown key';
is $resps->[1]{json}{error}{message}, 'invalid API key', 'unknown x-api-key';
is $resps->[2]{json}{type}, 'error', 'Anthropic shape';
is $resps->[2]{json}{error}{type}, 'authentication_error', 'Anthropic type';
is $resps->[3]{json}{error}{type}, 'authentication_error', 'no key on messages: Anthropic type';
like $resps->[4]{json}{error}{message}, qr/no API key/, 'an empty Bearer is no key';
like $resps->[5]{json}{error}{message}, qr/no API key/, 'Basic is not a key';
is scalar(@$mock), 0, 'nothing sent upstream';
unlike join('', map { $_->{body} } @$resps), qr/sk-team|sk-nope/, 'no key echoed';

=== TEST 3: a known key, both header styles, both endpoints; rotation; the client key never upstream
--- request eval
[ { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"fast","messages":[]}',
    headers => { Authorization => 'Bearer sk-team-a-1' } },
  { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"fast","messages":[]}',
    headers => { 'x-api-key' => 'sk-team-a-2' } },
  { method => 'POST', uri => '/v1/messages', body => '{"model":"claude","max_tokens":5,"messages":[]}',
    headers => { 'x-api-key' => 'sk-team-a-1', 'anthropic-version' => '2023-06-01' } },
  { method => 'POST', uri => '/v1/messages', body => '{"model":"claude","max_tokens":5,"messages":[]}',
    headers => { Authorization => 'bearer sk-team-a-2', 'anthropic-version' => '2023-06-01' } } ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{status} } @$resps ], [ (200) x 4 ], 'every one 200';
is scalar(@$mock), 4, 'four upstream';
is_deeply [ map { $_->{key} } @$mock ],
    [ 'provider-secret-p', 'provider-secret-p', 'provider-secret-a', 'provider-secret-a' ],
    'the provider keys upstream';
unlike join("\n", map { join ' ', %{ $_->{headers} } } @$mock), qr/sk-team/, 'no client key in any upstream header';
ok !(grep { exists $_->{headers}{'x-conductor-key'} } @$resps), 'no X-Conductor-Key for a client that is no admin';
ok !(grep { exists $_->{headers}{'x-conductor-provider'} } @$resps), 'no X-Conductor-Provider either';
open my $f, '<', "$env->{TEST_NGINX_SERVROOT}/logs/clients.log" or die;
my @log = <$f>;
chomp @log;
is_deeply \@log, [ 'team-a|200|fast', 'team-a|200|fast', 'team-a|200|claude', 'team-a|200|claude' ],
    '$conductor_client names the client';

=== TEST 4: a key given by its sha256, and the admin's headers
--- http_config eval
my $h = $main::SHA_C;
<<"HTTP";
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp provider-secret-p; }
conductor_model fast { p pm; }
conductor_client c { key sha256=$h; admin on; }
conductor_auth on;
upstream conductor_backend { conductor_balancer; }
HTTP
--- request
POST /v1/chat/completions
{"model":"fast","messages":[]}
--- more_headers
Authorization: Bearer sk-client-c
--- error_code: 200
--- response_headers
X-Conductor-Key: kp
X-Conductor-Provider: p

=== TEST 5: a model outside the client's: 403 in both dialects, nothing upstream
--- request eval
[ { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"other","messages":[]}',
    headers => { Authorization => 'Bearer sk-team-a-1' } },
  { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"not-configured","messages":[]}',
    headers => { Authorization => 'Bearer sk-team-a-1' } },
  { method => 'POST', uri => '/v1/messages', body => '{"model":"other","max_tokens":5,"messages":[]}',
    headers => { 'x-api-key' => 'sk-team-a-1' } },
  { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"other","messages":[]}',
    headers => { Authorization => 'Bearer sk-ops' } } ]
--- checks
is_deeply [ map { $_->{status} } @$resps ], [ 403, 403, 403, 200 ], '403 for team-a, the admin (all models) passes';
is $resps->[0]{json}{error}{type}, 'permission_error', 'OpenAI type';
is $resps->[0]{json}{error}{message}, 'client "team-a" may not use the model "other"', 'the message names both';
is $resps->[2]{json}{type}, 'error', 'Anthropic shape';
is $resps->[2]{json}{error}{type}, 'permission_error', 'Anthropic type';
is scalar(@$mock), 1, 'only the admin went upstream';

=== TEST 6: /v1/models lists the client's models only; without a key 401
--- request eval
[ { method => 'GET', uri => '/v1/models', headers => { Authorization => 'Bearer sk-team-a-1' } },
  { method => 'GET', uri => '/v1/models', headers => { 'x-api-key' => 'sk-team-a-2', 'anthropic-version' => '2023-06-01' } },
  { method => 'GET', uri => '/v1/models', headers => { Authorization => 'Bearer sk-ops' } },
  { method => 'GET', uri => '/v1/models' } ]
--- checks
is_deeply [ map { $_->{status} } @$resps ], [ 200, 200, 200, 401 ], 'statuses';
is_deeply [ map { $_->{id} } @{ $resps->[0]{json}{data} } ], [ 'fast', 'claude' ], "team-a's models";
is_deeply [ map { $_->{id} } @{ $resps->[1]{json}{data} } ], [ 'fast', 'claude' ], "in Anthropic's format too";
is $resps->[1]{json}{data}[0]{type}, 'model', 'Anthropic list';
is_deeply [ sort map { $_->{id} } @{ $resps->[2]{json}{data} } ], [ 'claude', 'fast', 'other' ], 'every model for a client with no models line';
is $resps->[3]{json}{error}{code}, 'invalid_api_key', 'the 401 is JSON';

=== TEST 7: /conductor/status for admin clients only; no secret in it
--- request eval
[ { method => 'GET', uri => '/conductor/status', headers => { Authorization => 'Bearer sk-team-a-1' } },
  { method => 'GET', uri => '/conductor/status' },
  { method => 'GET', uri => '/conductor/status', headers => { Authorization => 'Bearer sk-ops' } },
  { method => 'GET', uri => '/conductor/status?format=prometheus', headers => { Authorization => 'Bearer sk-ops' } },
  { method => 'GET', uri => '/conductor/status?format=html', headers => { Authorization => 'Bearer sk-ops' } } ]
--- checks
is_deeply [ map { $_->{status} } @$resps ], [ 403, 401, 200, 200, 200 ], 'statuses';
like $resps->[0]{json}{error}{message}, qr/client "team-a" may not read the gateway's status/, 'why not';
my $all = join '', map { $_->{body} } @$resps;
unlike $all, qr/sk-team|sk-ops|provider-secret/, 'no secret in any status output';

=== TEST 8: a client limit: 429 with Retry-After, the limit named, in both dialects
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp provider-secret-p; }
conductor_provider a { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; api anthropic; key ka provider-secret-a; }
conductor_model fast { p pm; }
conductor_model claude { a am; }
conductor_client slow { key sk-slow; limit rpm=2; }
conductor_auth on;
upstream conductor_backend { conductor_balancer; }
--- request eval
my $c = { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"fast","messages":[]}',
          headers => { Authorization => 'Bearer sk-slow' } };
my $m = { method => 'POST', uri => '/v1/messages', body => '{"model":"claude","max_tokens":5,"messages":[]}',
          headers => { 'x-api-key' => 'sk-slow' } };
[ $c, $c, $c, $m ]
--- checks
is_deeply [ map { $_->{status} } @$resps ], [ 200, 200, 429, 429 ], 'two, then 429';
is $resps->[2]{json}{error}{message}, 'client "slow" is at its limit rpm=2', 'the limit named';
is $resps->[2]{json}{error}{type}, 'rate_limit_exceeded', 'OpenAI type';
is $resps->[3]{json}{error}{type}, 'rate_limit_error', 'Anthropic type';
cmp_ok $resps->[2]{headers}{'retry-after'}, '>=', 1, 'Retry-After';
cmp_ok $resps->[2]{headers}{'retry-after'}, '<=', 60, 'within the minute';
is scalar(@$mock), 2, 'two upstream';

=== TEST 9: a client rpm under 200 concurrent requests on two workers: exactly the limit upstream
--- main_config
worker_processes 2;
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp provider-secret-p; }
conductor_provider q { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kq provider-secret-q; }
conductor_model fast { p pm; q qm; }
conductor_client burst { key sk-burst-1; key sk-burst-2; limit rpm=7 max_inflight=100; }
conductor_client other { key sk-other; }
conductor_auth on;
upstream conductor_backend { conductor_balancer keepalive=64; }
--- config
    location /v1/ {
        add_header X-Worker $pid always;
        conductor_route;
        include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
    }
--- checks
my $n = $ENV{TEST_NGINX_USE_VALGRIND} ? 30 : 200;
away_from_minute_edge();
my $r = burst($n, '{"model":"fast","messages":[]}',
    headers => sub { $_[0] % 2 ? 'Authorization: Bearer sk-burst-1' : 'x-api-key: sk-burst-2' });
my $st = tally(map { $_->{status} } @$r);
diag "rpm=7, $n at once: " . join(' ', map { "$_ x$st->{$_}" } sort keys %$st);
is scalar(@{ mock_requests() }), 7, 'exactly rpm=7 reached the providers';
is $st->{200} // 0, 7, '7 answered';
is $st->{429} // 0, $n - 7, 'the rest 429';
my $w = tally(map { $_->{headers}{'x-worker'} // () } @$r);
is scalar(keys %$w), $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 2, 'both workers answered';
my $o = http_request('POST', '/v1/chat/completions', { Authorization => 'Bearer sk-other' },
                     '{"model":"fast","messages":[]}');
is $o->{status}, 200, 'another client is not held by it';

=== TEST 10: a budget spent: 429 insufficient_quota naming the budget and its reset, both dialects
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp provider-secret-p; price pm input=1 output=1; }
conductor_provider a { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; api anthropic; key ka provider-secret-a; price am input=1 output=1; }
conductor_model fast { p pm; }
conductor_model claude { a am; }
conductor_client small { key sk-small; budget 0.00001 per=day; budget 1 per=total; }
conductor_auth on;
upstream conductor_backend { conductor_balancer; }
--- request eval
my $c = { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"fast","messages":[]}',
          headers => { Authorization => 'Bearer sk-small' } };
my $m = { method => 'POST', uri => '/v1/messages', body => '{"model":"claude","max_tokens":5,"messages":[]}',
          headers => { 'x-api-key' => 'sk-small' } };
[ $c, $c, $m ]
--- checks
# the first is admitted (its estimate is capped at the budget), costs 17
# micro-USD (12 + 5 tokens at 1 USD per million): the budget is spent
is_deeply [ map { $_->{status} } @$resps ], [ 200, 429, 429 ], 'one, then the budget is spent';
my @t = gmtime(time + 86400);
my $reset = sprintf '%04d-%02d-%02dT00:00:00Z', $t[5] + 1900, $t[4] + 1, $t[3];
is $resps->[1]{json}{error}{message},
    qq{client "small" has spent its budget per=day of 0.000010 USD: it resets at $reset}, 'the budget and its reset';
is $resps->[1]{json}{error}{type}, 'insufficient_quota', 'OpenAI type';
is $resps->[1]{json}{error}{code}, 'insufficient_quota', 'OpenAI code';
is $resps->[2]{json}{error}{type}, 'rate_limit_error', 'Anthropic type';
my $left = 86400 - time % 86400;
cmp_ok abs($resps->[1]{headers}{'retry-after'} - $left), '<=', 5, 'Retry-After: until the reset';
is scalar(@$mock), 1, 'one upstream';

=== TEST 11: a total budget does not reset
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp provider-secret-p; price pm input=1 output=1; }
conductor_model fast { p pm; }
conductor_client once { key sk-once; budget 0.000001 per=total; }
conductor_auth on;
upstream conductor_backend { conductor_balancer; }
--- request eval
my $c = { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"fast","messages":[]}',
          headers => { Authorization => 'Bearer sk-once' } };
[ $c, $c ]
--- checks
is_deeply [ map { $_->{status} } @$resps ], [ 200, 429 ], 'one, then spent';
is $resps->[1]{json}{error}{message}, 'client "once" has spent its budget per=total of 0.000001 USD: it does not reset', 'no reset';
ok !exists $resps->[1]{headers}{'retry-after'}, 'no Retry-After';

=== TEST 12: unpriced models with a budget: refused, or tokens only
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp provider-secret-p; }
conductor_model fast { p pm; }
conductor_client strict { key sk-strict; budget 5 per=month; }
conductor_client loose { key sk-loose; budget 5 per=month; unpriced tokens; }
conductor_client free { key sk-free; }
conductor_auth on;
upstream conductor_backend { conductor_balancer; }
--- request eval
[ map { { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"fast","messages":[]}',
          headers => { Authorization => "Bearer sk-$_" } } } qw(strict loose free) ]
--- checks
is_deeply [ map { $_->{status} } @$resps ], [ 403, 200, 200 ], 'refused, tokens only, no budget';
is $resps->[0]{json}{error}{message},
    'the model "fast" has no price, and client "strict" has a budget: it is refused ("unpriced tokens" would count its tokens only)',
    'why';
is scalar(@$mock), 2, 'two upstream';

=== TEST 13: a budget under 200 concurrent requests on two workers: no more reach the provider than it has room for
--- main_config
worker_processes 2;
--- http_config
conductor_zone conductor:1m;
# 10 + 10 tokens really used, at 1 USD per million each: 20 micro-USD; the
# estimate of the request below is ceil(43 / 4) + max_tokens 10 = 21 tokens
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp provider-secret-p; price "bud;prompt_tokens=10;completion_tokens=10" input=1 output=1; price "big;prompt_tokens=10;completion_tokens=50" input=1 output=1; }
conductor_model b { p "bud;prompt_tokens=10;completion_tokens=10"; }
conductor_model over { p "big;prompt_tokens=10;completion_tokens=50"; }
conductor_client spender { key sk-spender; budget 0.000105 per=day; }
conductor_client over { key sk-over; budget 0.000105 per=day; }
conductor_estimate completion=10;
conductor_auth on;
upstream conductor_backend { conductor_balancer keepalive=64; }
--- config
    location /v1/ {
        add_header X-Worker $pid always;
        conductor_route;
        include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
    }
    location = /conductor/status { conductor_auth off; conductor_status; }
--- checks
my $n = $ENV{TEST_NGINX_USE_VALGRIND} ? 30 : 200;
my $body = '{"model":"b","max_tokens":10,"messages":[]}';
is length($body), 43, 'the body the estimate is made of';
# 5 estimates of 21 micro-USD fit 105: five at once, not six
my $r = burst($n, $body, headers => 'Authorization: Bearer sk-spender');
my $st = tally(map { $_->{status} } @$r);
diag "budget 105 micro-USD, estimate 21 each, $n at once: " . join(' ', map { "$_ x$st->{$_}" } sort keys %$st);
is scalar(@{ mock_requests() }), 5, 'exactly 5 reached the provider';
is $st->{200} // 0, 5, '5 answered';
is $st->{429} // 0, $n - 5, 'the rest 429';
my ($held) = grep { $_->{status} == 429 } @$r;
like $held->{body}, qr/budget per=day is held by its requests in flight|has spent its budget/, 'a budget refusal';
# spent 100; one more would need 21: 121 > 105, refused as spent
my $next = http_request('POST', '/v1/chat/completions', { Authorization => 'Bearer sk-spender' }, $body);
is $next->{status}, 429, 'then spent';
is $next->{json}{error}{code}, 'insufficient_quota', 'insufficient_quota';
is scalar(@{ mock_requests() }), 5, 'still 5';
my $w = tally(map { $_->{headers}{'x-worker'} // () } @$r);
is scalar(keys %$w), $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 2, 'both workers answered';

# a provider that answers more than the estimate: the overshoot stays
# within what the admitted requests used beyond their reservations
mock_clear();
my $ob = '{"model":"over","messages":[]}';    # 31 bytes: 8 + 10 estimated, 60 used
$r = burst($n, $ob, headers => 'Authorization: Bearer sk-over');
my $up = scalar @{ mock_requests() };
# at most five estimates of 18 fit 105 at once; a request that ends counts
# its real 60 at once (its answer's end settles it), so fewer get in when
# some end before the others are admitted (under valgrind): at least two
# (one spends 60, the 45 left hold two more estimates)
cmp_ok $up, '<=', 5, "at most five estimates of 18 fit 105: $up upstream";
cmp_ok $up, '>=', 2, 'and at least two';
my $spent = 60 * $up;
my $bound = 105 + $up * (60 - 18);
cmp_ok $spent, '<=', $bound, "spent $spent micro-USD, within the stated bound $bound";
$next = http_request('POST', '/v1/chat/completions', { Authorization => 'Bearer sk-over' }, $ob);
is $next->{status}, 429, 'then spent';

=== TEST 14: configuration errors
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp s; }
conductor_model fast { p pm; }
conductor_client a { key same; }
conductor_client b { key same; }
--- must_die
--- error_log
the same key is given to conductor_client "a" and "b"

=== TEST 15: an unknown model in a client's models
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp s; }
conductor_model fast { p pm; }
conductor_client a { key k; models fast nope; }
upstream conductor_backend { conductor_balancer; }
--- must_die
--- error_log
conductor_client "a" in

=== TEST 16: conductor_auth on with no client
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp s; }
conductor_model fast { p pm; }
conductor_auth on;
upstream conductor_backend { conductor_balancer; }
--- must_die
--- error_log
conductor_auth on needs a conductor_client

=== TEST 17: a bad budget, a bad digest, a duplicate period, an unknown line, a client without a key
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp s; }
conductor_client a { key k; budget 1.5 per=week; }
--- must_die
--- error_log
invalid budget of client "a"

=== TEST 18: a bad digest
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp s; }
conductor_client a { key sha256=abc; }
--- must_die
--- error_log
invalid key "sha256=..." of client "a"

=== TEST 19: two budgets of one period
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp s; }
conductor_client a { key k; budget 1 per=day; budget 2 per=day; }
--- must_die
--- error_log
client "a" has two budgets per=day

=== TEST 20: an unknown line in a client
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp s; }
conductor_client a { key k; rpm 5; }
--- must_die
--- error_log
unknown directive "rpm" in conductor_client

=== TEST 21: a client without a key
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp s; }
conductor_client a { models fast; }
--- must_die
--- error_log
conductor_client "a" has no key

=== TEST 22: a key from env= and file=
--- http_config
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key kp provider-secret-p; }
conductor_model fast { p pm; }
conductor_client e { key env=CONDUCTOR_TEST_CLIENT_KEY; key file=$TEST_NGINX_ROOT/t/data/secret.txt; }
conductor_auth on;
upstream conductor_backend { conductor_balancer; }
--- env
CONDUCTOR_TEST_CLIENT_KEY=sk-from-env
--- request eval
my $s = do { local $/; open my $f, '<', "$ENV{TEST_NGINX_ROOT}/t/data/secret.txt" or die; <$f> };
$s =~ s/\s+\z//;
[ map { { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"fast","messages":[]}',
          headers => { Authorization => "Bearer $_" } } } ('sk-from-env', $s, 'sk-from-envx') ]
--- checks
is_deeply [ map { $_->{status} } @$resps ], [ 200, 200, 401 ], 'both sources, and nothing like them';
