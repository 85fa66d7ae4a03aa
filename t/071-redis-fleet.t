# A fleet of two nginx nodes (two workers each) sharing one Redis with
# conductor_redis sync=100ms: sequential requests alternating the nodes
# hold a key's rpm and a client's budget exactly; a burst faster than one
# sync stays within the bound README states (nodes x limit); a 429 with
# Retry-After on one node cools the key down on the other; Redis killed:
# both nodes serve on their own counts without waiting; Redis restarted:
# sharing resumes by itself; a reload of one node and a node that joins
# late keep the fleet's totals.
use lib 't/lib';
use Test::Conductor;
use Test::Redis;
use Test::More ();
use Time::HiRes ();

my $env      = harness_env();
my $VALGRIND = $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0;
Test::More::plan(skip_all => 'no redis-server') unless redis_available();

my $dir    = "$env->{TEST_NGINX_SERVROOT}-fleet";
my $rport  = free_port($env->{TEST_NGINX_DEAD_PORT});
my $bport  = free_port($rport);
my $module = $ENV{TEST_NGINX_MODULE} // "$env->{TEST_NGINX_ROOT}/build/ngx_http_conductor_module.so";
# a push, the other node's pull, and the answer: at most two sync periods
my $SETTLE = $VALGRIND ? 1.5 : 0.35;

