# Strategies: how each one spreads many requests over keys and providers of
# different speed, price and capacity, through a real nginx and the mock
# providers; priority tiers under every strategy; the request's own
# "routing" object; limits shared by two workers.
use lib 't/lib';
use Test::Conductor;
use IO::Socket::INET ();
use IO::Select ();
use Time::HiRes ();

# A chat request for the block's request list.
sub chat {
    my ($model, %opt) = @_;
    my $path = $opt{path} // '/v1/chat/completions';
    my $routing = defined $opt{routing} ? qq{"routing":$opt{routing},} : '';
    return qq{POST $path\n{${routing}"model":"$model","messages":[{"role":"user","content":"hi"}]}};
}


block_defaults(
    config => <<'SERVER',
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
SERVER
);

run_tests();

__DATA__

=== TEST 1: round_robin: providers alternate, then the keys inside each provider
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;  key a sa; key b sb; }
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key c sc; key d sd; }
conductor_model m { p1 m1; p2 m2; }
conductor_strategy round_robin;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { chat('m') } 1 .. 8 ]
--- error_code: 200
--- checks
is scalar(@$mock), 8, 'eight requests upstream';
is_deeply [ map { $_->{headers}{'x-conductor-provider'} } @$resps ], [ ('p1', 'p2') x 4 ],
    'p1, p2, p1, p2 ...';
is_deeply [ map { $_->{key} } @$mock ], [qw(sa sc sb sd sa sc sb sd)],
    'keys alternate inside each provider';
is_deeply [ map { $_->{port} } @$mock ],
    [ ($env->{TEST_NGINX_MOCK_PORT}, $env->{TEST_NGINX_MOCK_PORT2}) x 4 ], 'the providers\' ports';
is_deeply [ map { $_->{json}{model} } @$mock ], [ ('m1', 'm2') x 4 ], 'each with its model';

=== TEST 2: sequential fills the first key to its rpm, then the next; then 429 from the gateway
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key a sa rpm=3; key b sb rpm=2; }
conductor_model m { p1 pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request_eval
away_from_minute_edge(45);
[ map { chat('m') } 1 .. 6 ]
--- error_code: 429
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"error":\{"message":"every key that serves this model is at its limit","type":"rate_limit_exceeded"
--- checks
is_deeply [ map { $_->{status} } @$resps ], [ (200) x 5, 429 ], '5 answered, the 6th refused';
is_deeply [ map { $_->{key} } @$mock ], [qw(sa sa sa sb sb)], '3 to the first key, then 2 to the next';
is_deeply [ map { $_->{headers}{'x-conductor-key'} // '' } @$resps[0 .. 4] ], [qw(a a a b b)],
    'X-Conductor-Key of each answer';
like $resp->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/, 'the refusal says when to retry';
ok !defined $resp->{headers}{'x-conductor-key'}, 'no key named on the refusal';

=== TEST 3: sequential over providers: the first provider until it is limited, then the next
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;  key a sa rpm=2; }
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key c sc; }
conductor_model m { p1 m1; p2 m2; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request_eval
away_from_minute_edge(45);
[ map { chat('m') } 1 .. 5 ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{headers}{'x-conductor-provider'} } @$resps ], [qw(p1 p1 p2 p2 p2)],
    'p1 to its limit, then p2';

=== TEST 4: simple: the first candidate of the lowest tier; tier 2 only when tier 1 is limited
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;  key a sa rpm=2; key b sb rpm=1; }
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key c sc; }
conductor_model m { p2 m2 priority=2; p1 m1; }
upstream conductor_backend { conductor_balancer; }
--- config
location /v1/ {
    conductor_strategy simple;
    conductor_route;
    include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
}
--- request_eval
away_from_minute_edge(45);
[ map { chat('m') } 1 .. 6 ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{key} } @$mock ], [qw(sa sa sb sc sc sc)],
    'first key, then the second of tier 1, then tier 2 (listed first in the alias)';
