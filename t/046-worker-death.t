# A worker that dies while it holds requests (SIGKILL, the OOM killer) must
# not leave its holds in the shared zone: its in-flight counts and queue
# places are reclaimed once the master has started a worker in its place (or
# at the next reload), while the holds of workers that are still alive, old
# workers finishing their requests after a reload included, are kept.
#
# nginx runs with master_process on and two workers; key k1 has
# max_inflight=2. Held requests are streams: the upstream model "pm;gate"
# carries the mock's `gate` token, which holds an event stream after its
# first event until POST /__mock/release (a non-streaming answer is never
# held, so plain requests to the same alias are answered at once). The
# token is in the model, not in an X-Mock header, because
# conductor_proxy.conf passes only the headers it names upstream.
#
# The worker holding a request is found by its client connection: the
# server side of it (local port = nginx's, remote port = the client's) in
# /proc/net/tcp gives a socket inode, and the worker with that inode among
# its /proc/PID/fd links owns it. Workers are the master's children
# (/proc/PID/stat); one is up (its init_process, where a respawned worker
# reclaims, has run) once its title is "nginx: worker process".
use lib 't/lib';
use Test::Conductor;
use Test::More ();
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

BEGIN { *subtest = \&Test::More::subtest }

# under valgrind the harness runs nginx as one process (master_process off):
# there is no master to respawn a killed worker, and nothing to test here
if ($ENV{TEST_NGINX_USE_VALGRIND}) {
    Test::More::plan(skip_all => 'needs a master process; valgrind runs '
                               . 'nginx as a single process');
}

my $env  = harness_env();
my $PORT = $env->{TEST_NGINX_PORT};

my $CHAT     = '/v1/chat/completions';
my $PLAIN    = '{"model":"m","messages":[]}';
my $STREAM   = '{"model":"m","stream":true,"messages":[]}';
my $HTTP_KEY = <<"HTTP";
    conductor_zone conductor:1m;
    conductor_provider p { url http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1; key k1 s1 max_inflight=2; }
    conductor_model m { p "pm;gate"; }
    upstream conductor_backend { conductor_balancer; }
HTTP
my $SERVER = <<"SERVER";
    location /v1/ { conductor_route; include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf; }
    location = /conductor/status { conductor_status; }
SERVER
my $MAIN = 'worker_processes 2;';

my %killed;    # every worker pid this file SIGKILLed (their death is no problem)
my $SHORT;     # a wait for the counts failed in this subtest: later ones are short

# ---------------------------------------------------------------- processes

# the live children of the master (workers, old ones finishing included)
sub workers {
    my $master = nginx_pid() or return ();
    my @pids;
    opendir my $dh, '/proc' or return ();
    for my $pid (grep {/^\d+\z/} readdir $dh) {
        open my $fh, '<', "/proc/$pid/stat" or next;
        my $stat = do { local $/; <$fh> } // '';
        my ($state, $ppid) = $stat =~ /^\d+ \(.*\) (\S) (\d+)/s or next;
        push @pids, 0 + $pid if $ppid == $master && $state ne 'Z';
    }
    return sort { $a <=> $b } @pids;
}

sub alive {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = do { local $/; <$fh> } // '';
    return $stat =~ /^\d+ \(.*\) Z/s ? 0 : 1;
}

# A worker is up once it runs its event loop: nginx sets the title "worker
# process" right after the modules' init_process (where a worker reclaims
# the holds of dead ones), and a debug build logs "worker cycle" in the loop.
sub worker_ready {
    my ($pid) = @_;
    if (open my $fh, '<', "/proc/$pid/cmdline") {
        my $title = do { local $/; <$fh> } // '';
        return 1 if $title =~ /^nginx: worker process/;
    }
    return error_log_since_start() =~ /\] \Q$pid#$pid\E: worker cycle/ ? 1 : 0;
}