my $MOCK = $env->{TEST_NGINX_MOCK_PORT};
my $HTTP = <<"HTTP";
    conductor_zone conductor:1m;
    conductor_provider p1 { url http://127.0.0.1:$MOCK/v1; key k1 s1 rpm=10; }
    conductor_provider p2 { url http://127.0.0.1:$MOCK/v1; key k2 s2 rpm=10; }
    conductor_provider p3 { url http://127.0.0.1:$MOCK/v1; key k3 s3; }
    conductor_provider p4 {
        url http://127.0.0.1:$MOCK/v1;
        key k4 s4;
        price "bud;prompt_tokens=10;completion_tokens=10" input=1 output=1;
    }
    conductor_provider p5 { url http://127.0.0.1:$MOCK/v1; key k5 s5 rpm=4; }
    conductor_provider p6 { url http://127.0.0.1:$MOCK/v1; key k6 s6 rpm=4; }
    conductor_provider p7 { url http://127.0.0.1:$MOCK/v1; key k7 s7 rpm=4; }
    conductor_model m1 { p1 pm1; }
    conductor_model m2 { p2 pm2; }
    conductor_model m3 { p3 "pm3;status=429;retry_after=30"; }
    conductor_model m4 { p4 "bud;prompt_tokens=10;completion_tokens=10"; }
    conductor_model m5 { p5 pm5; }
    conductor_model m6 { p6 pm6; }
    conductor_model m7 { p7 pm7; }
    conductor_client team { key sk-team; budget 0.000105 per=day; }
    conductor_client solo { key sk-solo; budget 0.000105 per=day; }
    conductor_redis redis://127.0.0.1:$rport/0 sync=100ms timeout=200ms prefix=t071:;
    upstream conductor_backend { conductor_balancer keepalive=16; }
HTTP
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
    location = /conductor/status { conductor_status; }
SERVER

my $redis = redis_start(dir => $dir, port => $rport);
start_nginx(main_config => $VALGRIND ? '' : 'worker_processes 2;', http_config => $HTTP, config => $SERVER);
my $b = node_start(dir => "$dir/b", port => $bport, module => $module, main => 'worker_processes 2;',
                   http => $HTTP, server => $SERVER);

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

ok wait_for(sub { redis_state(0) eq 'ready' && redis_state(1) eq 'ready' }, timeout => 10,
    what => 'both nodes ready'), 'both nodes are connected';
my $rs = status_wait(sub { defined(($_->{redis} || {})->{last_sync_age_ms}) }, what => 'a first push');
cmp_ok $rs->{redis}{last_sync_age_ms}, '<', 1000, 'status: the last push was answered moments ago';
is $rs->{redis}{sync_errors}, 0, 'status: no push failed';
my $prom = http_request('GET', '/conductor/status?format=prometheus', {}, undef, await_log => 0)->{body};
like $prom, qr/^conductor_redis_up 1$/m, 'Prometheus: conductor_redis_up 1';
like $prom, qr/^conductor_redis_last_sync_age_seconds 0\.\d{3}$/m, 'Prometheus: the last sync age';
like $prom, qr/^# TYPE conductor_redis_sync_errors_total counter$/m, 'Prometheus: sync errors';

# ---- sequential requests alternating the nodes: the rpm holds exactly
away_from_minute_edge(45);
my @st;
for my $i (0 .. 15) {
    push @st, chat($i % 2, 'm1')->{status};
    Time::HiRes::sleep($SETTLE);
}
is_deeply \@st, [ (200) x 10, (429) x 6 ], 'rpm=10 across two nodes: ten, then 429 on either';
is upstream('s1'), 10, 'exactly 10 reached the provider';

# ---- a client budget, the same way: room for five answers of 20 micro-USD
my $bb = '{"model":"m4","max_tokens":10,"messages":[]}';
@st = ();
for my $i (0 .. 9) {
    push @st, chat($i % 2, 'm4', body => $bb, path => '/team/v1/chat/completions',
                   headers => { Authorization => 'Bearer sk-team' })->{status};
    Time::HiRes::sleep($SETTLE);
}
is_deeply \@st, [ (200) x 5, (429) x 5 ], 'a budget of 105 micro-USD across two nodes: five answers';
is upstream('s4'), 5, 'five reached the provider';

# a node that never served the client sees what the other spent
@st = ();
for my $i (0 .. 5) {
    push @st, chat($i < 5 ? 0 : 1, 'm4', body => $bb, path => '/team/v1/chat/completions',
                   headers => { Authorization => 'Bearer sk-solo' })->{status};
    Time::HiRes::sleep($SETTLE) if $i == 4;
}
is_deeply \@st, [ (200) x 5, 429 ], "five on node A spend it; node B's first request is refused";


# ---- a burst faster than one sync: within nodes x limit
away_from_minute_edge(45);
my $n = $VALGRIND ? 20 : 60;
my $r = burst($n, '{"model":"m2","messages":[]}', port => sub { $port[$_[0] % 2] });
my $up = upstream('s2');
diag "rpm=10, $n at once over two nodes: $up upstream";
cmp_ok $up, '>=', 10, 'the limit is reached';
cmp_ok $up, '<=', 20, 'and the burst stays within nodes x limit (README)';
Time::HiRes::sleep($SETTLE);
is chat(0, 'm2')->{status}, 429, 'after a sync, node A is full';
is chat(1, 'm2')->{status}, 429, 'and so is node B';

# ---- one node's 429 cools the key down on the other
mock_clear();
my $a429 = chat(0, 'm3');
is $a429->{status}, 429, "the provider's 429 on node A";
Time::HiRes::sleep($SETTLE);
my $b429 = chat(1, 'm3');
is $b429->{status}, 429, 'node B answers 429 too';
like $b429->{body}, qr/at its limit/, "it is the gateway's: the key is cooling down";
is upstream('s3'), 1, 'node B sent nothing to the provider';

# ---- Redis killed: both nodes serve, without waiting
redis_stop($redis, 'KILL');
my $slow = 0;
for my $i (0 .. 5) {
    my $t = Time::HiRes::time();
    my $x = chat($i % 2, 'm5', body => '{"model":"m5","messages":[],"x":' . $i . '}');
    $slow++ if Time::HiRes::time() - $t > ($VALGRIND ? 3 : 0.5) || $x->{status} != 200 && $x->{status} != 429;
}
is $slow, 0, 'with Redis gone every request is answered at once';
ok wait_for(sub { redis_state(0) ne 'ready' && redis_state(1) ne 'ready' }, timeout => 5,
    what => 'both nodes to see Redis down'), 'both nodes see it down';
$prom = http_request('GET', '/conductor/status?format=prometheus', {}, undef, await_log => 0)->{body};
like $prom, qr/^conductor_redis_up 0$/m, 'Prometheus: conductor_redis_up 0';

# ---- Redis back, empty: sharing resumes
$redis = redis_start(dir => $dir, port => $rport);
ok wait_for(sub { redis_state(0) eq 'ready' && redis_state(1) eq 'ready' }, timeout => 15,
    what => 'both nodes to reconnect'), 'both nodes reconnected by themselves';
Time::HiRes::sleep(2 * $SETTLE);
my $seen = redis_cli($rport, [], 'EXISTS', 't071:{key:p5/k5}:it');
like $seen, qr/1/, 'the nodes pushed their state to the new Redis';

# ---- a reload of one node keeps the fleet's totals
away_from_minute_edge(45);
@st = map { my $x = chat($_ % 2, 'm6')->{status}; Time::HiRes::sleep($SETTLE); $x } 0 .. 1;
kill 'HUP', $b;
ok wait_for(sub { my $e = `grep -c 'reconfiguring' $dir/b/logs/error.log`; $e > 0 }, timeout => 10,
    what => 'node B to reload'), 'node B reloaded';
Time::HiRes::sleep(2 * $SETTLE);
push @st, map { my $x = chat($_ % 2, 'm6')->{status}; Time::HiRes::sleep($SETTLE); $x } 0 .. 3;
is_deeply \@st, [ (200) x 4, (429) x 2 ], 'rpm=4 across a reload of node B: four, then 429';

# ---- a node that joins late sees the fleet's totals at its first sync
@st = map { my $x = chat(0, 'm7')->{status}; $x } 0 .. 2;
my $cport = free_port($bport);
my $c = node_start(dir => "$dir/c", port => $cport, module => $module, main => 'worker_processes 1;',
                   http => $HTTP, server => $SERVER);
push @port, $cport;
ok wait_for(sub { redis_state(2) eq 'ready' }, timeout => 10, what => 'node C ready'), 'node C joined';
Time::HiRes::sleep(2 * $SETTLE);
push @st, chat(2, 'm7')->{status}, chat(2, 'm7')->{status};
Time::HiRes::sleep($SETTLE);
push @st, chat(0, 'm7')->{status};
is_deeply \@st, [ (200) x 4, 429, 429 ], 'three on A, then C admits the fourth only, and A sees it';
node_stop($c);

done_testing();
