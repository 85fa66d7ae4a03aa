# Limits: a key at any of its limits is never sent a request, even under
# concurrency across workers; 429 with Retry-After when nothing has room;
# cooldowns from the provider's headers; the breaker; 401/403; the queue.
use lib 't/lib';
use Test::Conductor;
use IO::Socket::INET;
use Time::HiRes qw(time);

# N requests sent at once on N connections, then read: truly concurrent
sub parallel {
    my ($env, $n, $body, $path) = @_;
    $path //= '/v1/chat/completions';
    my @socks;
    for (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $env->{TEST_NGINX_PORT}, Proto => 'tcp') or die "connect: $!";
        print $s "POST $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            . "Content-Type: application/json\r\nContent-Length: " . length($body)
            . "\r\n\r\n$body";
        push @socks, $s;
    }
    my @out;
    for my $s (@socks) {
        local $/;
        my $raw = <$s>;
        my ($head, $rest) = split /\r\n\r\n/, $raw // '', 2;
        my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};
        my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } split /\r\n/, $head // '';
        push @out, { status => $status // 0, headers => \%h, body => $rest };
    }
    return @out;
}

# a key in status_report() (the harness's): read after the answers, which
# http_request returns once nginx has logged, so once the module counted them
sub key_status {
    my ($st, $provider, $key) = @_;
    my ($p) = grep { $_->{name} eq $provider } @{ $st->{providers} };
    my ($k) = grep { $_->{name} eq $key } @{ $p->{keys} };
    return $k;
}

block_defaults(
    config => <<'SERVER',
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
    location = /conductor/status { conductor_status; }
SERVER
);

run_tests();

__DATA__

=== TEST 1: rpm: the third request in a minute gets 429 from the gateway itself
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 s1 rpm=2; }
conductor_model m { p pm; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","messages":[]}} } 1 .. 3 ]
--- error_code: 429
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"error":\{"message":"every key that serves this model is at its limit","type":"rate_limit_exceeded"
--- checks
is scalar(@$mock), 2, 'two requests reached the provider, never the third';
is $resps->[1]{status}, 200, 'the second passed';
my $ra = $resp->{headers}{'retry-after'};
# the sliding estimate of a full bucket drops below the limit within 1.5 W
ok defined $ra && $ra >= 1 && $ra <= 90, "Retry-After within 90 s ($ra)";

=== TEST 2: exact under concurrency across two workers: 12 at once, rpm=5
--- main_config
worker_processes 2;
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 "k1;ttfb=300" rpm=5; }
conductor_model m { p pm; }
upstream conductor_backend { conductor_balancer; }
--- request
GET /conductor/status
--- checks
my @r = parallel($env, 12, '{"model":"m","messages":[]}');
my $mock_now = mock_requests();
is scalar(grep { $_->{status} == 200 } @r), 5, 'five answered';
is scalar(grep { $_->{status} == 429 } @r), 7, 'seven refused';
is scalar(@$mock_now), 5, 'exactly five reached the provider';

=== TEST 3: max_inflight holds under concurrency; rpm room on another key is used
--- http_config
conductor_zone conductor:1m;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key a "a;ttfb=400" max_inflight=2;
    key b "b;ttfb=400" max_inflight=1;
}
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request
GET /conductor/status
--- checks
my @r = parallel($env, 5, '{"model":"m","messages":[]}');
my $got = mock_requests();
is scalar(grep { $_->{status} == 200 } @r), 3, 'three in flight at most';
my %by; $by{$_->{key}}++ for @$got;
is_deeply \%by, { 'a;ttfb=400' => 2, 'b;ttfb=400' => 1 }, 'two on a, one on b';

=== TEST 4: tpm with a capped estimate: an empty key always fits, then the real usage counts
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 "k1;prompt_tokens=40;completion_tokens=30" tpm=100; }
conductor_model m { p pm; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","max_tokens":5000,"messages":[]}} } 1 .. 2 ]
--- error_code: 429
--- checks
is $resps->[0]{status}, 200, 'max_tokens far over tpm, yet the empty key took it';
is scalar(@$mock), 1, 'the second did not fit: 70 used + its estimate > 100';
my $k = key_status(status_report(), 'p', 'k1');
is $k->{limits}{tpm}{used}, 70, 'the window holds the real usage, not the estimate';

=== TEST 5: small requests fit the tokens left
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 "k1;prompt_tokens=10;completion_tokens=5" tpm=100; }
conductor_model m { p pm; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","max_tokens":10,"messages":[]}} } 1 .. 4 ]
--- error_code: 200
--- checks
is scalar(@$mock), 4, 'all four fit (15 tokens each)';

=== TEST 6: a 429 cools the key down for its Retry-After; the next request skips it
--- http_config
conductor_zone conductor:1m;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key a "a;status=429;retry_after=30";
    key b bsecret;
}
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","messages":[]}} } 1 .. 2 ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{key} } @$mock ], ['a;status=429;retry_after=30', 'bsecret', 'bsecret'],
    'a once, then b directly';
