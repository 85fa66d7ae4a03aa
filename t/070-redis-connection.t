# conductor_redis: the connection to the fleet store, one per worker, made
# with nginx's own event API (TLS for rediss://), hiredis as the codec only.
# Against a real redis-server started here on 127.0.0.1 (a free port,
# nothing saved, stopped by pid): ready with one connection per worker and
# a PING every sync interval; nginx that starts without Redis serves
# requests and connects once Redis comes; a killed Redis is seen at once
# and a restarted one reconnected by itself; a SIGSTOPped one fails the
# pending commands within timeout= while requests are served without
# waiting; passwords (literal, env=, file=, an ACL user) work and never
# show in error.log (at debug level) or the status; rediss:// verifies the
# certificate against ca= and the url's host; bad configurations are
# refused by nginx -t.
use lib 't/lib';
use Test::Conductor;
use Test::Redis ();
use Test::Redis qw(redis_stop redis_cli port_accepts);
use Test::More ();
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

my $env      = harness_env();
my $VALGRIND = $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0;
my $NWORKERS = $VALGRIND ? 1 : 2;    # valgrind: one process, no master
my $dir      = "$env->{TEST_NGINX_SERVROOT}-redis";
my $TIMEOUT  = $VALGRIND ? '1s' : '200ms';

my $REDIS = '/usr/bin/redis-server';
Test::More::plan(skip_all => "no $REDIS") unless -x $REDIS;

system("rm -rf $dir && mkdir -p $dir/data") == 0 or die;

# ---------------------------------------------------------------- redis

# Test::Redis starts and stops them; these name this file's own
sub free_port { return Test::Redis::free_port($env->{TEST_NGINX_DEAD_PORT}) }
sub redis_start { return Test::Redis::redis_start(dir => $dir, @_) }
sub cli { return redis_cli(@_) }

sub conductor_clients {
    my ($port, $auth) = @_;
    return scalar grep { /name=nginx-conductor-\d+/ } split /\n/, cli($port, $auth, 'CLIENT', 'LIST');
}

# what each worker sends every sync interval: the fleet's push (EVALSHA)
# from the worker that holds the round, a PING from the others
sub ping_calls {
    my ($port, $auth) = @_;
    my $stats = cli($port, $auth, 'INFO', 'commandstats');
    my $n = 0;
    $n += $1 while $stats =~ /cmdstat_(?:ping|evalsha):calls=(\d+)/g;
    return $n;
}

# ---------------------------------------------------------------- nginx

my $SERVER = <<"SERVER";
    location /v1/ { conductor_route; include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf; }
    location = /conductor/status { conductor_status; }
SERVER

sub gateway {
    my ($redis_line, %o) = @_;
    start_nginx(
        main_config => $VALGRIND ? '' : "worker_processes $NWORKERS;",
        http_config => <<"HTTP",
    conductor_zone conductor:1m;
    conductor_provider p { url http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1; key k1 s1; }
    conductor_model m { p mm; }
    upstream conductor_backend { conductor_balancer; }
    $redis_line
HTTP
        config => $SERVER,
        env    => $o{env},
    );
}

sub redis_status {
    my $s = status_report() or return undef;
    return $s->{redis};
}