is_deeply [ map { $_->{json}{model} } @$mock ], [qw(m1 m1 m1 m2 m2 m2)], 'models';

=== TEST 5: priority: the same, and an unlimited tier 1 takes everything
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;  key a sa rpm=2; key b sb rpm=1; }
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key c sc; }
conductor_provider p3 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT3/v1; key e se; key f sf; }
conductor_model m { p2 m2 priority=2; p1 m1; }
conductor_model u { p2 m2 priority=2; p3 m3 priority=1; }
upstream conductor_backend { conductor_balancer; }
--- config
location /v1/ {
    conductor_strategy priority;
    conductor_route;
    include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
}
--- request_eval
away_from_minute_edge(45);
[ (map { chat('m') } 1 .. 6), (map { chat('u') } 1 .. 6) ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{key} } @$mock[0 .. 5] ], [qw(sa sa sb sc sc sc)], 'limited tier 1, then tier 2';
is_deeply [ map { $_->{key} } @$mock[6 .. 11] ], [ ('se') x 6 ], 'always the first candidate';

=== TEST 6: weighted 3:1 over 40 requests is exactly 30 / 10
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;  key a sa; }
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key c sc; }
conductor_model m { p1 m1 weight=3; p2 m2 weight=1; }
conductor_strategy weighted;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { chat('m') } 1 .. 40 ]
--- error_code: 200
--- checks
is scalar(@$mock), 40, '40 upstream';
is_deeply tally(map { $_->{json}{model} } @$mock), { m1 => 30, m2 => 10 }, '30 / 10';
my @first8 = map { $_->{json}{model} } @$mock[0 .. 7];
is scalar(grep { $_ eq 'm2' } @first8), 2, 'spread: 2 of every 8 to the light side';

