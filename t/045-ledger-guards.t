# The key ledger, guarded: each block here fails when one piece of the
# bookkeeping behind a pick is broken, where the rest of the suite did not
# notice.
#   - the reservation made in the same critical section as the check: bursts
#     of hundreds of concurrent requests on two workers at a key with rpm=N
#     (or max_inflight=N) get exactly N through, every other one a 429
#   - least_cost adds the output price to the input price
#   - a 403 disables the key like a 401
#   - a passing health check resets the failure count
#   - least_latency goes by the moving average of the time to first byte
use lib 't/lib';
use Test::Conductor;
use IO::Select ();
use IO::Socket::INET ();
use POSIX ();
use Time::HiRes ();

my $VALGRIND = $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0;


# a key in a status report
sub key_status {
    my ($st, $provider, $key) = @_;
    my ($p) = grep { $_->{name} eq $provider } @{ $st->{providers} || [] };
    my ($k) = grep { $_->{name} eq $key } @{ $p->{keys} || [] };
    return $k;
}

sub provider_status {
    my ($st, $provider) = @_;
    my ($p) = grep { $_->{name} eq $provider } @{ $st->{providers} || [] };
    return $p;
}

my $env = harness_env();
my $server = <<"SERVER";
    location /v1/ {
        add_header X-Worker \$pid always;
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location = /conductor/status { conductor_status; }
SERVER

# ---- health: a pass resets the failure count (fails=2 passes=1)
#
# The provider's health checks go to a listener of this file that answers
# them in a scripted order: fail, pass, fail, pass, ... then only fails. No
# two failures in a row until the script says so: the provider must stay
# healthy through the alternation, and turn unhealthy at the first two
# failures in a row (that shows the checks are seen at all).
{
    my $port = $env->{TEST_NGINX_DEAD_PORT};
    my $served = "$env->{TEST_NGINX_SERVROOT}/health-served";
    unlink $served;
    my @script = (500, 200, 500, 200, 500, 200, 200, 200);    # then 500 for ever
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
        Listen => 16, ReuseAddr => 1) or die "listen on $port: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        # the harness's END and signal handlers are the parent's business
        $SIG{$_} = 'DEFAULT' for qw(TERM INT HUP);
        my $i = 0;
        while (my $c = $listen->accept) {
            my $req = '';
            my $sel = IO::Select->new($c);
            while ($req !~ /\r\n\r\n/ && $sel->can_read(5)) {
                sysread($c, my $buf, 4096) or last;
                $req .= $buf;
            }
            my $st = $i < @script ? $script[$i] : 500;
            $i++;
            print $c "HTTP/1.1 $st X\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                . "Connection: close\r\n\r\n{}";
            close $c;
            if (open my $f, '>>', $served) { print $f "$i $st\n"; close $f }
        }
        POSIX::_exit(0);
    }
    close $listen;

    my $checks = sub { open my $f, '<', $served or return 0; my @l = <$f>; return scalar @l };

    start_nginx(
        http_config => <<"HTTP",
    conductor_zone conductor:1m;
    conductor_provider h {
        url http://127.0.0.1:$port/v1;
        health_check interval=100ms timeout=3s uri=/models fails=2 passes=1;
        key kh s;
    }
    conductor_provider b { url http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1; key kb s; }
    conductor_model m { h hm; b bm priority=2; }
    upstream conductor_backend { conductor_balancer; }
HTTP
        config => $server,
    );

    # checks 1..3 (fail, pass, fail) were answered and, two checks later,
    # certainly reported; go on to the end of the alternation
    wait_for(sub { $checks->() >= @script }, timeout => 20, what => 'the scripted health checks');
    cmp_ok $checks->(), '>=', scalar(@script), 'the alternating checks were made';
    my $transitions = sub {
        [ map { /(provider "h" is (?:unhealthy|healthy again))/ ? $1 : () } split /\n/, error_log_since_start() ];
    };
    is_deeply $transitions->(), [], 'fail, pass, fail, pass...: never two failures in a row, never unhealthy';
    my $ph = provider_status(status_report(), 'h');
    ok $ph && $ph->{healthy}, 'the status says healthy';

    # then the script fails every check: two in a row make it unhealthy
    ok wait_for(sub { error_log_since_start() =~ /provider "h" is unhealthy/ }, timeout => 20,
        what => 'the provider to turn unhealthy'), 'two failures in a row: unhealthy';
    is_deeply $transitions->(), ['provider "h" is unhealthy'],
        'one transition only: to unhealthy, once the script turned to failures';

    kill 'KILL', $pid;
    waitpid $pid, 0;
    is_deeply stop_nginx(), [], 'health: nginx stopped cleanly';
}

block_defaults(config => <<'SERVER');
    location /v1/ {
        add_header X-Worker $pid always;
        conductor_route;
        include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
        # the shipped allowlist drops client headers; the mock's is needed
        proxy_set_header X-Mock $http_x_mock;
    }
    location = /conductor/status { conductor_status; }
SERVER

run_tests();

__DATA__