# Waits until the master has $want workers that are neither in @exclude nor
# dead and all of them are up; returns their pids (sorted) or () on timeout.
sub wait_workers {
    my ($want, @exclude) = @_;
    my %ex = map { $_ => 1 } @exclude;
    my @now;
    wait_for(sub {
        @now = grep { !$ex{$_} } workers();
        return @now == $want && !grep { !worker_ready($_) } @now;
    }, timeout => 10, what => "$want workers up (besides @exclude)") or return ();
    return @now;
}

# The worker that holds the client connection whose local port is $lport,
# among the master's children; undef when none does (yet).
sub conn_owner {
    my ($lport) = @_;
    my %inode;
    for my $file ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $file or next;
        while (my $line = <$fh>) {
            my @f = split ' ', $line;
            next unless @f > 9 && $f[1] =~ /:([0-9A-F]{4})\z/;
            my $local = hex $1;
            next unless $f[2] =~ /:([0-9A-F]{4})\z/;
            my $remote = hex $1;
            $inode{ $f[9] } = 1 if $local == $PORT && $remote == $lport && $f[9];
        }
    }
    return undef unless %inode;
    for my $pid (workers()) {
        opendir my $dh, "/proc/$pid/fd" or next;
        for my $fd (readdir $dh) {
            my $link = readlink "/proc/$pid/fd/$fd" // next;
            return $pid if $link =~ /^socket:\[(\d+)\]\z/ && $inode{$1};
        }
    }
    return undef;
}

sub owner_of {
    my ($lport) = @_;
    my $pid;
    wait_for(sub { $pid = conn_owner($lport) }, timeout => 5, what => "the worker of client port $lport");
    return $pid;
}

# SIGKILL these workers, wait until the master has reaped them
sub kill_workers {
    my (@pids) = @_;
    for my $pid (@pids) {
        $killed{$pid} = 1;
        kill 'KILL', $pid;
    }
    wait_for(sub { !grep { alive($_) } @pids }, timeout => 10, what => "workers @pids gone");
}

# problems of stop_nginx() other than the deaths this file caused
sub stop_checked {
    my $problems = stop_nginx();
    return [ grep {
        !(/exited on signal 9\b/ && /process (\d+) exited/ && $killed{$1})
            && !(/was locked by (\d+)/ && $killed{$1})
    } @$problems ];
}

# ---------------------------------------------------------------- requests

# the key's state in the status report
sub key_status {
    my ($st, $provider, $key) = @_;
    return undef unless $st;
    my ($p) = grep { $_->{name} eq $provider } @{ $st->{providers} || [] };
    my ($k) = grep { $_->{name} eq $key } @{ $p->{keys} || [] };
    return $k;
}

