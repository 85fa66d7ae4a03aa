# conductor_redis sync=0 (exact): a fleet of two nginx nodes (two workers
# each) and one Redis, every reservation settled in Redis before the
# request goes on.  Bursts split across the nodes get exactly a key's rpm,
# max_inflight and a client's budget; Redis hung (SIGSTOP) or killed: node
# A (on_failure=local) answers on its own counts within timeout=, node B
# (on_failure=refuse) answers 503 in the endpoint's dialect; Redis back:
# exact again; a client that goes away while its reservation is in Redis
# leaves nothing held there.
use lib 't/lib';
use Test::Conductor;
use Test::Redis;
use Test::More ();
use IO::Socket::INET;
use Time::HiRes ();
use POSIX ();

my $env      = harness_env();
my $VALGRIND = $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0;
Test::More::plan(skip_all => 'no redis-server') unless redis_available();

my $dir    = "$env->{TEST_NGINX_SERVROOT}-fleet";
my $rport  = free_port($env->{TEST_NGINX_DEAD_PORT});
my $bport  = free_port($rport);
my $module = $ENV{TEST_NGINX_MODULE} // "$env->{TEST_NGINX_ROOT}/build/ngx_http_conductor_module.so";
my $TIMEOUT = 0.2;                         # timeout= below
my $MARGIN  = $VALGRIND ? 3 : 0.4;