=== TEST 1: rpm=N under bursts of concurrent requests on two workers: exactly N reach the provider
--- main_config
worker_processes 2;
--- http_config
conductor_zone conductor:1m;
conductor_provider r1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 r1sec rpm=5; }
conductor_provider r2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k2 r2sec rpm=9; }
conductor_provider r3 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k3 r3sec rpm=14; }
conductor_provider r4 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k4 r4sec rpm=20; }
conductor_provider r5 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k5 r5sec rpm=3; }
conductor_model m1 { r1 pm; }
conductor_model m2 { r2 pm; }
conductor_model m3 { r3 pm; }
conductor_model m4 { r4 pm; }
conductor_model m5 { r5 pm; }
upstream conductor_backend { conductor_balancer keepalive=64; }
--- checks
my $n = $ENV{TEST_NGINX_USE_VALGRIND} ? 30 : 200;
my %limit = (1 => 5, 2 => 9, 3 => 14, 4 => 20, 5 => 3);
my %workers;
for my $round (1 .. 5) {
    away_from_minute_edge();
    my $r = burst($n, qq{{"model":"m$round","messages":[]}});
    my $w = tally(map { $_->{headers}{'x-worker'} // () } @$r);
    $workers{$_} += $w->{$_} for keys %$w;
    my $st = tally(map { $_->{status} } @$r);
    my $up = grep { $_->{key} eq "r${round}sec" } @{ mock_requests() };
    diag "round $round: rpm=$limit{$round}, $n at once: "
        . join(' ', map { "$_ x$st->{$_}" } sort keys %$st) . ", $up upstream; per worker: "
        . join(' ', map { $w->{$_} } sort keys %$w);
    is $up, $limit{$round}, "round $round: exactly rpm=$limit{$round} reached the provider";
    is $st->{200} // 0, $limit{$round}, "round $round: $limit{$round} answered 200";
    is $st->{429} // 0, $n - $limit{$round}, "round $round: the other " . ($n - $limit{$round}) . " got 429 from the gateway";
}
diag 'answers per worker: ' . join(' ', map { "$_=$workers{$_}" } sort keys %workers);
is scalar(keys %workers), $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 2, 'both workers answered';

=== TEST 2: max_inflight=N under bursts on two workers: exactly N in flight at the provider
--- main_config
worker_processes 2;
--- http_config
conductor_zone conductor:1m;
conductor_provider g1 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 "g1;gate" max_inflight=2; }
conductor_provider g2 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k2 "g2;gate" max_inflight=5; }
conductor_provider g3 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k3 "g3;gate" max_inflight=8; }
conductor_provider g4 { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k4 "g4;gate" max_inflight=1; }
conductor_model i1 { g1 pm; }
conductor_model i2 { g2 pm; }
conductor_model i3 { g3 pm; }
conductor_model i4 { g4 pm; }
upstream conductor_backend { conductor_balancer keepalive=64; }
--- checks
# a stream with "gate" stays in flight at the mock (its first event sent)
# until /__mock/release: no request can end while the others are picked
my $n = $ENV{TEST_NGINX_USE_VALGRIND} ? 30 : 150;
my %limit = (1 => 2, 2 => 5, 3 => 8, 4 => 1);
my %workers;
for my $round (1 .. 4) {
    my $r = burst($n, qq{{"model":"i$round","stream":true,"messages":[]}}, gated => 1);
    my $w = tally(map { $_->{headers}{'x-worker'} // () } @$r);
    $workers{$_} += $w->{$_} for keys %$w;
    my $st = tally(map { $_->{status} } @$r);
    my $up = grep { $_->{key} eq "g$round;gate" } @{ mock_requests() };
    diag "round $round: max_inflight=$limit{$round}, $n at once: "
        . join(' ', map { "$_ x$st->{$_}" } sort keys %$st) . ", $up upstream; per worker: "
        . join(' ', map { $w->{$_} } sort keys %$w);
    is $up, $limit{$round}, "round $round: exactly max_inflight=$limit{$round} reached the provider";
    is $st->{200} // 0, $limit{$round}, "round $round: $limit{$round} streams held open";
    is $st->{429} // 0, $n - $limit{$round}, "round $round: the other " . ($n - $limit{$round}) . " got 429 from the gateway";
    mock_release();
    drain($r);
    like $_->{body}, qr/data: \[DONE\]/, "round $round: a held stream ended" for grep { $_->{status} == 200 } @$r;
}
diag 'answers per worker: ' . join(' ', map { "$_=$workers{$_}" } sort keys %workers);
is scalar(keys %workers), $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 2, 'both workers answered';
my $st = status_wait(sub { !grep { $_->{inflight} } map { @{ $_->{keys} } } @{ $_->{providers} } },
    what => 'nothing in flight any more');
is_deeply [ map { $_->{inflight} } map { @{ $_->{keys} } } @{ $st->{providers} } ], [0, 0, 0, 0],
    'every reservation given back';

=== TEST 3: least_cost adds input and output prices: the cheaper total wins over the cheaper input
--- http_config
conductor_zone conductor:1m;
conductor_provider cheapin { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;  key a sa; price am input=1 output=10; }
conductor_provider cheaptot { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1; key b sb; price bm input=3 output=3; }
conductor_provider mid { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT3/v1; key c sc; price cm input=2 output=5; }
# listed in the order of their input prices, the reverse of their totals
conductor_model m { cheapin am; mid cm; cheaptot bm; }
conductor_strategy least_cost;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","messages":[]}} } 1 .. 3 ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{headers}{'x-conductor-provider'} // "status $_->{status}" } @$resps ],
    [qw(cheaptot cheaptot cheaptot)], 'input 3 + output 3 beats input 1 + output 10 and input 2 + output 5';
is_deeply [ map { $_->{json}{model} } @$mock ], [qw(bm bm bm)], 'its model upstream';

=== TEST 4: a 403 disables the key: the next request goes to the other key directly
--- http_config
conductor_zone conductor:1m;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key bad "bad-403;status=403";
    key good good-secret;
}
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","messages":[]}} } 1 .. 3 ]
--- error_code: 200
--- response_headers
X-Conductor-Key: good
X-Conductor-Attempts: 1
--- checks
is $resps->[0]{status}, 403, "the client saw the provider's 403 (403 is not failed over by default)";
is_deeply [ map { $_->{key} } @$mock ], [qw(bad-403;status=403 good-secret good-secret)],
    'the 403 key was sent one request, then never again';
my $st = status_report();
is key_status($st, 'p', 'bad')->{disabled}, JSON::PP::true(), 'status: the 403 key is disabled';
is key_status($st, 'p', 'good')->{disabled}, JSON::PP::false(), 'status: the other is not';
--- error_log
key "bad" of provider "p" answered 403: disabled

=== TEST 5: a 403 disables the only key: then the gateway answers 503 itself
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key only "only-403;status=403"; }
conductor_model m { p pm; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","messages":[]}} } 1 .. 3 ]
--- error_code: 503
--- response_body_like: ^\{"error":\{"message":"no key can serve this model now
--- checks
is_deeply [ map { $_->{status} } @$resps ], [403, 503, 503], "the provider's 403, then the gateway's 503";
is scalar(@$mock), 1, 'one request reached the provider';
is key_status(status_report(), 'p', 'only')->{disabled}, JSON::PP::true(), 'status: disabled';

=== TEST 6: ttfb_ms is the moving average (4/5 old, 1/5 new), not the last answer's time
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k ks; }
conductor_model quick { p "m;ttfb=40"; }
conductor_model slow  { p "m;ttfb=500"; }
upstream conductor_backend { conductor_balancer; }
--- checks
my $chat = sub { http_request(POST => '/v1/chat/completions', {}, qq{{"model":"$_[0]","messages":[]}}) };
is $chat->('quick')->{status}, 200, 'the quick answer';
my $k1 = key_status(status_report(), 'p', 'k');
my $a = $k1->{ttfb_ms};
cmp_ok $a, '>=', 40, "first sample: $a ms";
cmp_ok $a, '<', 400, 'well below the slow one';
is $k1->{ttfb_avg_ms}, $a, 'the first average is the first sample';
is $chat->('slow')->{status}, 200, 'the slow answer';
my $k2 = key_status(status_report(), 'p', 'k');
# ttfb_avg_ms is the plain mean: the second sample is 2 * mean - first
my $b = 2 * $k2->{ttfb_avg_ms} - $a;
cmp_ok $b, '>=', 500, "second sample: $b ms";
is $k2->{ttfb_ms}, int((4 * $a + $b) / 5), "ttfb_ms = (4 * $a + $b) / 5, not the last sample";

=== TEST 7: least_latency follows the average: one slow answer does not make a fast key lose
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key a sa; key b sb; }
conductor_model m { p pm; }
conductor_strategy least_latency;
upstream conductor_backend { conductor_balancer; }
--- checks
# x-mock sets the time to first byte of one answer, whichever key serves it
my $chat = sub {
    http_request(POST => '/v1/chat/completions', $_[0] ? { 'x-mock' => "ttfb=$_[0]" } : {},
        '{"model":"m","messages":[]}')->{headers}{'x-conductor-key'} // 'none';
};
is $chat->(40), 'a', 'unmeasured keys first: a (40 ms)';
is $chat->(300), 'b', 'then b (300 ms)';
is $chat->(700), 'a', 'a is the faster: a again, this answer slow (700 ms)';
my $st = status_report();
my ($ka, $kb) = map { key_status($st, 'p', $_)->{ttfb_ms} } qw(a b);
diag "ttfb_ms: a=$ka b=$kb";
SKIP: {
    # under valgrind nginx's own time dwarfs the mock's and varies (the
    # first answer carries the warm-up); TEST 6 checks the average there
    Test::More::skip('times to first byte are valgrind\'s, not the mock\'s', 2)
        if $ENV{TEST_NGINX_USE_VALGRIND};
    cmp_ok $ka, '<', $kb, "a's average (40, 700: about 170) stays below b's 300";
    is $chat->(), 'a', 'so a serves the next request';
}