# waits (bounded) until the key's inflight is $want; returns the last seen
sub inflight_wait {
    my ($want, %o) = @_;
    my ($provider, $key) = @{ $o{key} || [ 'p', 'k1' ] };
    my $st = status_wait(sub { ((key_status($_, $provider, $key) || {})->{inflight} // -1) == $want },
        timeout => $o{timeout} // ($SHORT ? 1 : 5), what => "inflight of $provider/$key to be $want");
    my $got = (key_status($st, $provider, $key) || {})->{inflight};
    $SHORT = 1 unless defined $got && $got == $want;
    return $got;
}

# a stream that the mock holds after its first event; undef unless it got
# a 200 and that event
sub gated {
    my $s = http_stream_open(POST => $CHAT, {}, $STREAM, timeout => 20);
    return $s if ($s->status // 0) == 200 && $s->read_until(qr/"role":"assistant"/, 10);
    $s->read_all(2);
    Test::More::diag('a gated stream got ' . ($s->status // 'no answer') . ': ' . substr($s->body // '', 0, 300));
    $s->close;
    return undef;
}

# a request that is refused by the gateway itself: 429, its own error
sub refused {
    my ($r) = @_;
    return ($r->{status} // 0) == 429 && !exists $r->{headers}{'x-mock-port'}
        && ($r->{body} // '') =~ /at its limit/;
}

# a request written on a new connection, answer read later (raw_read)
sub raw_send {
    my ($body, %headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $PORT, Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    my $req = "POST $CHAT HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n"
        . join('', map {"$_: $headers{$_}\r\n"} sort keys %headers) . "\r\n$body";
    syswrite $s, $req;
    return $s;
}

# reads the answer up to EOF, at most $timeout s: { status, body, timed_out }
sub raw_read {
    my ($s, $timeout) = @_;
    my $deadline = Time::HiRes::time() + $timeout;
    my $sel = IO::Select->new($s);
    my $raw = '';
    my $timed_out = 0;
    while (1) {
        my $left = $deadline - Time::HiRes::time();
        if ($left <= 0) { $timed_out = 1; last }
        next unless $sel->can_read($left);
        my $n = sysread $s, my $buf, 65536;
        last unless $n;
        $raw .= $buf;
    }
    close $s;
    my ($status) = $raw =~ m{\AHTTP/1\.\d (\d{3})};
    return { status => $status // 0, body => $raw, timed_out => $timed_out };
}

# whether nginx has answered (or closed) on this connection already
sub raw_answered { return scalar IO::Select->new($_[0])->can_read(0) }

# enqueued requests so far, by the route's debug line
sub queued_count {
    my @n = error_log_since_start() =~ /conductor: queued, next look in/g;
    return scalar @n;
}

# Two gated streams on k1, one on each worker: idle connections are opened
# in bursts until two workers have accepted some, then the request goes on
# one of each. Returns ({sock, owner, buf}, {...}) or ().
sub held_on_two_workers {
    for my $attempt (1 .. 10) {
        my @c = map { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $PORT, Proto => 'tcp', Timeout => 5) }
            1 .. 12;
        my %by;
        for my $c (grep {$_} @c) {
            my $pid;
            wait_for(sub { $pid = conn_owner($c->sockport) }, timeout => 2, what => 'an idle connection accepted');
            push @{ $by{$pid} }, $c if $pid;
        }
        my @pids = sort keys %by;
        if (@pids >= 2) {
            my @h = map { { sock => shift @{ $by{$_} }, owner => $_, buf => '' } } @pids[0, 1];
            close $_ for map { @$_ } values %by;
            for my $h (@h) {
                syswrite $h->{sock}, "POST $CHAT HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                    . "Content-Type: application/json\r\nContent-Length: "
                    . length($STREAM) . "\r\n\r\n$STREAM";
            }
            for my $h (@h) {
                my $ok = held_read($h, qr/"role":"assistant"/, 10);
                unless ($ok && $h->{buf} =~ m{\AHTTP/1\.1 200 }) {
                    Test::More::diag("a held stream on $h->{owner} got: " . substr($h->{buf}, 0, 300));
                    return ();
                }
            }
            return @h;
        }
        close $_ for grep {$_} @c;
    }
    Test::More::diag('the connections never spread over both workers');
    return ();
}

# reads into $h->{buf} until it matches $re (true) or EOF / timeout (false)
sub held_read {
    my ($h, $re, $timeout) = @_;
    my $deadline = Time::HiRes::time() + $timeout;
    my $sel = IO::Select->new($h->{sock});
    while ($h->{buf} !~ $re) {
        my $left = $deadline - Time::HiRes::time();
        return 0 if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread $h->{sock}, my $data, 65536;
        return 0 unless $n;
        $h->{buf} .= $data;
    }
    return 1;
}

# the rest of a held stream: true if it ended with [DONE] and the last chunk
sub held_finish {
    my ($h) = @_;
    my $ok = held_read($h, qr/data: \[DONE\].*\r\n0\r\n\r\n\z/s, 10);
    close $h->{sock};
    return $ok;
}

sub start {
    my (%o) = @_;
    %killed = ();
    $SHORT = 0;
    eval { mock_release() };
    mock_clear();
    start_nginx(main_config => $MAIN, http_config => $o{http} // $HTTP_KEY, config => $SERVER);
    my @w = wait_workers(2);
    die "nginx did not bring up its two workers\n" unless @w == 2;
    return @w;
}

# ---------------------------------------------------------------- 1

subtest 'SIGKILL of the worker holding two streams at max_inflight=2' => sub {
    start();
    my @g = (gated(), gated());
    ok $g[0] && $g[1], 'two gated streams in flight on k1 (max_inflight=2)' or return;
    is inflight_wait(2), 2, 'status: inflight 2';
    ok refused(http_request(POST => $CHAT, {}, $PLAIN)), 'a third gets 429 from the gateway: the limit holds';

    my @own = map { owner_of($_->{local_port}) } @g;
    ok $own[0] && $own[1], "their workers: @own" or return;
    my $victim = $own[0];
    my $left   = grep { $_ != $victim } @own;    # held by the worker that lives on
    kill_workers($victim);
    $g[0]->read_all(5);
    ok !$g[0]->complete, 'the killed stream was cut (no end of the answer)';
    my @w = wait_workers(2, $victim);
    is scalar @w, 2, "the master started a worker in place of $victim: @w";

    is inflight_wait($left), $left, "status: inflight $left (what is really in flight) once it is up";
    my $r = http_request(POST => $CHAT, {}, $PLAIN);
    is $r->{status}, 200, 'a new request to the key is served at once'
        or diag "got $r->{status}: $r->{body}";

    if ($left) {
        # the count was corrected, not wiped: the living worker's hold stays
        my $g3 = gated();
        ok $g3, 'one more gated stream fits (1 + 1 = 2)';
        push @g, $g3 if $g3;
        ok refused(http_request(POST => $CHAT, {}, $PLAIN)), 'and then the key is full again: 429';
    }

    mock_release();
    my @lived = ((grep { $own[$_] != $victim } 0 .. 1), 2 .. $#g);
    for (@lived) {
        $g[$_]->read_all(10);
        $g[$_]->wait_close;    # nginx logs (and releases) a request as it closes
    }
    ok !(grep { !$g[$_]->complete } @lived), 'the streams that lived on ended normally';
    is inflight_wait(0), 0, 'status: inflight 0 after the release';
    is http_request(POST => $CHAT, {}, $PLAIN)->{status}, 200, 'and the key serves';
    is_deeply stop_checked(), [], 'no problem in the log but the kill';
};

subtest 'a respawn keeps the holds of the worker that lives on' => sub {
    start();
    my @h = held_on_two_workers();
    ok @h == 2, 'two gated streams on k1, one on each worker: ' . join(' ', map { $_->{owner} } @h) or return;
    is inflight_wait(2), 2, 'status: inflight 2';
    ok refused(http_request(POST => $CHAT, {}, $PLAIN)), 'a third gets 429 from the gateway';
    kill_workers($h[0]{owner});
    is scalar(wait_workers(2, $h[0]{owner})), 2, "a worker was started in place of $h[0]{owner}";
    is inflight_wait(1), 1, "status: inflight 1: the stream of $h[1]{owner} is still counted";
    is http_request(POST => $CHAT, {}, $PLAIN)->{status}, 200, 'a request fits beside it';
    my $g = gated();
    ok $g, 'so does a gated stream (1 + 1 = 2)';
    ok refused(http_request(POST => $CHAT, {}, $PLAIN)), 'and then the key is full: 429';
    mock_release();
    ok held_finish($h[1]), "the stream on $h[1]{owner} ended normally";
    $g->read_all(10) if $g;
    is inflight_wait(0), 0, 'status: inflight 0 after the release';
    is_deeply stop_checked(), [], 'no problem in the log but the kill';
};

subtest "a client's holds go with the worker that dies" => sub {
    # the client, not the key, is the limit here: its max_inflight=2
    my $http = <<"HTTP";
    conductor_zone conductor:1m;
    conductor_provider p { url http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1; key k1 s1; }
    conductor_model m { p "pm;gate"; }
    conductor_client c { key sk-c; limit max_inflight=2; }
    conductor_auth on;
    upstream conductor_backend { conductor_balancer; }
HTTP
    start(http => $http);
    my %key = (Authorization => 'Bearer sk-c');
    my $open = sub {
        my $s = http_stream_open(POST => $CHAT, {%key}, $STREAM, timeout => 20);
        return $s if ($s->status // 0) == 200 && $s->read_until(qr/"role":"assistant"/, 10);
        $s->close;
        return undef;
    };
    my $full = sub {
        my $r = http_request(POST => $CHAT, {%key}, $PLAIN);
        return ($r->{status} // 0) == 429 && ($r->{body} // '') =~ /client \\"c\\" is at its limit max_inflight=2/;
    };
    my @g = ($open->(), $open->());
    ok $g[0] && $g[1], 'two gated streams of client c (max_inflight=2)' or return;
    ok $full->(), 'a third: 429, the client is at its limit';
    my @own = map { owner_of($_->{local_port}) } @g;
    ok $own[0] && $own[1], "their workers: @own" or return;
    my $victim = $own[0];
    my $left   = grep { $_ != $victim } @own;
    kill_workers($victim);
    $g[0]->read_all(5);
    is scalar(wait_workers(2, $victim)), 2, "a worker was started in place of $victim";
    my @more;
    for (1 .. 2 - $left) {
        my $g = $open->();
        push @more, $g if $g;
    }
    is scalar(@more), 2 - $left, "what the dead worker held is free again: " . (2 - $left) . " more fit";
    ok $full->(), 'and then the client is full again: 429';
    mock_release();
    # read to their end and closed: nginx logs (and releases) them then
    for my $s ((map { $g[$_] } grep { $own[$_] != $victim } 0 .. 1), @more) {
        $s->read_all(10);
        $s->wait_close;
    }
    ok wait_for(sub { http_request(POST => $CHAT, {%key}, $PLAIN)->{status} == 200 }, timeout => 10,
        what => 'the client served after the release'), 'after the release the client is served';
    is_deeply stop_checked(), [], 'no problem in the log but the kill';
};

# ---------------------------------------------------------------- 2

# load: short requests on another key, in forked children, so kills also
# land on requests being picked, connected, answered, logged
sub start_load {
    my ($n) = @_;
    my @kids;
    for (1 .. $n) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            $SIG{TERM} = sub { POSIX::_exit(0) };
            my $stop = Time::HiRes::time() + 45;
            while (Time::HiRes::time() < $stop) {
                my $s = eval { raw_send('{"model":"bulk","messages":[]}') } or next;
                raw_read($s, 5);
            }
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    return @kids;
}

sub stop_load {
    kill 'TERM', @_;
    waitpid $_, 0 for @_;
}

subtest 'twelve kills under load' => sub {
    my $http = $HTTP_KEY . <<"HTTP";
    conductor_provider q { url http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT2}/v1; key k2 s2 max_inflight=64; }
    conductor_model bulk { q "qm;ttfb=20"; }
HTTP
    start(http => $http);
    my @kids = start_load(3);    # before any stream opens: they inherit no socket of ours
    my $rounds = 0;
    my $failed;
    for my $round (1 .. 12) {
        my @g = (gated(), gated());
        unless ($g[0] && $g[1]) { $failed = "round $round: two gated streams did not both start"; last }
        my @own = map { owner_of($_->{local_port}) } @g;
        unless ($own[0] && $own[1]) { $failed = "round $round: no owner found (@own)"; last }
        # alternately the first's, the second's, and every fourth round both
        my @victims = $round % 4 == 0 ? @own : ($own[$round % 2]);
        my %v = map { $_ => 1 } @victims;
        kill_workers(keys %v);
        unless (wait_workers(2, keys %v) == 2) { $failed = "round $round: no respawn"; last }
        mock_release();
        $_->read_all(10), $_->close for @g;
        my $now = inflight_wait(0, timeout => 5);
        unless (defined $now && $now == 0) {
            $failed = "round $round (killed " . join(',', sort keys %v) . " holding "
                . join(',', @own) . "): k1 inflight stays " . ($now // 'unknown') . ' after the release';
            last;
        }
        $rounds++;
    }
    stop_load(@kids);
    is $rounds, 12, 'twelve rounds of two gated streams, a kill, a release: k1 back to 0 each time'
        or diag $failed;
    is inflight_wait(0), 0, 'k1: inflight 0 at the end';
    is inflight_wait(0, key => [ 'q', 'k2' ]), 0, 'k2 (the load, killed at random points): inflight 0';
    my $st = status_report();
    cmp_ok +(key_status($st, 'q', 'k2') || {})->{requests} // 0, '>', 12, 'the load did run';
    my @r = map { http_request(POST => $CHAT, {}, $PLAIN)->{status} } 1 .. 3;
    is_deeply \@r, [200, 200, 200], 'requests to k1 pass';
    is http_request(POST => $CHAT, {}, '{"model":"bulk","messages":[]}')->{status}, 200, 'and to k2';
    is_deeply stop_checked(), [], 'no problem in the log but the kills';
};

# ---------------------------------------------------------------- 3

subtest 'queue places of a killed worker are given back' => sub {
    my $http = $HTTP_KEY . "    conductor_queue timeout=10s max=2;\n";
    start(http => $http);
    my @g = (gated(), gated());
    ok $g[0] && $g[1], 'k1 full: two gated streams' or return;
    is inflight_wait(2), 2, 'status: inflight 2';

    my $q0 = queued_count();
    my @q = map { raw_send($PLAIN) } 1 .. 2;
    ok wait_for(sub { queued_count() >= $q0 + 2 }, timeout => 5, what => 'two requests queued'),
        'two requests queued';
    my $t = Time::HiRes::time();
    my $r = http_request(POST => $CHAT, {}, $PLAIN);
    ok refused($r) && Time::HiRes::time() - $t < 3, 'a third is refused at once: the queue (max=2) is full'
        or diag "got $r->{status} after " . (Time::HiRes::time() - $t) . " s";
    ok !(grep { raw_answered($_) } @q), 'the queued two still wait';

    my @qown = map { owner_of($_->sockport) } @q;
    my @gown = map { owner_of($_->{local_port}) } @g;
    ok $qown[0] && $qown[1] && $gown[0] && $gown[1], "queued on @qown, streams on @gown" or return;
    my %v = map { $_ => 1 } @qown;
    my $left = grep { !$v{$_} } @gown;
    kill_workers(keys %v);
    close $_ for @q;
    is scalar(wait_workers(2, keys %v)), 2, 'workers respawned in place of ' . join(',', sort keys %v);
    is inflight_wait($left), $left, "status: inflight $left";

    # the same again: k1 full, two queued, a third refused at once
    my @g2 = map { gated() } 1 .. 2 - $left;
    ok !(grep { !$_ } @g2), 'k1 filled again: ' . scalar(@g2) . ' more gated' or diag 'k1 does not take them';
    $q0 = queued_count();
    my $tq = Time::HiRes::time();
    my @q2 = map { raw_send($PLAIN) } 1 .. 2;
    my $queued = wait_for(sub { queued_count() >= $q0 + 2 || (grep { raw_answered($_) } @q2) == 2 },
        timeout => 5, what => 'two requests queued again');
    ok $queued && queued_count() >= $q0 + 2, 'the queue takes two requests again';
    $t = Time::HiRes::time();
    $r = http_request(POST => $CHAT, {}, $PLAIN);
    ok refused($r) && Time::HiRes::time() - $t < 3, 'a third is refused at once: still bounded at 2';

    mock_release();
    my @a = map { raw_read($_, 15) } @q2;
    is_deeply [ map { $_->{status} } @a ], [200, 200], 'the two queued ones are served once the streams end'
        or diag map { "queued answer after " . sprintf('%.1f', Time::HiRes::time() - $tq) . " s: "
            . substr($_->{body}, 0, 400) . "\n" } @a;
    $_->read_all(10) for grep {$_} @g, @g2;
    is inflight_wait(0), 0, 'status: inflight 0';
    is http_request(POST => $CHAT, {}, $PLAIN)->{status}, 200, 'the key serves';
    is_deeply stop_checked(), [], 'no problem in the log but the kills';
};

# ---------------------------------------------------------------- 4

sub reload {
    my (@old) = @_;
    kill 'HUP', nginx_pid();
    return wait_workers(2, @old);
}

subtest 'reload under load: old workers keep their holds' => sub {
    my @gen1 = start();
    my @g = (gated(), gated());
    ok $g[0] && $g[1], 'k1 full: two gated streams' or return;
    my @own = map { owner_of($_->{local_port}) } @g;
    my @gen2 = reload(@gen1);
    is scalar @gen2, 2, "reloaded: new workers @gen2 are up";
    ok !(grep { !alive($_) } @own), "the old workers holding the streams finish them (@own)";
    is inflight_wait(2), 2, 'status: inflight still 2';
    ok refused(http_request(POST => $CHAT, {}, $PLAIN)), 'a new request gets 429: the count was not wiped';

    mock_release();
    $_->read_all(10) for @g;
    ok !(grep { !$_->complete } @g), 'the old workers finished their streams';
    ok wait_for(sub { !grep { alive($_) } @gen1 }, timeout => 10, what => 'old workers gone'), 'the old workers exited';
    is inflight_wait(0), 0, 'status: inflight 0';
    is http_request(POST => $CHAT, {}, $PLAIN)->{status}, 200, 'a new request is served';
    is_deeply stop_checked(), [], 'clean';
};

subtest 'an old worker killed while it finishes: its holds go, at the next reload' => sub {
    my @gen1 = start();
    my @h = held_on_two_workers();
    ok @h == 2, 'k1 full: two gated streams, one on each worker: ' . join(' ', map { $_->{owner} } @h) or return;
    my @gen2 = reload(@gen1);
    is scalar @gen2, 2, "reloaded: new workers @gen2";
    is inflight_wait(2), 2, 'status: inflight 2, held by the old workers';
    ok refused(http_request(POST => $CHAT, {}, $PLAIN)), 'a new request gets 429';

    kill_workers($h[0]{owner});
    # the master starts no worker in place of an old one: the next worker
    # start, here that of a second reload, finds the dead one's holds
    my @gen3 = reload(@gen1, @gen2);
    is scalar @gen3, 2, "old worker $h[0]{owner} killed, reloaded again: workers @gen3";
    ok alive($h[1]{owner}), "old worker $h[1]{owner} still finishes its stream";
    is inflight_wait(1), 1, "status: inflight 1 (the stream of $h[1]{owner} only)";
    my $r = http_request(POST => $CHAT, {}, $PLAIN);
    is $r->{status}, 200, 'a new request is served' or diag "got $r->{status}: $r->{body}";
    my $g3 = gated();
    ok $g3, 'one more gated stream fits (1 + 1 = 2)';
    ok refused(http_request(POST => $CHAT, {}, $PLAIN)), 'then the key is full: 429';
    mock_release();
    ok held_finish($h[1]), "the old worker's stream ended normally";
    $g3->read_all(10) if $g3;
    is inflight_wait(0), 0, 'status: inflight 0 once the rest ended';
    is http_request(POST => $CHAT, {}, $PLAIN)->{status}, 200, 'the key serves';
    is_deeply stop_checked(), [], 'no problem in the log but the kill';
};

done_testing();
