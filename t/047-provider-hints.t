# What a provider's answer may ask of a key, and how far the gateway goes:
#   - cooldown hints (Retry-After seconds or HTTP-date, retry-after-ms,
#     x-ratelimit-reset-* durations, anthropic-ratelimit-*-reset RFC 3339
#     dates) are clamped to `conductor_cooldown max=` (default 15m); past
#     dates, garbage and overflowing numbers are ignored, and a 429 then backs
#     off by the gateway's own backoff (1 s, doubling, clamped too); never a
#     cooldown for centuries, never a wrap into a negative cooldown_until;
#   - a 401/403 disables the key, and after `conductor_cooldown disabled=`
#     (default 5m) one request probes it; a success enables it again;
#   - when every candidate's breaker is open the gateway answers 503 in the
#     endpoint's dialect ("... failing ...") with Retry-After = the seconds
#     until a probe is let through; a key merely at its rpm limit still 429.
# The hostile values are sent as they are by the mock's raw_* tokens.
use lib 't/lib';
use Test::Conductor;
use Time::HiRes qw(time);

use vars qw($CHAT $MESSAGES);
$CHAT     = '{"model":"m","messages":[]}';
$MESSAGES = '{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}';

# a key in a status report
sub key_status {
    my ($st, $provider, $key) = @_;
    my ($p) = grep { $_->{name} eq $provider } @{ $st->{providers} || [] };
    my ($k) = grep { $_->{name} eq $key } @{ $p->{keys} || [] };
    return $k || {};
}

sub chat { return http_request(POST => '/v1/chat/completions', {}, $CHAT) }

# Sends requests ($send->()) every 0.1 s until $want->($resp) holds, for at
# most $timeout s; returns (that response or undef, when it was sent, when
# it was answered). Bounds on when a key came back use the answer's time for
# "not before" (nginx decided before that) and the sending time for "not
# after" (nginx decided after that), so a slow machine cannot fail them.
sub poll_until {
    my ($send, $want, $timeout, $what) = @_;
    my ($got, $sent, $answered);
    wait_for(sub {
        $sent = time;
        my $x = $send->();
        $answered = time;
        $got = $x if $want->($x);
        $got;
    }, timeout => $timeout, interval => 0.1, what => $what);
    return ($got, $sent, $answered);
}

# the seconds of a Retry-After header when it is a plain integer, else undef
sub retry_after_seconds {
    my ($r) = @_;
    my $v = $r->{headers}{'retry-after'};
    return defined $v && $v =~ /^\s*(\d+)\s*$/ ? $1 : undef;
}

block_defaults(
    config => <<'SERVER',
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
    location = /conductor/status { conductor_status; }
SERVER
);

run_tests();

__DATA__