my $MOCK = $env->{TEST_NGINX_MOCK_PORT};
sub http_conf {
    my ($on_failure) = @_;
    return <<"HTTP";
    conductor_zone conductor:1m;
    conductor_provider p1 { url http://127.0.0.1:$MOCK/v1; key k1 s1 rpm=20; }
    conductor_provider p2 { url http://127.0.0.1:$MOCK/v1; key k2 s2 rpm=20; }
    conductor_provider p3 { url http://127.0.0.1:$MOCK/v1; key k3 s3 rpm=20; }
    conductor_provider p4 { url http://127.0.0.1:$MOCK/v1; key k4 s4 rpm=20; }
    conductor_provider g1 { url http://127.0.0.1:$MOCK/v1; key kg "g1;gate" max_inflight=4; }
    conductor_provider b1 {
        url http://127.0.0.1:$MOCK/v1;
        key kb sb;
        price "bud;prompt_tokens=10;completion_tokens=10" input=1 output=1;
    }
    conductor_provider f1 { url http://127.0.0.1:$MOCK/v1; key kf sf; }
    conductor_provider an { url http://127.0.0.1:$MOCK/v1; api anthropic; key ka sa; }
    conductor_provider c1 { url http://127.0.0.1:$MOCK/v1; key kc sc max_inflight=5; }
    conductor_model m1 { p1 pm1; }
    conductor_model m2 { p2 pm2; }
    conductor_model m3 { p3 pm3; }
    conductor_model m4 { p4 pm4; }
    conductor_model mg { g1 pm; }
    conductor_model mb { b1 "bud;prompt_tokens=10;completion_tokens=10"; }
    conductor_model mf { f1 pmf; }
    conductor_model ma { an pma; }
    conductor_model mc { c1 pmc; }
    conductor_provider t1 { url http://127.0.0.1:$MOCK/v1; key kt1 st1 rpm=3; }
    conductor_provider t2 { url http://127.0.0.1:$MOCK/v1; key kt2 st2 rpm=50; }
    conductor_model mt { t1 pt1; t2 pt2; }
    conductor_provider r1 { url http://127.0.0.1:$MOCK/v1; key kr1 "sr1;status=500"; }
    conductor_provider r2 { url http://127.0.0.1:$MOCK/v1; key kr2 sr2 rpm=3; }
    conductor_model mr { r1 pr1; r2 pr2; }
    conductor_model mr2 { r2 pr2; }
    conductor_provider q1 { url http://127.0.0.1:$MOCK/v1; key kq "sq;gate" max_inflight=2; }
    conductor_model mq { q1 pmq; }
    conductor_client crew { key sk-crew; limit max_inflight=2; }
    conductor_client team { key sk-team; budget 0.000105 per=day; }
    conductor_redis redis://127.0.0.1:$rport/0 sync=0 timeout=200ms prefix=t072: on_failure=$on_failure;
    upstream conductor_backend { conductor_balancer keepalive=16; }
HTTP
}
my $SERVER = <<"SERVER";
    location /v1/ {
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location /team/v1/ {
        conductor_auth on;
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location /seq/v1/ {
        conductor_strategy sequential;
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location /q/v1/ {
        conductor_auth on;
        conductor_queue timeout=8s;
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location = /conductor/status { conductor_status; }
SERVER

my $redis = redis_start(dir => $dir, port => $rport);
start_nginx(main_config => $VALGRIND ? '' : 'worker_processes 2;', http_config => http_conf('local'),
            config => $SERVER);
my $b = node_start(dir => "$dir/b", port => $bport, module => $module, main => 'worker_processes 2;',
                   http => http_conf('refuse'), server => $SERVER);

my @port = ($env->{TEST_NGINX_PORT}, $bport);

sub chat {
    my ($node, $model, %o) = @_;
    my $body = $o{body} // qq{{"model":"$model","messages":[]}};
    return http_request('POST', $o{path} // '/v1/chat/completions', $o{headers} // {}, $body,
                        port => $port[$node], await_log => 0);
}

sub upstream { my ($key) = @_; return scalar grep { $_->{key} eq $key } @{ mock_requests() } }

sub redis_state {
    my ($node) = @_;
    my $st = status_report(port => $port[$node]) or return '';
    return ($st->{redis} || {})->{state} // '';
}

sub both_ready {
    return wait_for(sub { redis_state(0) eq 'ready' && redis_state(1) eq 'ready' }, timeout => 15,
        what => 'both nodes ready');
}

# the fleet's in flight of a key, every node's field summed
sub fleet_inflight {
    my ($name) = @_;
    my %h = split ' ', redis_cli($rport, [], 'HGETALL', "t072:{key:$name}:if");
    my $n = 0;
    $n += $_ for values %h;
    return $n;
}

ok both_ready(), 'both nodes are connected';

# ---- rpm=20, 60 at once split over both nodes: exactly 20, a few rounds
my $n = $VALGRIND ? 30 : 60;
for my $round (1 .. 3) {
    away_from_minute_edge(50);
    my $r = burst($n, qq{{"model":"m$round","messages":[]}}, port => sub { $port[$_[0] % 2] });
    my $st = tally(map { $_->{status} } @$r);
    my $up = upstream("s$round");
    diag "round $round: rpm=20, $n at once over two nodes: "
        . join(' ', map { "$_ x$st->{$_}" } sort keys %$st) . ", $up upstream";
    is $up, 20, "round $round: exactly 20 reached the provider";
    is $st->{200} // 0, 20, "round $round: 20 answers";
    is $st->{429} // 0, $n - 20, "round $round: the other " . ($n - 20) . ' got 429';
}

# ---- max_inflight=4 with held streams, across the nodes, twice
for my $round (1 .. 2) {
    my $r = burst($VALGRIND ? 12 : 20, '{"model":"mg","stream":true,"messages":[]}', gated => 1,
                  port => sub { $port[$_[0] % 2] });
    my $st = tally(map { $_->{status} } @$r);
    my $up = grep { $_->{key} eq 'g1;gate' } @{ mock_requests() };
    is $st->{200} // 0, 4, "in flight round $round: 4 streams held open over two nodes";
    is $up, 4 * $round, "in flight round $round: 4 more reached the provider";
    is fleet_inflight('g1/kg'), 4, "in flight round $round: Redis counts 4 in flight";
    mock_release();
    drain($r);
    ok wait_for(sub { fleet_inflight('g1/kg') == 0 }, timeout => 5, what => 'in flight back to 0'),
        "in flight round $round: back to 0 in Redis once they ended";
}

# ---- a client budget: room for five reservations of 21 micro-USD
my $bb = '{"model":"mb","max_tokens":10,"messages":[]}';
my $r = burst($VALGRIND ? 12 : 30, $bb, path => '/team/v1/chat/completions',
              headers => 'Authorization: Bearer sk-team', port => sub { $port[$_[0] % 2] });
my $st = tally(map { $_->{status} } @$r);
diag 'budget: ' . join(' ', map { "$_ x$st->{$_}" } sort keys %$st);
is upstream('sb'), 5, 'a budget of 105 micro-USD across two nodes, at once: five reached the provider';
is $st->{200} // 0, 5, 'five answers';
ok wait_for(sub {
    my %h = split ' ', redis_cli($rport, [], 'HGETALL', 't072:{client:team}:r0');
    my $s = 0; $s += $_ for values %h; $s == 0 }, timeout => 5, what => 'holds back to 0'),
    'no budget hold is left in Redis';
like redis_cli($rport, [], 'KEYS', 't072:{client:team}:s0:*'), qr/s0/, 'the spend is in Redis';
my ($spent) = map { redis_cli($rport, [], 'GET', $_) } split ' ', redis_cli($rport, [], 'KEYS', 't072:{client:team}:s0:*');
is $spent + 0, 100000, 'spent: five answers of 20 micro-USD, counted once (nano-USD)';
my $more = chat(1, 'mb', body => $bb, path => '/team/v1/chat/completions',
                headers => { Authorization => 'Bearer sk-team' });
is $more->{status}, 429, 'then the budget refuses on the other node too';
like $more->{body}, qr/budget/, 'naming the budget';

# the fleet's count of a key's rpm window now (every bucket of the minute)
sub fleet_rpm {
    my ($name) = @_;
    my $n = 0;
    for my $k (split ' ', redis_cli($rport, [], 'KEYS', "t072:{key:$name}:w0:*")) {
        my ($start) = $k =~ /:(\d+)$/;
        $n += redis_cli($rport, [], 'GET', $k) if $start + 60 > time;
    }
    return $n;
}

# the mock's held streams released by a child in S seconds (never through
# the harness's helpers there, which own the servers and stop them on exit)
sub release_later {
    my ($secs) = @_;
    my $pid = fork // die "fork: $!";
    return $pid if $pid;
    Time::HiRes::sleep($secs);
    eval { http_request('POST', '/__mock/release', {}, undef, port => $MOCK, await_log => 0) };
    POSIX::_exit(0);
}

# ---- the fleet filled kt1 (rpm=3) from node B: node A, whose own counts
# say kt1 has room, is refused by Redis and the next key (kt2) serves
away_from_minute_edge(45);
mock_clear();
my @b = map { chat(1, 'mt', path => '/seq/v1/chat/completions') } 1 .. 3;
is join(',', map { $_->{status} } @b), '200,200,200', 'node B: three requests on the sequential alias';
is upstream('st1'), 3, 'node B: all three on kt1, its rpm=3 now full in Redis';
my @a = map { chat(0, 'mt', path => '/seq/v1/chat/completions') } 1 .. 3;
is join(',', map { $_->{status} } @a), '200,200,200', 'node A: three answers';
is upstream('st1'), 3, 'node A sent none to kt1 (Redis refused it)';
is upstream('st2'), 3, 'node A: kt2 served all three';
is join(',', map { $_->{headers}{'x-conductor-key'} // '' } @a), 'kt2,kt2,kt2',
    'X-Conductor-Key says kt2';
is fleet_rpm('t1/kt1'), 3, 'kt1 stays at 3 in Redis: no overshoot, nothing left reserved';

# ---- a retry's reservation is forced in Redis and counts fleet-wide:
# kr1 answers 500, the retry goes to kr2 (rpm=3) without asking
mock_clear();
my $x = chat(0, 'mr', path => '/seq/v1/chat/completions');
is $x->{status}, 200, 'kr1 answered 500, the retry on kr2 answered';
is $x->{headers}{'x-conductor-attempts'}, 2, 'in two attempts';
is upstream('sr2'), 1, 'kr2 got the retry';
ok wait_for(sub { fleet_rpm('r2/kr2') == 1 }, timeout => 5, what => 'kr2 at 1 in Redis'),
    "the retry is counted in kr2's window in Redis";
ok wait_for(sub { fleet_inflight('r1/kr1') == 0 && fleet_inflight('r2/kr2') == 0 }, timeout => 5,
            what => 'in flight 0'), 'both keys back to 0 in flight in Redis';
$r = burst(5, '{"model":"mr2","messages":[]}', port => sub { $port[1] });
$st = tally(map { $_->{status} } @$r);
is $st->{200} // 0, 2, 'node B, 5 at once on kr2: 2 answers (the retry holds the third place)';
is upstream('sr2'), 3, 'kr2 got 3 in all, its rpm';

# ---- sync=0 and the queue: kq (max_inflight=2) held by two streams of
# node A; node B's requests, in a location with a queue, wait (Redis
# refuses them while the streams last) and are served once they end
mock_clear();
my $held = burst(2, '{"model":"mq","stream":true,"messages":[]}', gated => 1, port => sub { $port[0] });
is tally(map { $_->{status} } @$held)->{200} // 0, 2, 'node A holds two streams on kq';
is fleet_inflight('q1/kq'), 2, 'Redis counts them in flight';
my $releaser = release_later(1.5);
my $t0 = Time::HiRes::time();
my $q = burst(2, '{"model":"mq","stream":true,"messages":[]}', path => '/q/v1/chat/completions',
              headers => 'Authorization: Bearer sk-crew', gated => 1, port => sub { $port[1] });
my $waited = Time::HiRes::time() - $t0;
waitpid $releaser, 0;
drain($held);
$st = tally(map { $_->{status} } @$q);
mock_release();
drain($q);
diag sprintf 'queue: node B %s after %.2fs', join(' ', map { "$_ x$st->{$_}" } sort keys %$st), $waited;
is $st->{200} // 0, 2, "node B's two queued requests were served";
ok $waited > 1.2, 'once the streams had ended';
is upstream('sq;gate'), 4, 'four reached the provider in all';
ok wait_for(sub { fleet_inflight('q1/kq') == 0 }, timeout => 5, what => 'kq at 0'),
    'kq back to 0 in flight in Redis';

# ---- and a client's fleet limit: crew (max_inflight=2) holds two streams
# on node A; its request on node B waits in the queue, then is served
mock_clear();
$held = burst(2, '{"model":"mq","stream":true,"messages":[]}', gated => 1, path => '/q/v1/chat/completions',
              headers => 'Authorization: Bearer sk-crew', port => sub { $port[0] });
is tally(map { $_->{status} } @$held)->{200} // 0, 2, 'crew holds two streams on node A';
$releaser = release_later(1.5);
$t0 = Time::HiRes::time();
$x = http_request('POST', '/q/v1/chat/completions', { Authorization => 'Bearer sk-crew' },
                  '{"model":"mt","messages":[]}', port => $port[1], await_log => 0);
$waited = Time::HiRes::time() - $t0;
waitpid $releaser, 0;
drain($held);
is $x->{status}, 200, "crew's request on node B was served";
ok $waited > 1.2, sprintf('after its streams ended (%.2fs)', $waited);

# ---- Redis hung in the middle of load: nobody waits beyond timeout=
mock_clear();
my $stopper = fork // die;
if (!$stopper) { Time::HiRes::sleep(0.3); kill 'STOP', $redis; POSIX::_exit(0) }
my (%slow, %status);
for my $i (0 .. 19) {
    my $node = $i % 2;
    my $t = Time::HiRes::time();
    my $x = chat($node, 'mf', body => '{"model":"mf","messages":[],"x":' . $i . '}');
    my $took = Time::HiRes::time() - $t;
    $slow{$node}++ if $took > $TIMEOUT + $MARGIN;
    $status{$node}{ $x->{status} }++;
    Time::HiRes::sleep(0.05);
}
waitpid $stopper, 0;
diag 'Redis stopped during load: node A ' . join(' ', map { "$_ x$status{0}{$_}" } sort keys %{ $status{0} })
    . '; node B ' . join(' ', map { "$_ x$status{1}{$_}" } sort keys %{ $status{1} });
is $slow{0} // 0, 0, 'on_failure=local: no request waited beyond timeout=';
is $slow{1} // 0, 0, 'on_failure=refuse: nor there';
is join(',', sort keys %{ $status{0} }), '200', 'node A (on_failure=local) answered every request';
ok $status{1}{503}, 'node B (on_failure=refuse) refused some with 503';
$x = chat(1, 'mf');
is $x->{status}, 503, 'with Redis hung, node B answers 503';
like $x->{body}, qr/^\{"error":\{"message":"[^"]*","type":"server_error"/, 'in the OpenAI dialect';
like $x->{body}, qr/does not answer/, 'saying why';
$x = chat(1, 'ma', path => '/v1/messages', headers => { 'anthropic-version' => '2023-06-01' },
          body => '{"model":"ma","max_tokens":5,"messages":[]}');
is $x->{status}, 503, 'and on /v1/messages';
like $x->{body}, qr/^\{"type":"error","error":\{"type":"\w+"/, 'in the Anthropic dialect';
$x = chat(0, 'mf');
is $x->{status}, 200, 'node A serves on its own counts';

# ---- a client goes away while its reservation sits in the hung Redis
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port[0], Proto => 'tcp') or die;
kill 'CONT', $redis;
ok both_ready(), 'Redis continued: both nodes ready again';
kill 'STOP', $redis;
my $body = '{"model":"mc","messages":[]}';
syswrite $s, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    . "Content-Length: " . length($body) . "\r\n\r\n$body";
Time::HiRes::sleep(0.05);
close $s;
Time::HiRes::sleep(0.5);
kill 'CONT', $redis;
ok both_ready(), 'Redis continued';
ok wait_for(sub { fleet_inflight('c1/kc') == 0 }, timeout => 5, what => 'the in flight of kc at 0'),
    'the reservation of the request that went away is given back';
is redis_cli($rport, [], 'HGET', 't072:{key:c1/kc}:if', 'x'), "\n", 'nothing else held';

# ---- Redis killed in the middle, then back empty: exact again
away_from_minute_edge(45);
my $killer = fork // die;
if (!$killer) { Time::HiRes::sleep(0.3); kill 'KILL', $redis; POSIX::_exit(0) }
%slow = (); %status = ();
for my $i (0 .. 11) {
    my $node = $i % 2;
    my $t = Time::HiRes::time();
    my $x = chat($node, 'mf', body => '{"model":"mf","messages":[],"y":' . $i . '}');
    $slow{$node}++ if Time::HiRes::time() - $t > $TIMEOUT + $MARGIN;
    $status{$node}{ $x->{status} }++;
    Time::HiRes::sleep(0.05);
}
waitpid $killer, 0;
is $slow{0} // 0, 0, 'Redis killed: node A answered at once';
is $slow{1} // 0, 0, 'node B too';
is join(',', sort keys %{ $status{0} }), '200', 'node A served every one';
$redis = redis_start(dir => $dir, port => $rport);
ok both_ready(), 'both nodes reconnected';
away_from_minute_edge(50);
$r = burst($n, '{"model":"m4","messages":[]}', port => sub { $port[$_[0] % 2] });
$st = tally(map { $_->{status} } @$r);
is upstream('s4'), 20, 'Redis back: rpm=20 exact again across the nodes';
is $st->{429} // 0, $n - 20, 'the others got 429';

done_testing();