sub wait_state {
    my ($state, %o) = @_;
    my $last;
    wait_for(sub {
        $last = redis_status() or return 0;
        # unready: no worker is (the moment a failure is seen); down: every
        # worker's connection has failed and waits for its next attempt
        return $state eq 'ready'   ? $last->{workers}{ready} == $NWORKERS
             : $state eq 'unready' ? $last->{workers}{ready} == 0
             : $state eq 'down'    ? $last->{workers}{down} == $NWORKERS
             : $last->{state} eq $state;
    }, timeout => $o{timeout} // 8, what => "redis state $state");
    return $last;
}

sub chat {
    my $t0 = Time::HiRes::time();
    my $r = http_request(POST => '/v1/chat/completions', {}, '{"model":"m","messages":[]}');
    $r->{elapsed} = Time::HiRes::time() - $t0;
    return $r;
}

# the lines of error.log at warn or above that speak of redis
sub redis_log_lines {
    return grep { /\[(warn|error|crit|alert|emerg)\]/ && /redis/ } split /\n/, error_log_since_start();
}

sub clean_stop {
    my ($what) = @_;
    my $problems = stop_nginx();
    is_deeply $problems, [], "$what: nginx stopped cleanly" or diag explain $problems;
}

# ---------------------------------------------------------------- up

{
    my $port = free_port();
    my $rpid = redis_start(port => $port);
    gateway("conductor_redis redis://127.0.0.1:$port/2 prefix=fleet-a: sync=100ms timeout=$TIMEOUT;");

    my $rs = wait_state('ready');
    is $rs->{state}, 'ready', 'redis up: ready';
    is $rs->{workers}{ready}, $NWORKERS, 'every worker is ready';
    is $rs->{url}, "redis://127.0.0.1:$port/2", 'the url';
    is $rs->{db}, 2, 'db from the url';
    is $rs->{prefix}, 'fleet-a:', 'prefix';
    is $rs->{sync_ms}, 100, 'sync_ms';
    is $rs->{on_failure}, 'local', 'on_failure defaults to local';
    ok defined $rs->{last_reply_age_ms} && $rs->{last_reply_age_ms} < 1000,
        "a recent reply ($rs->{last_reply_age_ms} ms ago)";
    is $rs->{errors}, 0, 'no errors';

    is conductor_clients($port), $NWORKERS, 'one connection per worker (CLIENT LIST)';
    like cli($port, undef, 'CLIENT', 'LIST'), qr/name=nginx-conductor-\d+ .*db=2 /, 'SELECT 2 done';

    my $p0 = ping_calls($port);
    Time::HiRes::sleep(1);
    my $pings = ping_calls($port) - $p0;
    ok $pings >= 5 * $NWORKERS && $pings <= 14 * $NWORKERS,
        "a PING or a push every sync interval: $pings in a second from $NWORKERS worker(s)";

    my $r = chat();
    is $r->{status}, 200, 'a routed request is served';

    unless ($VALGRIND) {
        # a reload: the new workers connect, the old ones' connections go
        my %old = map { $_ => 1 } cli($port, undef, 'CLIENT', 'LIST') =~ /name=(nginx-conductor-\d+)/g;
        kill 'HUP', nginx_pid();
        wait_for(sub {
            my @names = cli($port, undef, 'CLIENT', 'LIST') =~ /name=(nginx-conductor-\d+)/g;
            return @names == $NWORKERS && !grep { $old{$_} } @names;
        }, timeout => 10, what => 'the new workers\' connections only');
        my @names = cli($port, undef, 'CLIENT', 'LIST') =~ /name=(nginx-conductor-\d+)/g;
        is scalar(@names), $NWORKERS, 'after a reload: one connection per new worker';
        is scalar(grep { $old{$_} } @names), 0, 'and none of the old workers\' left';
        is wait_state('ready')->{workers}{ready}, $NWORKERS, 'ready after the reload';
    }

    clean_stop('redis up');
    ok wait_for(sub { conductor_clients($port) == 0 }, what => 'no connection left'),
        'nginx stopped: its connections are closed';

    # ---- redis killed, then restarted on the same port
    gateway("conductor_redis redis://127.0.0.1:$port sync=100ms timeout=$TIMEOUT;");
    wait_state('ready');
    my $t0 = Time::HiRes::time();
    redis_stop($rpid, 'KILL');
    $rs = wait_state('unready', timeout => 5);
    my $seen = Time::HiRes::time() - $t0;
    is $rs->{workers}{ready}, 0, 'redis killed: down';
    ok $seen < ($VALGRIND ? 10 : 1), sprintf 'seen at once (%d ms)', $seen * 1000;
    like error_log_since_start(), qr/redis: \S+ is down: the server closed the connection/, 'said why';

    $rpid = redis_start(port => $port);
    $t0 = Time::HiRes::time();
    $rs = wait_state('ready', timeout => 10);
    is $rs->{workers}{ready}, $NWORKERS, sprintf 'restarted: ready again by itself (%d ms)',
        (Time::HiRes::time() - $t0) * 1000;
    like error_log_since_start(), qr/\[notice\].*redis: \S+ is ready again/, 'logged at notice';
    ok $rs->{reconnects} >= $NWORKERS, "reconnects counted ($rs->{reconnects})";
    ok $rs->{error_kinds}{connection} >= $NWORKERS, 'connection errors counted';
    clean_stop('redis killed');

    # ---- redis SIGSTOPped: the pending commands fail within timeout=
    gateway("conductor_redis redis://127.0.0.1:$port sync=100ms timeout=$TIMEOUT;");
    wait_state('ready');
    my $before = redis_status();
    kill 'STOP', $rpid;
    $t0 = Time::HiRes::time();
    $rs = wait_state('unready', timeout => 5);
    my $hung = Time::HiRes::time() - $t0;
    is $rs->{workers}{ready}, 0, 'redis stopped: down';
    SKIP: {
        skip 'timing under valgrind', 1 if $VALGRIND;
        # a PING goes out within sync=, its deadline is timeout= later
        ok $hung < 0.1 + 0.2 + 0.3, sprintf 'a hung redis found within sync + timeout (%d ms)', $hung * 1000;
    }
    ok $rs->{error_kinds}{timeout} > $before->{error_kinds}{timeout}, 'timeouts counted';
    like error_log_since_start(), qr/redis: \S+ is down: no reply within \d+ms/, 'said why';

    my @lat = map { chat() } 1 .. 5;
    is scalar(grep { $_->{status} == 200 } @lat), 5, 'requests served while redis hangs';
    my ($worst) = sort { $b <=> $a } map { $_->{elapsed} } @lat;
    SKIP: {
        skip 'timing under valgrind', 1 if $VALGRIND;
        ok $worst < 0.15, sprintf 'with no wait for redis (slowest %d ms, timeout 200 ms)', $worst * 1000;
    }

    kill 'CONT', $rpid;
    $t0 = Time::HiRes::time();
    $rs = wait_state('ready', timeout => 10);
    is $rs->{workers}{ready}, $NWORKERS, sprintf 'SIGCONT: ready again (%d ms)', (Time::HiRes::time() - $t0) * 1000;
    is conductor_clients($port), $NWORKERS, 'and one connection per worker again';
    clean_stop('redis stopped');

    # nginx stops while redis hangs with a PING pending: no wait for it
    gateway("conductor_redis redis://127.0.0.1:$port sync=100ms timeout=10s;");
    wait_state('ready');
    kill 'STOP', $rpid;
    wait_for(sub { (redis_status() // {})->{pending} }, what => 'a command pending');
    ok redis_status()->{pending} >= 1, 'a command waits for the hung redis';
    $t0 = Time::HiRes::time();
    clean_stop('stopped while redis hangs');
    my $quit = Time::HiRes::time() - $t0;
    SKIP: {
        skip 'timing under valgrind', 1 if $VALGRIND;
        ok $quit < 2, sprintf 'and at once (%d ms; timeout=10s)', $quit * 1000;
    }
    kill 'CONT', $rpid;
    redis_stop($rpid);
}

# ---------------------------------------------------------------- not running

{
    my $port = free_port();
    gateway("conductor_redis redis://127.0.0.1:$port sync=100ms timeout=$TIMEOUT on_failure=refuse;");

    my $r = chat();
    is $r->{status}, 200, 'redis not running: nginx serves routed requests';
    SKIP: {
        skip 'timing under valgrind', 1 if $VALGRIND;
        ok $r->{elapsed} < 0.15, sprintf 'at once (%d ms)', $r->{elapsed} * 1000;
    }
    my $rs = wait_state('down');
    is $rs->{workers}{ready}, 0, 'status: down';
    is $rs->{on_failure}, 'refuse', 'on_failure=refuse parsed';
    ok !defined $rs->{last_reply_age_ms}, 'no reply ever';
    Time::HiRes::sleep(1.2);
    $rs = redis_status();
    ok $rs->{reconnects} >= 2 * $NWORKERS, "reconnect attempts counted ($rs->{reconnects})";

    my @lines = redis_log_lines();
    is scalar(@lines), $NWORKERS, 'one line per worker, however many attempts'
        or diag join "\n", @lines;
    like $lines[0], qr/\[warn\].*redis: redis:\/\/127\.0\.0\.1:$port is down: connect\(\) failed.*Connection refused/,
        'a warning saying why';

    my $rpid = redis_start(port => $port);
    my $t0 = Time::HiRes::time();
    $rs = wait_state('ready', timeout => 10);
    my $took = Time::HiRes::time() - $t0;
    is $rs->{workers}{ready}, $NWORKERS, sprintf 'redis started: ready (%d ms; backoff at most 5 s)', $took * 1000;
    is scalar(() = error_log_since_start() =~ /\[notice\].*redis: \S+ is ready$/mg), $NWORKERS,
        'ready logged once per worker';
    clean_stop('redis not running');
    redis_stop($rpid);
}

# ---------------------------------------------------------------- passwords

{
    my $good  = 'pw-Zq8-right-4471';
    my $wrong = 'pw-Xk3-wrong-9902';
    my $alice = 'pw-Al1-alice-3310';
    my $port  = free_port();
    my $rpid  = redis_start(port => $port, args => ['--requirepass', $good,
        '--user', 'alice', 'on', ">$alice", '~*', '&*', '+@all']);
    my $auth = ['-a', $good, '--no-auth-warning'];

    open my $fh, '>', "$dir/password" or die;
    print $fh "$good\n";
    close $fh;
    chmod 0600, "$dir/password";

    my @cases = (
        [ 'a literal password', "password=$good" ],
        [ 'password=env=',      'password=env=CONDUCTOR_TEST_REDIS_PW', { CONDUCTOR_TEST_REDIS_PW => $good } ],
        [ 'password=file=',     "password=file=$dir/password" ],
        [ 'an ACL user',        "user=alice password=$alice" ],
    );
    for my $c (@cases) {
        my ($what, $param, $e) = @$c;
        gateway("conductor_redis redis://127.0.0.1:$port $param sync=100ms timeout=$TIMEOUT;", env => $e);
        my $rs = wait_state('ready');
        is $rs->{workers}{ready}, $NWORKERS, "requirepass, $what: ready";
        is conductor_clients($port, $auth), $NWORKERS, "$what: connected";
        my $st = http_request(GET => '/conductor/status', {}, undef)->{body};
        clean_stop($what);
        my $log = error_log_since_start();
        ok index($log, $good) < 0 && index($log, $alice) < 0, "$what: no password in error.log (debug level)";
        ok index($st, $good) < 0 && index($st, $alice) < 0, "$what: nor in the status";
    }

    gateway("conductor_redis redis://127.0.0.1:$port password=$wrong sync=100ms timeout=$TIMEOUT;");
    my $rs = wait_state('down');
    is $rs->{workers}{ready}, 0, 'a wrong password: down';
    Time::HiRes::sleep(0.6);
    $rs = redis_status();
    ok $rs->{error_kinds}{reply} >= $NWORKERS, 'the refused AUTH counted as an error reply';
    my $st = http_request(GET => '/conductor/status', {}, undef)->{body};
    clean_stop('wrong password');
    my $log = error_log_since_start();
    my @auth = grep { /\[error\].*redis: authentication failed/ } split /\n/, $log;
    is scalar(@auth), $NWORKERS, 'authentication failed, logged at error, once per worker'
        or diag join "\n", @auth;
    like $auth[0] // '', qr/authentication failed \(WRONGPASS\)/, 'with the error code';
    ok index($log, $wrong) < 0 && index($log, $good) < 0, 'no password in error.log';
    ok index($st, $wrong) < 0, 'nor in the status';

    gateway("conductor_redis redis://127.0.0.1:$port sync=100ms timeout=$TIMEOUT;");
    wait_state('down');
    clean_stop('no password');
    like error_log_since_start(), qr/\[error\].*redis: authentication failed \(NOAUTH: the server needs a password=\)/,
        'no password for a server that wants one: said so';

    redis_stop($rpid);
}

# ---------------------------------------------------------------- TLS

{
    my $q = '>/dev/null 2>&1';
    for my $ca (qw(ca other-ca)) {
        system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=conductor-$ca "
            . "-keyout $dir/$ca.key -out $dir/$ca.crt $q") == 0 or die $ca;
    }
    my %san = (redis => 'DNS:localhost,IP:127.0.0.1', wrongname => 'DNS:other.conductor.test');
    for my $cert (sort keys %san) {
        system("openssl req -newkey rsa:2048 -nodes -subj /CN=$cert "
            . "-keyout $dir/$cert.key -out $dir/$cert.csr $q") == 0 or die 'csr';
        open my $ext, '>', "$dir/$cert.ext" or die;
        print $ext "subjectAltName=$san{$cert}\n";
        close $ext;
        system("openssl x509 -req -in $dir/$cert.csr -CA $dir/ca.crt -CAkey $dir/ca.key "
            . "-CAcreateserial -days 2 -extfile $dir/$cert.ext -out $dir/$cert.crt $q") == 0 or die 'crt';
    }

    my $tls_redis = sub {
        my ($port, $cert) = @_;
        return redis_start(port => $port, args => ['--port', 0, '--tls-port', $port,
            '--tls-cert-file', "$dir/$cert.crt", '--tls-key-file', "$dir/$cert.key",
            '--tls-ca-cert-file', "$dir/ca.crt", '--tls-auth-clients', 'no']);
    };

    my $port = free_port();
    my $rpid = $tls_redis->($port, 'redis');
    my $tauth = ['--tls', '--cacert', "$dir/ca.crt"];

    for my $host ('127.0.0.1', 'localhost') {
        gateway("conductor_redis rediss://$host:$port ca=$dir/ca.crt sync=100ms timeout=$TIMEOUT;");
        my $rs = wait_state('ready');
        is $rs->{workers}{ready}, $NWORKERS, "rediss://$host with ca=: ready";
        ok $rs->{tls}, 'status says tls';
        is conductor_clients($port, $tauth), $NWORKERS, 'one TLS connection per worker';
        my $p0 = ping_calls($port, $tauth);
        Time::HiRes::sleep(0.5);
        ok ping_calls($port, $tauth) > $p0, 'PINGs or pushes over TLS';
        clean_stop("rediss://$host");
    }

    # another CA, then none (the system's store does not know the test CA)
    for my $c ([ 'a wrong CA', "ca=$dir/other-ca.crt" ], [ 'the system store', '' ]) {
        my ($what, $param) = @$c;
        gateway("conductor_redis rediss://127.0.0.1:$port $param sync=100ms timeout=$TIMEOUT;");
        my $rs = wait_state('down');
        is $rs->{workers}{ready}, 0, "rediss:// against $what: down";
        Time::HiRes::sleep(0.4);
        clean_stop($what);
        like error_log_since_start(),
            qr/\[error\].*redis: \S+ is down: certificate verify error: \(\d+:[^)]+\)/, "$what: certificate verify error";
        is scalar(redis_log_lines()), $NWORKERS, "$what: one line per worker";
    }
    redis_stop($rpid);

    # a certificate of the CA, for another name
    $rpid = $tls_redis->($port, 'wrongname');
    gateway("conductor_redis rediss://127.0.0.1:$port ca=$dir/ca.crt sync=100ms timeout=$TIMEOUT;");
    wait_state('down');
    clean_stop('wrong name');
    like error_log_since_start(), qr/\[error\].*redis: \S+ is down: the certificate does not name "127\.0\.0\.1"/,
        'a certificate for another name: refused';
    redis_stop($rpid);

    # rediss:// to a server that speaks no TLS
    $rpid = redis_start(port => $port);
    gateway("conductor_redis rediss://127.0.0.1:$port ca=$dir/ca.crt sync=100ms timeout=$TIMEOUT;");
    # a plain Redis waits for the end of a line that never comes
    my $no_tls = qr/redis: \S+ is down: (?:TLS handshake failed|no TLS handshake within \d+ms)/;
    ok wait_for(sub { error_log_since_start() =~ $no_tls }, what => 'the handshake to fail'),
        'no TLS server: no handshake';
    is wait_state('down')->{workers}{ready}, 0, 'no TLS server: down';
    clean_stop('no TLS');
    redis_stop($rpid);
}

run_tests();
done_testing();

__DATA__

=== TEST 1: a url with another scheme
--- http_config
conductor_redis http://127.0.0.1:6379;
--- must_die
--- error_log
invalid conductor_redis url: it must start with redis:// or rediss://

=== TEST 2: a password in the url is refused, and not repeated
--- http_config
conductor_redis redis://u:pw-in-url-5555@127.0.0.1:6379;
--- must_die
--- error_log
no user or password in it
--- no_error_log
pw-in-url-5555

=== TEST 3: a database that is not a number
--- http_config
conductor_redis redis://127.0.0.1:6379/x;
--- must_die
--- error_log
invalid database "/x" in url "redis://127.0.0.1:6379/x"

=== TEST 4: a bad port
--- http_config
conductor_redis redis://127.0.0.1:99999/0;
--- must_die
--- error_log
invalid port in url "redis://127.0.0.1:99999/0"

=== TEST 5: a mistyped parameter is named without its value
--- http_config
conductor_redis redis://127.0.0.1:6379 pasword=pw-typo-7777;
--- must_die
--- error_log
invalid parameter "pasword=..." of conductor_redis
--- no_error_log
pw-typo-7777

=== TEST 6: timeout=0
--- http_config
conductor_redis redis://127.0.0.1:6379 timeout=0;
--- must_die
--- error_log
invalid parameter "timeout=..." of conductor_redis

=== TEST 7: a sync that is no time
--- http_config
conductor_redis redis://127.0.0.1:6379 sync=often;
--- must_die
--- error_log
invalid parameter "sync=..." of conductor_redis

=== TEST 8: on_failure takes local or refuse
--- http_config
conductor_redis redis://127.0.0.1:6379 on_failure=maybe;
--- must_die
--- error_log
expected password=, user=, prefix=, sync=TIME|0, timeout=TIME, on_failure=local|refuse or ca=PATH

=== TEST 9: user= without a password
--- http_config
conductor_redis redis://127.0.0.1:6379 user=alice;
--- must_die
--- error_log
conductor_redis user= needs a password=

=== TEST 10: ca= without rediss://
--- http_config
conductor_redis redis://127.0.0.1:6379 ca=/etc/ssl/certs/ca-certificates.crt;
--- must_die
--- error_log
conductor_redis ca= needs a rediss:// url

=== TEST 11: a ca= file that is not there
--- http_config
conductor_redis rediss://127.0.0.1:6379 ca=/nonexistent/conductor-ca.crt;
--- must_die
--- error_log
cannot load the certificates of ca="/nonexistent/conductor-ca.crt" of conductor_redis

=== TEST 12: the password's environment variable is not set
--- http_config
conductor_redis redis://127.0.0.1:6379 password=env=CONDUCTOR_TEST_SURELY_UNSET;
--- must_die
--- error_log
environment variable "CONDUCTOR_TEST_SURELY_UNSET" of key "conductor_redis password" is not set

=== TEST 13: the password's file is not there
--- http_config
conductor_redis redis://127.0.0.1:6379 password=file=/nonexistent/conductor/redis-pw;
--- must_die
--- error_log
cannot read the file "/nonexistent/conductor/redis-pw" of key "conductor_redis password"

=== TEST 14: twice
--- http_config
conductor_redis redis://127.0.0.1:6379;
conductor_redis redis://127.0.0.1:6380;
--- must_die
--- error_log
"conductor_redis" directive is duplicate

=== TEST 15: a prefix with a control character or too long
--- http_config eval
"conductor_redis redis://127.0.0.1:6379 prefix=" . ('p' x 129) . ";"
--- must_die
--- error_log
invalid prefix

=== TEST 16: not in a server block
--- http_config
server { listen 127.0.0.1:1; conductor_redis redis://127.0.0.1:6379; }
--- must_die
--- error_log
"conductor_redis" directive is not allowed here

=== TEST 17: the defaults are accepted (nginx starts; status shows them)
--- http_config
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 s1; }
upstream conductor_backend { conductor_balancer; }
conductor_redis redis://127.0.0.1:$TEST_NGINX_DEAD_PORT;
--- config
location = /conductor/status { conductor_status; }
--- request
GET /conductor/status
--- error_code: 200
--- checks
my $r = $resp->{json}{redis};
is $r->{sync_ms}, 100, 'sync defaults to 100ms';
is $r->{timeout_ms}, 200, 'timeout defaults to 200ms';
is $r->{db}, 0, 'db defaults to 0';
is $r->{prefix}, 'conductor:', 'prefix defaults to conductor:';
is $r->{on_failure}, 'local', 'on_failure defaults to local';
is $r->{tls}, JSON::PP::false, 'no tls';