=== TEST 1: hostile cooldown hints, default max (15m): never beyond now + 15 min, never wrapped; ignored ones back off ~1 s
--- http_config
conductor_zone conductor:1m;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key big     "big;status=429;raw_retry_after=1000000000000";
    key hours   "hours;status=429;raw_reset_requests=999999h";
    key year    "year;status=429;raw_an_reset=9999-12-31T23:59:59Z";
    key wrap    "wrap;status=429;raw_retry_after=9223372036854775";
    key msbig   "msbig;status=429;raw_retry_after_ms=99999999999999999";
    key ovf     "ovf;status=429;raw_retry_after=18446744073709551617";
    key neg     "neg;status=429;raw_retry_after=-5";
    key past    "past;status=429;raw_retry_after=Wed, 21 Oct 2015 07:28:00 GMT";
    key junk    "junk;status=429;raw_retry_after=soon";
    key anpast  "anpast;status=429;raw_an_reset=2001-01-01T00:00:00Z";
    key durjunk "durjunk;status=429;raw_reset_requests=forever";
    key msovf   "msovf;status=429;raw_retry_after_ms=18446744073709551617";
    key durovf  "durovf;status=429;raw_reset_requests=99999999999999999999s";
    key date    "date;status=429;raw_retry_after=Fri, 31 Dec 9999 23:59:59 GMT";
    key ok      okk;
}
conductor_model m { p pm; }
conductor_strategy sequential;
conductor_retries 15;
upstream conductor_backend { conductor_balancer; }
--- checks
my @clamped = qw(big hours year wrap msbig date);
my @ignored = qw(ovf neg past junk anpast durjunk msovf durovf);
my $t0 = time;
my $r = chat();
my $t1 = time;
is $r->{status}, 200, 'served in the end';
is $r->{headers}{'x-conductor-key'}, 'ok', 'by the one key that did not answer 429';
is scalar(@{ mock_requests() }), 15, 'every key was tried once';
my $st = status_report();
my $t2 = time;
for my $name (@clamped) {
    my $cu = key_status($st, 'p', $name)->{cooldown_until};
    ok defined $cu, "$name: cooling down";
    $cu //= 0;
    cmp_ok $cu, '>=', int($t0 * 1000), "$name: cooldown_until $cu is not in the past (no wrap to a negative or small number)";
    cmp_ok $cu, '<=', int(($t1 + 15 * 60) * 1000) + 1000,
        sprintf("$name: cooldown_until at most now + 15 min (%.0f s from now)", $cu / 1000 - $t1);
}
SKIP: {
    # a backoff of 1 s can be over before a starved machine reads the status
    skip sprintf('the status was read %.2f s after the 429s: a 1 s backoff may be over', $t2 - $t0), 2 * @ignored
        if $t2 - $t0 > 0.9;
    for my $name (@ignored) {
        my $cu = key_status($st, 'p', $name)->{cooldown_until};
        ok defined $cu, "$name: the hint is ignored, the gateway's own backoff applies (not 0)";
        $cu //= 0;
        ok $cu >= int($t0 * 1000) + 900 && $cu <= int($t1 * 1000) + 1100,
            sprintf("$name: about one second of backoff (%.3f s after the request started)", $cu / 1000 - $t0);
    }
}
# not huge: the ignored keys are usable again within a couple of seconds,
# while the clamped ones still cool down
my $later = status_wait(sub {
    my $s = $_;
    !grep { defined key_status($s, 'p', $_)->{cooldown_until} } @ignored;
}, timeout => 4, what => 'the keys with ignored hints to come out of their backoff');
for my $name (@ignored) {
    ok !defined key_status($later, 'p', $name)->{cooldown_until}, "$name: backoff over within seconds";
}
ok defined key_status($later, 'p', 'big')->{cooldown_until}, 'big: still cooling down meanwhile';