=== TEST 7: random: 1:1 over 200 is roughly even; 9:1 leans on the heavy side
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;  key a sa; }
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key c sc; }
conductor_model even  { p1 e1 weight=1; p2 e2 weight=1; }
conductor_model heavy { p1 h1 weight=9; p2 h2 weight=1; }
conductor_strategy random;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ (map { chat('even') } 1 .. 200), (map { chat('heavy') } 1 .. 200) ]
--- error_code: 200
--- checks
is scalar(@$mock), 400, '400 upstream';
my $n = tally(map { $_->{json}{model} } @$mock);
diag "random: e1=$n->{e1} e2=$n->{e2} h1=$n->{h1} h2=$n->{h2}";
is +($n->{e1} // 0) + ($n->{e2} // 0), 200, 'even: 200';
ok +($n->{e1} // 0) >= 60 && ($n->{e1} // 0) <= 140, 'even: first side within 60..140';
ok +($n->{e2} // 0) >= 60 && ($n->{e2} // 0) <= 140, 'even: second side within 60..140';
cmp_ok $n->{h1} // 0, '>', 150, 'heavy: the weight-9 side over 150 of 200';
cmp_ok $n->{h2} // 0, '>', 0, 'heavy: the weight-1 side is not starved';

=== TEST 8: least_used: two keys without limits share 20 requests evenly
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key a sa; key b sb; }
conductor_model m { p1 pm; }
conductor_strategy least_used;
upstream conductor_backend { conductor_balancer; }
--- request_eval
away_from_minute_edge(45);
[ map { chat('m') } 1 .. 20 ]
--- error_code: 200
--- checks
my $n = tally(map { $_->{key} } @$mock);
diag "least_used: a=" . ($n->{sa} // 0) . " b=" . ($n->{sb} // 0);
cmp_ok abs(($n->{sa} // 0) - ($n->{sb} // 0)), '<=', 2, 'even split (10 +- 1 each)';
is +($n->{sa} // 0) + ($n->{sb} // 0), 20, 'all 20';

=== TEST 9: least_latency: once both are measured, the fast provider takes the traffic
--- http_config
conductor_zone conductor:1m;
conductor_provider slow { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;  key s ss; }
conductor_provider fast { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key f sf; }
conductor_model m { slow "lat-m;ttfb=150"; fast lat-m; }
conductor_strategy least_latency;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { chat('m') } 1 .. 22 ]
--- error_code: 200
--- checks
my @p = map { $_->{headers}{'x-conductor-provider'} // '' } @$resps;
is_deeply [ sort @p[0, 1] ], [qw(fast slow)], 'each measured once first';
my $fast = grep { $_ eq 'fast' } @p[2 .. 21];
diag "least_latency: fast took $fast of 20";
cmp_ok $fast, '>=', 15, 'the fast provider took at least 15 of the next 20';

=== TEST 10: least_cost: the cheapest until its limit, then the next; an unpriced model last
--- http_config
conductor_zone conductor:1m;
conductor_provider free  { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key u su; }
conductor_provider dear  {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1;
    key e se rpm=2;
    price dear-m input=5 output=15;
}
conductor_provider cheap {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT3/v1;
    key c sc rpm=3;
    price cheap-m input=0.5 output=1.5;
}
conductor_model m { free unpriced-m; dear dear-m; cheap cheap-m; }
conductor_strategy least_cost;
upstream conductor_backend { conductor_balancer; }
--- request_eval
away_from_minute_edge(45);
[ map { chat('m') } 1 .. 7 ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{json}{model} } @$mock ],
    [qw(cheap-m cheap-m cheap-m dear-m dear-m unpriced-m unpriced-m)],
    'cheap to its rpm, then dear to its rpm, then the unpriced one';

=== TEST 11: least_loaded: the key with the most remaining capacity first, and most of the load
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key small ss rpm=2; key big sb rpm=10; }
conductor_model m { p1 pm; }
conductor_strategy least_loaded;
upstream conductor_backend { conductor_balancer; }
--- request_eval
away_from_minute_edge(45);
[ map { chat('m') } 1 .. 6 ]
--- error_code: 200
--- checks
my @k = map { $_->{headers}{'x-conductor-key'} // '' } @$resps;
diag "least_loaded: @k";
is $k[0], 'big', 'first request: the key with 10 left, not the one with 2 (listed first)';
cmp_ok scalar(grep { $_ eq 'big' } @k), '>=', 4, 'the rpm=10 key took at least 4 of 6';
cmp_ok scalar(grep { $_ eq 'small' } @k), '<=', 2, 'the rpm=2 key never past its limit';

=== TEST 12: every strategy leaves tier 2 alone while tier 1 has room
--- http_config
conductor_zone conductor:1m;
conductor_provider t1 {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key a sa rpm=200;
    key b sb rpm=200;
    price t1-m input=9 output=9;
}
conductor_provider t2 {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1;
    key c sc rpm=100000;
    price t2-m input=0.1 output=0.1;
}
# tier 2 is listed first, cheaper, heavier, bigger, never measured and
# unused: every strategy would prefer it if it ignored the tiers
conductor_model m { t2 t2-m priority=2 weight=50; t1 t1-m weight=1; }
upstream conductor_backend { conductor_balancer; }
--- config
location /round_robin/v1/   { conductor_strategy round_robin;   conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
location /least_loaded/v1/  { conductor_strategy least_loaded;  conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
location /sequential/v1/    { conductor_strategy sequential;    conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
location /simple/v1/        { conductor_strategy simple;        conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
location /priority/v1/      { conductor_strategy priority;      conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
location /weighted/v1/      { conductor_strategy weighted;      conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
location /random/v1/        { conductor_strategy random;        conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
location /least_used/v1/    { conductor_strategy least_used;    conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
location /least_latency/v1/ { conductor_strategy least_latency; conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
location /least_cost/v1/    { conductor_strategy least_cost;    conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
--- request_eval
away_from_minute_edge(45);
my @s = qw(round_robin least_loaded sequential simple priority weighted random least_used least_latency least_cost);
[ map { my $s = $_; map { chat('m', path => "/$s/v1/chat/completions") } 1 .. 8 } @s ]
--- error_code: 200
--- checks
my @s = qw(round_robin least_loaded sequential simple priority weighted random least_used least_latency least_cost);
for my $i (0 .. $#s) {
    my @got = map { $_->{headers}{'x-conductor-provider'} // "status $_->{status}" } @$resps[8 * $i .. 8 * $i + 7];
    is_deeply \@got, [ ('t1') x 8 ], "$s[$i]: tier 1 only";
}
is scalar(grep { $_->{port} != $env->{TEST_NGINX_MOCK_PORT} } @$mock), 0, 'nothing reached the tier-2 provider';
is scalar(@$mock), 80, 'all 80 went upstream';

=== TEST 13: routing override: strategy and provider per request, then back to the location's
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;  key a sa; }
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key c sc; }
conductor_provider p3 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT3/v1; key e se; price m3 input=0.1 output=0.1; }
conductor_model m { p1 m1; p2 m2; p3 m3 priority=2; }
conductor_strategy round_robin;
conductor_allow_override on;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ (map { chat('m', routing => '{"strategy":"sequential"}') } 1 .. 4),
  (map { chat('m', routing => '{"provider":"p2"}') } 1 .. 3),
  chat('m', routing => '{"strategy":"least_cost","provider":"p2","fallback_enabled":false}'),
  chat('m', routing => '{"provider":"p3"}'),
  chat('m'), chat('m') ]
--- error_code: 200
--- checks
my @p = map { $_->{headers}{'x-conductor-provider'} // "status $_->{status}" } @$resps;
is_deeply [ @p[0 .. 3] ], [qw(p1 p1 p1 p1)], '"strategy":"sequential": always the first';
is_deeply [ @p[4 .. 6] ], [qw(p2 p2 p2)], '"provider":"p2": only p2';
is $p[7], 'p2', 'strategy, provider and fallback_enabled together';
is $p[8], 'p3', 'a provider of tier 2 can be asked for by name';
isnt $p[9], $p[10], 'without routing: round robin again';
is scalar(grep { $_->{body} =~ /routing/ } @$mock), 0, 'no "routing" ever went upstream';
is scalar(@$mock), 11, 'one attempt each';

=== TEST 14: "fallback_enabled":false makes one attempt only
--- http_config
conductor_zone conductor:1m;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key bad "bad;status=503";
    key good sg;
}
conductor_model m { p pm; }
conductor_strategy sequential;
conductor_allow_override on;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ chat('m', routing => '{"fallback_enabled":false}'),
  chat('m'),
  chat('m', routing => '{"fallback_enabled":true}') ]
--- error_code: 200
--- checks
is $resps->[0]{status}, 503, 'no fallback: the first key\'s 503 is the answer';
is $resps->[0]{headers}{'x-conductor-attempts'}, 1, 'one attempt';
is $resps->[1]{status}, 200, 'by default: failover';
is $resps->[1]{headers}{'x-conductor-attempts'}, 2, 'two attempts';
is $resps->[2]{status}, 200, 'fallback_enabled true: failover';
is_deeply [ map { $_->{key} } @$mock ], [qw(bad;status=503 bad;status=503 sg bad;status=503 sg)],
    'what reached the provider';

=== TEST 15: conductor_allow_override off (the default): routing ignored, still stripped
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;  key a sa; }
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key c sc; }
conductor_model m { p1 m1; p2 m2; }
conductor_strategy round_robin;
upstream conductor_backend { conductor_balancer; }
--- config
location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
location /off/v1/ {
    conductor_allow_override off;
    conductor_route;
    include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
}
--- request_eval
[ (map { chat('m', routing => '{"strategy":"sequential","provider":"p1"}') } 1 .. 4),
  chat('m', routing => '{"strategy":"no-such-strategy","provider":"no-such-provider"}', path => '/off/v1/chat/completions'),
  chat('m', routing => '{"strategy":"sequential","provider":"p1"}', path => '/off/v1/chat/completions') ]
--- error_code: 200
--- checks
my @p = map { $_->{headers}{'x-conductor-provider'} // "status $_->{status}" } @$resps;
is_deeply [ @p[0 .. 3] ], [qw(p1 p2 p1 p2)], 'routing ignored: round robin';
is $resps->[4]{status}, 200, 'unknown names ignored too';
is $p[5], 'p2', 'off: still round robin';
is scalar(@$mock), 6, 'all upstream';
is scalar(grep { $_->{body} =~ /routing/ } @$mock), 0, 'no "routing" ever went upstream';
is_deeply [ map { join ',', sort keys %{ $_->{json} } } @$mock ], [ ('messages,model') x 6 ], 'only the other fields';

=== TEST 16: an unknown strategy or provider in routing is the client's error, in the OpenAI shape
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key a sa; }
conductor_model m { p1 m1; }
conductor_allow_override on;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ chat('m', routing => '{"strategy":"fastest"}'),
  chat('m', routing => '{"provider":"nope"}') ]
--- error_code: 400
--- response_headers
Content-Type: application/json
--- checks
is $resps->[0]{status}, 400, 'unknown strategy: 400';
is_deeply $resps->[0]{json},
    { error => { message => 'unknown "routing.strategy"', type => 'invalid_request_error', param => undef, code => undef } },
    'OpenAI error object';
is_deeply $resps->[1]{json},
    { error => { message => 'unknown "routing.provider"', type => 'invalid_request_error', param => undef, code => undef } },
    'unknown provider: OpenAI error object';
is scalar(@$mock), 0, 'nothing went upstream';

=== TEST 17: two workers, concurrent requests: the rpm limit in shared memory holds for both
--- main_config
worker_processes 2;
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key a sa rpm=3;
    key b sb;
}
conductor_model m { p1 "seq-m;ttfb=100"; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- config
location /v1/ {
    add_header X-Worker $pid always;
    conductor_route;
    include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
}
--- checks
away_from_minute_edge(45);
my @all;
# bursts of concurrent connections until both workers have answered
for my $round (1 .. 5) {
    push @all, @{ burst(12, '{"model":"m","messages":[]}') };
    last if keys %{ tally(map { $_->{headers}{'x-worker'} // '' } @all) } >= 2;
}
my $workers = tally(map { $_->{headers}{'x-worker'} // '' } @all);
diag 'answers per worker: ' . join(' ', map { "$_=$workers->{$_}" } sort keys %$workers);
# valgrind runs nginx as a single process: one worker is all there is
is scalar(keys %$workers), $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 2, 'both workers answered';
is scalar(grep { ($_->{status} // 0) == 200 } @all), scalar(@all), 'every request answered 200';
# $mock was read before these requests: ask the mock again
my $keys = tally(map { $_->{key} } @{ mock_requests() });
is $keys->{sa}, 3, 'exactly 3 to the rpm=3 key';
is $keys->{sb}, @all - 3, 'the rest to the next key';

=== TEST 18: routing.provider naming a provider that does not serve the model is the client's error
--- http_config
conductor_zone conductor:1m;
conductor_provider p1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;  key a sa; }
conductor_provider p2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key c sc; }
conductor_model m { p1 m1; }
conductor_allow_override on;
upstream conductor_backend { conductor_balancer; }
--- request_eval
chat('m', routing => '{"provider":"p2"}')
--- error_code: 400
--- checks
is $resp->{json}{error}{type}, 'invalid_request_error', 'OpenAI error object of a client error';
ok !defined $resp->{headers}{'retry-after'}, 'no Retry-After: nothing is limited';
is scalar(@$mock), 0, 'nothing went upstream';