my $k = key_status(status_report(), 'p', 'a');
my $left = ($k->{cooldown_until} // 0) / 1000 - time;
ok $left > 25 && $left <= 31, "cooling down for Retry-After: 30 s ($left)";
is $k->{errors}{429}, 1, 'counted as a 429';

=== TEST 7: retry-after-ms, OpenAI reset durations and Anthropic's RFC 3339 resets
--- http_config
conductor_zone conductor:1m;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key ms  "ms;status=429;retry_after_ms=45000";
    key oai "oai;status=429;reset_requests=6m0s";
    key ant "ant;status=429;an_reset=120";
    key ok okk;
}
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- error_code: 200
--- checks
my $st = status_report();
my %left = map { $_ => (key_status($st, 'p', $_)->{cooldown_until} // 0) / 1000 - time } qw(ms oai ant);
ok $left{ms} > 40 && $left{ms} <= 46, "retry-after-ms 45000 ($left{ms})";
ok $left{oai} > 355 && $left{oai} <= 361, "x-ratelimit-reset-requests 6m0s ($left{oai})";
ok $left{ant} > 115 && $left{ant} <= 121, "anthropic-ratelimit-requests-reset ($left{ant})";
is $resp->{headers}{'x-conductor-attempts'}, 4, 'three 429s, then the fourth key';

=== TEST 8: a 429 without any hint backs off exponentially
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key a "a;status=429"; key b bb; }
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- error_code: 200
--- checks
my $left = (key_status(status_report(), 'p', 'a')->{cooldown_until} // 0) / 1000 - time;
ok $left > 0 && $left <= 1.5, "first backoff about a second ($left)";

=== TEST 9: x-ratelimit-remaining from an answer corrects the local view
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key a "a;remaining_requests=0;remaining_tokens=77;reset_requests=20s"; key b bb; }
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","messages":[]}} } 1 .. 2 ]
--- error_code: 200
--- checks
is_deeply [ map { substr $_->{key}, 0, 1 } @$mock ], ['a', 'b'], 'the spent key is skipped until its reset';
my $k = key_status(status_report(), 'p', 'a');
is_deeply $k->{provider_remaining}, { requests => 0, tokens => 77 }, "the provider's view";

=== TEST 10: 401 disables the key with a warning naming it, never the secret
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key bad "bad-secret-xyz;status=401"; key good good-secret; }
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","messages":[]}} } 1 .. 3 ]
--- error_code: 200
--- checks
is scalar(grep { $_->{key} =~ /^bad/ } @$mock), 1, 'the bad key was tried once';
is $resps->[0]{status}, 401, "the client saw the provider's 401 (no failover on 401)";
ok key_status(status_report(), 'p', 'bad')->{disabled}, 'disabled';
--- error_log
key "bad" of provider "p" answered 401: disabled
--- no_error_log eval
[qr/^(?!.*x-mock-key).*bad-secret-xyz/m]

=== TEST 11: the breaker opens after consecutive failures and a probe closes it
--- http_config
conductor_zone conductor:1m;
conductor_breaker failures=2 timeout=1s;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key flaky "flaky;status=500;fail_first=2";
    key steady steady;
}
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","messages":[]}} } 1 .. 3 ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{key} =~ /^flaky/ ? 'f' : 's' } @$mock ], [qw(f s f s s)],
    'two failures, then flaky is skipped';
is key_status(status_report(), 'p', 'flaky')->{breaker}, 'open', 'open';
select undef, undef, undef, 1.3;    # the breaker's own timeout, then a probe
my $r = http_request(POST => '/v1/chat/completions', {}, '{"model":"m","messages":[]}');
is $r->{status}, 200, 'probe answered';
is $r->{headers}{'x-conductor-key'}, 'flaky', 'the probe went to the recovered key';
is key_status(status_report(), 'p', 'flaky')->{breaker}, 'closed', 'closed again';

=== TEST 12: a provider that cannot be reached opens its breaker for all its keys
--- http_config
conductor_zone conductor:1m;
conductor_breaker failures=1 timeout=60s;
conductor_provider dead { url http://127.0.0.1:$TEST_NGINX_DEAD_PORT/v1; key d1 s; key d2 s; }
conductor_provider live { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key l1 s; }
conductor_model m { dead a; live b priority=2; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","messages":[]}} } 1 .. 2 ]
--- error_code: 200
--- response_headers
X-Conductor-Attempts: 1
--- checks
is $resps->[0]{headers}{'x-conductor-attempts'}, 2, 'first: one dead key, then live';

=== TEST 13: the queue waits for room, then the request goes through
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k "k;ttfb=300" max_inflight=1; }
conductor_model m { p pm; }
conductor_queue timeout=20s max=10;
upstream conductor_backend { conductor_balancer; }
--- request
GET /conductor/status
--- checks
my @r = parallel($env, 3, '{"model":"m","messages":[]}');
is_deeply [ map { $_->{status} } @r ], [200, 200, 200], 'all three served, one after the other';
is scalar(@{ mock_requests() }), 3, 'each reached the provider once';

=== TEST 14: the queue times out with 429 and Retry-After
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k "k;ttfb=3000" max_inflight=1; }
conductor_model m { p pm; }
conductor_queue timeout=300ms max=10;
upstream conductor_backend { conductor_balancer; }
--- request
GET /conductor/status
--- checks
my @r = parallel($env, 2, '{"model":"m","messages":[]}');
is $r[0]{status}, 200, 'the first was served';
is $r[1]{status}, 429, 'the second waited, then gave up';
ok $r[1]{headers}{'retry-after'}, 'with Retry-After';

=== TEST 15: a full queue refuses at once
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k "k;ttfb=1500" max_inflight=1; }
conductor_model m { p pm; }
conductor_queue timeout=10s max=1;
upstream conductor_backend { conductor_balancer; }
--- request
GET /conductor/status
--- checks
my @r = parallel($env, 3, '{"model":"m","messages":[]}');
is_deeply [ sort map { $_->{status} } @r ], [200, 200, 429], 'one served, one queued then served, one refused';

=== TEST 16: the Anthropic endpoint answers 429 in its own shape
--- http_config
conductor_zone conductor:1m;
conductor_provider a { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; api anthropic; key k s rpm=1; }
conductor_model m { a am; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/messages\n{"model":"m","max_tokens":1,"messages":[]}} } 1 .. 2 ]
--- error_code: 429
--- response_body_like: ^\{"type":"error","error":\{"type":"rate_limit_error"