=== TEST 2: conductor_cooldown max=3s: huge hints cool a key down 3 s, then it serves again
--- http_config
conductor_zone conductor:1m;
conductor_cooldown max=3s;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key big   "big;status=429;fail_first=1;raw_retry_after=1000000000000";
    key hours "hours;status=429;raw_reset_requests=999999h";
    key year  "year;status=429;raw_an_reset=9999-12-31T23:59:59Z";
    key msbig "msbig;status=429;raw_retry_after_ms=99999999999999999";
    key date  "date;status=429;raw_retry_after=Fri, 31 Dec 9999 23:59:59 GMT";
    key wrap  "wrap;status=429;raw_retry_after=9223372036854775";
    key ok    okk;
}
conductor_model m { p pm; }
conductor_strategy sequential;
conductor_retries 10;
upstream conductor_backend { conductor_balancer; }
--- checks
my @clamped = qw(big hours year msbig date);
my $t0 = time;
my $r = chat();
my $t1 = time;
is $r->{headers}{'x-conductor-key'}, 'ok', 'six 429s, then the last key';
my $st = status_report();
for my $name (@clamped) {
    my $cu = key_status($st, 'p', $name)->{cooldown_until} // 0;
    ok $cu >= int($t0 * 1000) + 2900 && $cu <= int($t1 * 1000) + 3100,
        sprintf("$name: clamped to max=3s (cooldown_until %.3f s after the request started)", $cu / 1000 - $t0);
}
my $wcu = key_status($st, 'p', 'wrap')->{cooldown_until};
ok defined $wcu && $wcu >= int($t0 * 1000) && $wcu <= int($t1 * 1000) + 3100,
    'wrap: cooling down at most max=3s, not wrapped: ' . ($wcu // 'null');
# the key serves again once its 3 s are over (it answers 200 from now on)
my ($served, $sent, $answered) = poll_until(\&chat,
    sub { ($_[0]{headers}{'x-conductor-key'} // '') eq 'big' }, 8, 'key big to serve again');
ok $served, 'big serves again';
ok $served && $answered - $t0 >= 2.95 && $sent - $t0 <= 5,
    sprintf('... after about 3 s (sent %.2f s, answered %.2f s after the 429s), not before, not centuries later',
        $sent - $t0, $answered - $t0);
is $served && $served->{status}, 200, '... with a 200';
my $later = status_wait(sub {
    my $s = $_;
    !grep { defined key_status($s, 'p', $_)->{cooldown_until} } @clamped, 'wrap';
}, timeout => 3, what => 'every cooldown to be over');
ok !defined key_status($later, 'p', $_)->{cooldown_until}, "$_: cooldown over" for @clamped, 'wrap';

=== TEST 3: conductor_cooldown disabled=2s: a 401 disables the key, which is probed again after 2 s
--- http_config
conductor_zone conductor:1m;
conductor_cooldown disabled=2s;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k "k;status=401;fail_first=1"; }
conductor_model m { p pm; }
upstream conductor_backend { conductor_balancer; }
--- checks
my $t0 = time;
my $r1 = chat();
is $r1->{status}, 401, "the provider's 401 reaches the client";
my $k = key_status(status_report(), 'p', 'k');
ok $k->{disabled}, '"disabled": true';
my $r2 = chat();
is $r2->{status}, 503, 'the only key is disabled: the gateway answers 503 itself';
is scalar(@{ mock_requests() }), 1, 'nothing was sent upstream for it';
my ($served, $sent, $answered) = poll_until(\&chat, sub { $_[0]{status} == 200 }, 8,
    'the disabled key to be probed');
ok $served, 'after disabled=2s a request probes the key and is served';
ok $served && $answered - $t0 >= 1.95 && $sent - $t0 <= 5,
    sprintf('... about 2 s after the 401 (sent %.2f s, answered %.2f s after it)', $sent - $t0, $answered - $t0);
is $served && $served->{headers}{'x-conductor-key'}, 'k', '... by the key itself';
is scalar(@{ mock_requests() }), 2, 'one probe reached the provider, no request while disabled';
ok !key_status(status_report(), 'p', 'k')->{disabled}, '"disabled": false again';
is chat()->{status}, 200, 'the key serves the next request';
is scalar(@{ mock_requests() }), 3, '... upstream';

=== TEST 4: conductor_cooldown disabled=2s: a 403 on /v1/messages, the same
--- http_config
conductor_zone conductor:1m;
conductor_cooldown disabled=2s;
conductor_provider a { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; api anthropic; key k "k;status=403;fail_first=1"; }
conductor_model m { a am; }
upstream conductor_backend { conductor_balancer; }
--- checks
my $msg = sub { http_request(POST => '/v1/messages', { 'anthropic-version' => '2023-06-01' }, $MESSAGES) };
my $t0 = time;
is $msg->()->{status}, 403, "the provider's 403 reaches the client";
ok key_status(status_report(), 'a', 'k')->{disabled}, '"disabled": true';
my $r2 = $msg->();
is $r2->{status}, 503, 'the only key is disabled: 503';
is $r2->{json} && $r2->{json}{type}, 'error', '... in the Anthropic shape';
my ($served, $sent, $answered) = poll_until($msg, sub { $_[0]{status} == 200 }, 8,
    'the disabled key to be probed');
ok $served, 'probed after disabled=2s and served';
ok $served && $answered - $t0 >= 1.95 && $sent - $t0 <= 5,
    sprintf('... about 2 s after the 403 (sent %.2f s, answered %.2f s after it)', $sent - $t0, $answered - $t0);
is scalar(@{ mock_requests() }), 2, 'one probe, nothing upstream while disabled';
ok !key_status(status_report(), 'a', 'k')->{disabled}, '"disabled": false again';

=== TEST 5: every key's breaker open: 503 in the OpenAI shape, "failing", Retry-After until the probe
--- http_config
conductor_zone conductor:1m;
conductor_breaker failures=1 timeout=5s;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key a "a;status=500"; key b "b;status=500"; }
conductor_model m { p pm; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n$::CHAT} } 1 .. 2 ]
--- error_code: 503
--- response_headers_like
Content-Type: ^application/json
Retry-After: ^[1-5]$
--- response_body_like: ^\{"error":\{"message":"[^"]*(?i:fail)
--- checks
is scalar(@$mock), 2, 'the first request tried both keys; the second sent nothing upstream';
my $j = $resp->{json};
ok ref $j eq 'HASH' && ref $j->{error} eq 'HASH', 'an OpenAI error object';
like $j->{error}{message}, qr/fail/i, 'the message says the provider is failing: ' . ($j->{error}{message} // 'none');
ok defined $j->{error}{type} && !ref $j->{error}{type} && length $j->{error}{type}, 'with a type';
unlike $j->{error}{message} // '', qr/at its limit/, 'not "every key is at its limit"';
my $ra = retry_after_seconds($resp);
ok defined $ra && $ra >= 1 && $ra <= 5, 'Retry-After: the seconds until the breaker lets a probe through (' . ($ra // 'none') . ')';
my $st = status_report();
is key_status($st, 'p', $_)->{breaker}, 'open', "$_: breaker open" for qw(a b);

=== TEST 6: the same on /v1/messages: 503 in the Anthropic shape
--- http_config
conductor_zone conductor:1m;
conductor_breaker failures=1 timeout=5s;
conductor_provider a { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; api anthropic; key k "k;status=500"; }
conductor_model m { a am; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { +{ method => 'POST', uri => '/v1/messages', body => $::MESSAGES, headers => { 'anthropic-version' => '2023-06-01' } } } 1 .. 2 ]
--- error_code: 503
--- response_headers_like
Content-Type: ^application/json
Retry-After: ^[1-5]$
--- response_body_like: ^\{"type":"error","error":\{
--- checks
is scalar(@$mock), 1, 'nothing sent upstream for the second request';
my $j = $resp->{json} || {};
is $j->{type}, 'error', '"type":"error"';
ok ref $j->{error} eq 'HASH' && defined $j->{error}{type} && !ref $j->{error}{type}, 'error.type';
like $j->{error}{message} // '', qr/fail/i, 'error.message says failing: ' . ($j->{error}{message} // 'none');
my $ra = retry_after_seconds($resp);
ok defined $ra && $ra >= 1 && $ra <= 5, 'Retry-After ' . ($ra // 'none');

=== TEST 7: a provider that cannot be reached: its breaker covers every key; 503, not 429
--- http_config
conductor_zone conductor:1m;
conductor_breaker failures=1 timeout=5s;
conductor_provider dead { url http://127.0.0.1:$TEST_NGINX_DEAD_PORT/v1; key d1 s1; key d2 s2; }
conductor_model m { dead dm; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n$::CHAT} } 1 .. 2 ]
--- error_code: 503
--- response_headers_like
Retry-After: ^[1-5]$
--- checks
isnt $resps->[0]{status}, 200, 'the first request failed to connect';
like $resp->{json} && $resp->{json}{error}{message} // '', qr/fail/i,
    'the message says failing: ' . (($resp->{json} && $resp->{json}{error}{message}) // $resp->{body});

=== TEST 8: a key merely at its rpm limit still gets 429 "at its limit"
--- http_config
conductor_zone conductor:1m;
conductor_breaker failures=1 timeout=5s;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k s rpm=1; }
conductor_model m { p pm; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n$::CHAT} } 1 .. 2 ]
--- error_code: 429
--- response_body_like: ^\{"error":\{"message":"every key that serves this model is at its limit","type":"rate_limit_exceeded"
--- checks
is scalar(@$mock), 1, 'one request upstream';
ok $resp->{headers}{'retry-after'}, 'with Retry-After';
