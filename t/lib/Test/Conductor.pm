package Test::Conductor;

# Block-format test harness for ngx_http_conductor_module, on Test::Base.
# Reads the Test::Nginx::Socket section names, runs a fresh nginx per block
# against the node mock provider (t/mock/provider.js) and checks the answers.
# The POD after __END__ is the reference for the block format.

use Test::Base -base;    # lower-case -base: subclass without Spiffy's source filter

use Cwd ();
use File::Basename ();
use File::Path ();
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Time::HiRes ();

our @EXPORT = qw(
    run_tests done_testing block_defaults
    harness_env start_mock stop_mock mock_requests mock_clear mock_release
    start_nginx stop_nginx nginx_running nginx_pid error_log_since_start
    http_request http_stream_open parse_sse sse_blocks block_json usage_only
    wait_for status_report status_wait run_logged route_location
    burst drain tally away_from_minute_edge
);

# ---------------------------------------------------------------- settings

my $ROOT     = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../../..');
my $VALGRIND = $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0;
my $NGINX    = $ENV{TEST_NGINX_BINARY} // (-x '/usr/sbin/nginx' ? '/usr/sbin/nginx' : 'nginx');
my $NODE     = $ENV{TEST_NGINX_NODE} // 'node';
my $MODULE   = $ENV{TEST_NGINX_MODULE} // "$ROOT/build/ngx_http_conductor_module.so";
my $VALGRIND_ERROR_EXIT = 97;
my $LOG_FORMAT = 'conductor_test_harness';    # of logs/access.log, see _nginx_conf

# How long http_request waits for the access log line of an answer, and
# wait_for / status_wait for their condition, by default (seconds, scaled
# under valgrind). A test may `local`ize it.
our $WAIT_SECONDS = 5;

# valgrind slows nginx down by an order of magnitude: request timeouts and
# the other waits for nginx grow with it
my $SCALE = $VALGRIND ? 10 : 1;

my $PARENT_PID = $$;

(my $FILE_NAME = File::Basename::basename($0)) =~ s/\.t\z//;
$FILE_NAME =~ s/[^\w.-]/_/g;
my $SERVROOT = "$ROOT/t/servroot-$FILE_NAME";    # one per test file: prove -j safe

my $JSON = JSON::PP->new->utf8->canonical;

my %ENVH;          # the placeholders
my $mock_pid;      # our node child
my $nginx;         # { pid => ..., child => 1 if it is our own child (valgrind) }

_init();

sub _init {
    File::Path::remove_tree($SERVROOT);
    File::Path::make_path("$SERVROOT/conf", "$SERVROOT/logs");

    my ($port, $m1, $m2, $m3, $dead) = _free_ports(5);
    %ENVH = (
        TEST_NGINX_PORT       => $port,
        TEST_NGINX_MOCK_PORT  => $m1,
        TEST_NGINX_MOCK_PORT2 => $m2,
        TEST_NGINX_MOCK_PORT3 => $m3,
        TEST_NGINX_DEAD_PORT  => $dead,
        TEST_NGINX_SERVROOT   => $SERVROOT,
        TEST_NGINX_CONF_DIR   => "$ROOT/conf",
        TEST_NGINX_ROOT       => $ROOT,
    );
    # eval sections and hand-written code can use $ENV{TEST_NGINX_PORT} too
    $ENV{$_} = $ENVH{$_} for keys %ENVH;

    filters_delay(1);    # run_tests puts the placeholders in before eval filters run

    # turn ^C / kill into a normal exit so END stops nginx and the mock
    for my $sig (qw(INT TERM HUP)) {
        $SIG{$sig} = sub { Test::More::diag("caught SIG$sig, cleaning up"); exit 1 }
            if !$SIG{$sig} || $SIG{$sig} eq 'DEFAULT';
    }
}

sub harness_env { return {%ENVH} }

# Ports for this file: start from a base derived from the PID so parallel
# prove jobs look in different places, and keep only ports that bind now.
# The range stays below Linux's ephemeral ports (32768+), which outgoing
# connections would otherwise take from under us.
sub _free_ports {
    my ($want) = @_;
    my $port = 10000 + ($$ * 37) % 20000;
    my @ports;
    for (1 .. 20000) {
        $port = 10000 if $port > 30000;
        push @ports, $port if _port_free($port);
        $port++;
        return @ports if @ports == $want;
    }
    die "no free ports found\n";
}

sub _port_free {
    my ($port) = @_;
    my $sock = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => $port, Proto => 'tcp', Listen => 1,
    ) or return 0;
    close $sock;
    return 1;
}

sub _port_accepts {
    my ($port) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 1)
        or return 0;
    close $sock;
    return 1;
}

# ---------------------------------------------------------------- processes

sub _slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    local $/;
    my $text = <$fh>;
    return $text // '';
}

sub _tail {
    my ($file, $lines) = @_;
    my @all = split /\n/, _slurp($file);
    @all = @all[-$lines .. -1] if @all > $lines;
    return @all ? join("\n", "--- last lines of $file:", @all) . "\n" : "--- $file is empty or missing\n";
}

# fork + exec with output to a file; the child never returns into Perl code,
# where the test script's END blocks would stop our servers
sub _spawn {
    my (%a) = @_;
    STDOUT->flush;
    STDERR->flush;
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    return $pid if $pid;

    open STDIN, '<', '/dev/null';
    open STDOUT, '>>', $a{output} or POSIX::_exit(126);
    open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
    setpgrp(0, 0) if $a{own_group};    # so a terminal ^C does not hit it first
    chdir $a{dir} or POSIX::_exit(126) if defined $a{dir};
    # an undef value takes the variable out
    defined $a{env}{$_} ? ($ENV{$_} = $a{env}{$_}) : delete $ENV{$_} for keys %{ $a{env} || {} };
    { no warnings "exec"; exec { $a{argv}[0] } @{ $a{argv} }; }
    print STDERR "exec $a{argv}[0]: $!\n";
    POSIX::_exit(127);
}

# route_location('/v1/', auth => 1): a location that routes with the
# shipped proxy snippet, asking for a client key with auth
sub route_location {
    my ($path, %o) = @_;
    my $auth = $o{auth} ? "\n        conductor_auth on;" : '';
    return <<"LOC";
    location $path {$auth
        conductor_route;
        include $ROOT/conf/conductor_proxy.conf;
    }
LOC
}

# run_logged(\@argv, $file, dir => D, env => {NAME => value}): runs a
# command to its end, stdin from /dev/null, stdout and stderr to $file;
# returns its wait status and that output
sub run_logged {
    my ($argv, $file, %o) = @_;
    unlink $file;
    my $pid = _spawn(argv => $argv, output => $file, dir => $o{dir}, env => $o{env});
    waitpid $pid, 0;
    my $status = $?;
    return ($status, _slurp($file));
}

# is a process alive? (a zombie is not, even though kill 0 still finds it)
sub _alive {
    my ($pid) = @_;
    return 0 unless $pid && kill 0, $pid;
    my $stat = _slurp("/proc/$pid/stat");
    return $stat =~ /^\d+ \(.*\) Z/s ? 0 : 1;
}

# waitpid with a deadline; returns the wait status, or undef if still running
sub _reap {
    my ($pid, $seconds) = @_;
    my $deadline = Time::HiRes::time() + $seconds;
    while (1) {
        my $r = waitpid $pid, POSIX::WNOHANG();
        return $? if $r == $pid;
        return 0 if $r < 0;    # not our child any more
        return undef if Time::HiRes::time() >= $deadline;
        Time::HiRes::sleep(0.02);
    }
}

sub _wait_gone {
    my ($pid, $seconds) = @_;
    my $deadline = Time::HiRes::time() + $seconds;
    while (_alive($pid)) {
        return 0 if Time::HiRes::time() >= $deadline;
        Time::HiRes::sleep(0.02);
    }
    return 1;
}

# ---------------------------------------------------------------- mock

# The mock is started once per test file and lives until END.
sub start_mock {
    return 1 if $mock_pid && !defined _reap($mock_pid, 0);
    my $pid_file = "$SERVROOT/mock.pid";
    my $log      = "$SERVROOT/mock.log";
    unlink $pid_file;
    my @ports = @ENVH{qw(TEST_NGINX_MOCK_PORT TEST_NGINX_MOCK_PORT2 TEST_NGINX_MOCK_PORT3)};
    $mock_pid = _spawn(
        argv => [$NODE, "$ROOT/t/mock/provider.js", '--ports', join(',', @ports), '--pid-file', $pid_file],
        output    => $log,
        own_group => 1,
    );
    # the mock writes its pid file once every port listens
    my $deadline = Time::HiRes::time() + 15;
    until (-s $pid_file) {
        if (defined _reap($mock_pid, 0) || Time::HiRes::time() > $deadline) {
            kill 'KILL', $mock_pid;
            _reap($mock_pid, 5);
            undef $mock_pid;
            croak "mock provider did not start\n" . _tail($log, 20);
        }
        Time::HiRes::sleep(0.02);
    }
    return 1;
}

sub stop_mock {
    return unless $mock_pid;
    kill 'TERM', $mock_pid;
    unless (defined _reap($mock_pid, 5)) {
        kill 'KILL', $mock_pid;
        _reap($mock_pid, 5);
    }
    undef $mock_pid;
}

sub _mock_call {
    my ($method, $path) = @_;
    start_mock();
    my $resp = http_request($method, $path, {}, undef, port => $ENVH{TEST_NGINX_MOCK_PORT}, timeout => 10);
    croak "mock control $method $path failed: " . ($resp->{error} // "status $resp->{status}")
        unless ($resp->{status} // 0) == 200 && $resp->{json};
    return $resp->{json};
}

sub mock_requests { return _mock_call(GET => '/__mock/requests') }
sub mock_clear    { _mock_call(DELETE => '/__mock/requests'); return }
sub mock_release  { return _mock_call(POST => '/__mock/release')->{released} }

# ---------------------------------------------------------------- nginx

# Started as root, nginx runs its workers as "nobody" (the user it was built
# with), who may not be able to enter the checkout: under a 0700 home every
# request body buffered to client_body_temp fails with a 500. So as root the
# workers run as the real user of this process (root itself, unless perl
# runs set-uid) and that user's primary group. Workers as root write only
# where the generated configuration says: temp paths, logs and pid are all
# under the servroot (nginx's built-in error log is stderr). A block's own
# `user` line in main_config wins. Not root: nothing (nginx would only warn).
sub _user_directive {
    return () unless $> == 0;
    my ($name, $gid) = (getpwuid $<)[0, 3];
    ($name, $gid) = (getpwuid 0)[0, 3] unless defined $name;
    return () unless defined $name;
    my $group = getgrgid $gid;
    return defined $group ? "user $name $group;" : "user $name;";
}

sub _nginx_conf {
    my (%o) = @_;
    my $main = $o{main_config} // '';
    my @top;

    unless ($o{no_module}) {
        croak "conductor module not found at $MODULE (run `make build`, or set TEST_NGINX_MODULE)\n"
            unless -f $MODULE;
        push @top, "load_module $MODULE;";
    }
    if ($VALGRIND) {
        # one foreground process, so valgrind watches the code that serves requests
        $main =~ s/^[ \t]*(?:daemon|master_process)\b[^;]*;//mg;
        push @top, 'daemon off;', 'master_process off;';
    }
    else {
        push @top, 'daemon on;'        unless $main =~ /^\s*daemon\b/m;
        push @top, 'master_process on;' unless $main =~ /^\s*master_process\b/m;
    }
    push @top, 'worker_processes 1;' unless $main =~ /^\s*worker_processes\b/m;
    push @top, _user_directive() unless $main =~ /^\s*user\b/m;
    push @top, 'error_log logs/error.log debug;', 'pid logs/nginx.pid;';

    my $http   = $o{http_config} // '';
    my $server = $o{config} // '';
    my $temp = join "\n", map { "    ${_}_temp_path $SERVROOT/${_}_temp;" }
        qw(client_body proxy fastcgi uwsgi scgi);

    return <<"CONF";
# generated by t/lib/Test/Conductor.pm for $0
@{[ join "\n", @top ]}

$main

events {
    worker_connections 1024;
}

http {
$temp

$http

    # after the block's own: its access_log lines are written before ours, so
    # once ours is there, all are (the client port identifies the request)
    log_format $LOG_FORMAT '\$remote_addr:\$remote_port - \$remote_user [\$time_local] '
                           '"\$request" \$status \$body_bytes_sent "\$http_referer" "\$http_user_agent"';
    access_log logs/access.log $LOG_FORMAT;

    server {
        listen 127.0.0.1:$ENVH{TEST_NGINX_PORT};
        server_name localhost;

$server
    }
}
CONF
}

# Writes conf/nginx.conf into a servroot with empty logs.
sub _prepare_servroot {
    my (%o) = @_;
    File::Path::make_path("$SERVROOT/conf", "$SERVROOT/logs");
    unlink glob "$SERVROOT/logs/*";
    my $conf = _nginx_conf(%o);
    open my $fh, '>', "$SERVROOT/conf/nginx.conf" or die "$SERVROOT/conf/nginx.conf: $!\n";
    print {$fh} $conf;
    close $fh;
    return $conf;
}

sub _nginx_argv { return ($NGINX, '-p', "$SERVROOT/", '-c', 'conf/nginx.conf', @_) }

sub nginx_running { return $nginx ? 1 : 0 }

# the master's pid (the only process's under valgrind), undef when stopped
sub nginx_pid { return $nginx ? $nginx->{pid} : undef }

# start_nginx(http_config => ..., config => ..., main_config => ...,
#             env => {NAME => value}, no_module => 1)
# Starts a fresh nginx and waits until it accepts; croaks with the log tails
# when it cannot.
sub start_nginx {
    my (%o) = @_;
    stop_nginx() if $nginx;
    start_mock();
    _prepare_servroot(%o);

    my $out  = "$SERVROOT/logs/nginx.out";
    my $port = $ENVH{TEST_NGINX_PORT};
    my $why  = sub { join '', "nginx did not start: $_[0]\n", _tail($out, 30), _tail("$SERVROOT/logs/error.log", 30) };

    if ($VALGRIND) {
        my @vg = (
            'valgrind', '--trace-children=no', "--error-exitcode=$VALGRIND_ERROR_EXIT",
            '--leak-check=full', '--show-leak-kinds=definite', '--errors-for-leak-kinds=definite',
            '--num-callers=30', "--suppressions=$ROOT/t/valgrind.supp",
            "--log-file=$SERVROOT/logs/valgrind.log",
        );
        my $pid = _spawn(argv => [@vg, _nginx_argv()], env => $o{env}, output => $out, own_group => 1);
        my $deadline = Time::HiRes::time() + 60;
        until (_port_accepts($port)) {
            if (defined(my $st = _reap($pid, 0))) {
                croak $why->("exit status $st") . _tail("$SERVROOT/logs/valgrind.log", 40);
            }
            if (Time::HiRes::time() > $deadline) {
                kill 'KILL', $pid;
                _reap($pid, 5);
                croak $why->('port never accepted under valgrind');
            }
            Time::HiRes::sleep(0.1);
        }
        $nginx = { pid => $pid, child => 1 };
        return 1;
    }

    # daemon on: the launcher exits once the master has forked; the master
    # then writes the pid file (it listens already by then)
    my $launcher = _spawn(argv => [_nginx_argv()], env => $o{env}, output => $out);
    my $status = _reap($launcher, 30);
    croak $why->('launcher hung') unless defined $status;
    croak $why->('exit status ' . ($status >> 8)) if $status;

    my $pid_file = "$SERVROOT/logs/nginx.pid";
    my $deadline = Time::HiRes::time() + 10;
    my $pid;
    while (1) {
        ($pid) = _slurp($pid_file) =~ /(\d+)/;
        last if $pid && _port_accepts($port);
        croak $why->('no pid file / port not accepting') if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.02);
    }
    $nginx = { pid => $pid };
    return 1;
}

# Stops nginx (QUIT, then TERM / KILL after a generous grace) and returns an
# arrayref of problems found: crashes, [alert] / [emerg] lines, a hang on
# QUIT, valgrind errors. Empty means a clean run.
sub stop_nginx {
    return [] unless $nginx;
    # a client connection left open keeps a worker lingering past QUIT
    $_->close for grep {defined} @Test::Conductor::Stream::OPEN;
    @Test::Conductor::Stream::OPEN = ();
    my $n = $nginx;
    undef $nginx;
    my @problems;
    my $pid = $n->{pid};

    if ($n->{child}) {
        my $status = _reap($pid, 0);
        if (defined $status) {
            push @problems, "nginx exited (status $status) before the end of the test";
        }
        else {
            kill 'QUIT', $pid;
            $status = _reap($pid, 60);
            unless (defined $status) {
                push @problems, 'nginx did not exit within 60 s of QUIT';
                kill 'TERM', $pid;
                $status = _reap($pid, 20);
                unless (defined $status) { kill 'KILL', $pid; $status = _reap($pid, 5) }
            }
            elsif ($status && (($status >> 8) != $VALGRIND_ERROR_EXIT || ($status & 127))) {
                push @problems, sprintf 'nginx exited with status %d, signal %d after QUIT',
                    $status >> 8, $status & 127;
            }
        }
        push @problems, _valgrind_problems($status);
    }
    else {
        push @problems, "nginx master $pid died before the end of the test" unless _alive($pid);
        kill 'QUIT', $pid;
        unless (_wait_gone($pid, 20)) {
            push @problems, "nginx did not exit within 20 s of QUIT (a worker left busy? a timer?)";
            kill 'TERM', $pid;
            unless (_wait_gone($pid, 10)) { kill 'KILL', $pid; _wait_gone($pid, 5) }
        }
    }

    my @bad = grep { /\[alert\]|\[emerg\]|exited on signal/ }
        split /\n/, _slurp("$SERVROOT/logs/error.log");
    push @problems, map {"error.log: $_"} @bad;
    return \@problems;
}

sub _valgrind_problems {
    my ($status) = @_;
    my $file = "$SERVROOT/logs/valgrind.log";
    my $log  = _slurp($file);
    my @problems;

    my @summaries = $log =~ /ERROR SUMMARY: (\d+) errors?/g;
    if (!@summaries) {
        push @problems, "valgrind wrote no ERROR SUMMARY (killed?)\n" . _tail($file, 40);
        return @problems;
    }
    # the log's records are separated by lines that hold only "==PID=="
    my @records = grep {/\S/} split /^==\d+==\s*\n/m, $log;
    if ($summaries[-1] > 0 || (($status // 0) >> 8) == $VALGRIND_ERROR_EXIT) {
        my @errs = grep { /^==\d+==\s+(?:at|by) 0x/m } @records;    # records with a stack
        @errs = @errs[0 .. 9] if @errs > 10;
        push @problems, "valgrind: ERROR SUMMARY: $summaries[-1] errors (full log: $file)\n" . join('', @errs);
    }
    my @leaks = grep { /definitely lost in loss record/ && /ngx_http_conductor/ } @records;
    push @problems, "valgrind: conductor memory definitely lost\n" . join('', @leaks) if @leaks;
    return @problems;
}

# What this nginx wrote to error.log since it was started.
sub error_log_since_start { return _slurp("$SERVROOT/logs/error.log") }

# ---------------------------------------------------------------- HTTP client

# http_request($method, $path, \%headers, $body, port => ..., timeout => ...,
# await_log => 0) returns { status, reason, headers (lower-case keys,
# repeats joined with ", "), header_list, body, json, sse, complete,
# timed_out, error }.
#
# An answer of the harness's nginx is returned once nginx has written its
# line to logs/access.log, that is once the request's LOG phase has run:
# nginx runs it after the answer was sent (with a lingering close, only when
# the client has closed too), and the module counts a request there, so a
# status read or a log read right after an answer could miss it otherwise.
# Bounded by $WAIT_SECONDS; await_log => 0 skips the wait.
sub http_request {
    my (undef, undef, undef, undef, %opt) = @_;
    my $stream = http_stream_open(@_);
    $stream->read_all;
    $stream->wait_close;
    my $resp = $stream->response;
    _await_log($stream) unless defined $opt{await_log} && !$opt{await_log};
    return $resp;
}

# Same arguments; returns a Test::Conductor::Stream whose head is read, so
# ->status and ->headers are there, and whose body the caller reads with
# ->read_some / ->read_until / ->read_all (chunked encoding decoded);
# ->wait_logged after ->close waits for its access log line.
sub http_stream_open {
    my ($method, $path, $headers, $body, %opt) = @_;
    my $port = $opt{port} // $ENVH{TEST_NGINX_PORT};
    # an answer of the harness's nginx: its line will be in access.log,
    # after the bytes the file has now
    my $log = $nginx && $port == $ENVH{TEST_NGINX_PORT} ? "$SERVROOT/logs/access.log" : undef;
    return Test::Conductor::Stream->open(
        port    => $port,
        method  => $method,
        path    => $path,
        headers => $headers,
        body    => $body,
        timeout => ($opt{timeout} // 30) * $SCALE,
        ($log ? (log => $log, log_from => (-s $log) || 0) : ()),
    );
}

# After an answer: wait for its access log line (see http_request). When it
# does not come, say so once and stop waiting for this nginx: its
# configuration logs elsewhere (an access_log in the block's server or
# location, or access_log off), and every request would wait in vain.
sub _await_log {
    my ($stream) = @_;
    return unless $stream->{log} && $nginx && !$nginx->{log_unawaited};
    return if $stream->{connect_failed} || $stream->{timed_out};
    return if $stream->wait_logged;
    $nginx->{log_unawaited} = 1;
    Test::More::diag(sprintf 'harness: no logs/access.log line for %s %s (client port %s) within %g s; '
        . 'not waiting for the access log of this nginx any more (does the configuration log elsewhere?)',
        $stream->{method}, $stream->{path}, $stream->{local_port} // '?', $WAIT_SECONDS * $SCALE);
}

# ---------------------------------------------------------------- bursts

# How many times each value occurs.
sub tally {
    my %n;
    $n{$_}++ for @_;
    return \%n;
}

# Per-minute limits live in two-bucket windows aligned on the minute: a
# burst that counts against an rpm limit must not run into the next
# minute's second second (where the previous bucket's weight drops below
# one). Waits, asserts nothing; at most once a minute. $last: the last
# second of the minute a block may start in (default 55).
sub away_from_minute_edge {
    my ($last) = @_;
    $last //= 55;
    my $s = time % 60;
    Time::HiRes::sleep(61 - $s) if $s >= $last;
    return;
}

# $n requests sent at once: every connection is opened first, then every
# request written in one go, so they reach nginx's workers together. Reads
# the answers in parallel until each connection is closed, or, with
# gated => 1, until each is closed or has a 200 head (a stream the mock
# holds until /__mock/release). path => (default /v1/chat/completions);
# headers => extra header lines, a string or a sub of the request's index
# (0 ..) returning one; port => a sub of the index giving the port (another
# nginx). Returns [{status, headers, body, sock}], in the order sent; the
# sock of a held stream stays open (see drain).
sub burst {
    my ($n, $body, %opt) = @_;
    my $path = $opt{path} // '/v1/chat/completions';
    my @c;
    for my $i (0 .. $n - 1) {
        my $port = $opt{port} ? $opt{port}->($i) : $ENVH{TEST_NGINX_PORT};
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      Proto => 'tcp') or die "connect: $!";
        push @c, { sock => $s, buf => '', closed => 0 };
    }
    for my $i (0 .. $#c) {
        my $extra = ref $opt{headers} eq 'CODE' ? $opt{headers}->($i) : $opt{headers} // '';
        $extra .= "\r\n" if length $extra && $extra !~ /\r\n\z/;
        my $req = "POST $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n$extra"
                . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
        syswrite($c[$i]{sock}, $req) == length($req) or die "write: $!";
    }

    my %by_fd = map { fileno($_->{sock}) => $_ } @c;
    my $settled = sub {
        my ($x) = @_;
        return 1 if $x->{closed};
        return $opt{gated} && $x->{buf} =~ m{\AHTTP/1\.\d 200 .*?\r\n\r\n}s;
    };
    my $sel = IO::Select->new(map { $_->{sock} } @c);
    my $guard = time + 30 * $SCALE;
    while (grep { !$settled->($_) } @c) {
        last if time > $guard;
        for my $s ($sel->can_read(1)) {
            my $x = $by_fd{ fileno($s) };
            my $got = sysread($s, my $chunk, 65536);
            if ($got) { $x->{buf} .= $chunk; next }
            $x->{closed} = 1;
            $sel->remove($s);
        }
    }
    for my $x (@c) {
        my ($head, $rest) = split /\r\n\r\n/, $x->{buf}, 2;
        my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d{3})};
        my %h;
        for (split /\r\n/, $head // '') { $h{ lc $1 } = $2 if /^([^:]+):\s*(.*)$/ }
        $x->{status} = $status // 0;
        $x->{headers} = \%h;
        $x->{body} = $rest // '';
        if ($x->{closed}) { close $x->{sock}; delete $x->{sock} }
    }
    return \@c;
}

# Reads the held streams of a burst to their end.
sub drain {
    my ($c) = @_;
    my @open = grep { $_->{sock} } @$c;
    my $sel = IO::Select->new(map { $_->{sock} } @open);
    my %by_fd = map { fileno($_->{sock}) => $_ } @open;
    my $guard = time + 30 * $SCALE;
    while ($sel->count && time < $guard) {
        for my $s ($sel->can_read(1)) {
            my $x = $by_fd{ fileno($s) };
            my $got = sysread($s, my $chunk, 65536);
            if ($got) { $x->{body} .= $chunk; next }
            $sel->remove($s);
            close $s;
            delete $x->{sock};
        }
    }
    return;
}


# wait_for(sub { ... }, timeout => S, interval => S, what => 'text'): calls
# the sub (in scalar context) until it returns a true value, for at most
# timeout seconds (default $WAIT_SECONDS, scaled under valgrind); returns that
# value, or, after a diag naming `what`, the last false one.
sub wait_for {
    my ($cond, %opt) = @_;
    my $seconds  = ($opt{timeout} // $WAIT_SECONDS) * $SCALE;
    my $deadline = Time::HiRes::time() + $seconds;
    while (1) {
        my $v = $cond->();
        return $v if $v;
        if (Time::HiRes::time() >= $deadline) {
            Test::More::diag(sprintf 'gave up after %g s waiting for %s', $seconds, $opt{what} // 'a condition');
            return $v;
        }
        Time::HiRes::sleep($opt{interval} // 0.02);
    }
}

# status_report(port => N, path => '/conductor/status', headers => {...}):
# the status report, decoded; undef unless the answer is a 200 with a JSON
# object.
sub status_report {
    my (%opt) = @_;
    my $r = http_request(GET => $opt{path} // '/conductor/status', $opt{headers} // {}, undef,
        $opt{port} ? (port => $opt{port}) : ());
    return ($r->{status} // 0) == 200 && ref $r->{json} eq 'HASH' ? $r->{json} : undef;
}

# status_wait(sub { $_->{totals}{requests} == 3 }, timeout => S, what => ...,
# and status_report's options): fetches the report until the condition holds
# for it ($_ and $_[0] are the decoded report), for at most timeout seconds;
# returns the last report fetched whether it holds or not, so that the test
# asserts on what is there (undef if none could be fetched). For counters a
# request's own answer does not wait for: another worker's LOG phase, health
# checks, nginx outside the harness.
sub status_wait {
    my ($cond, %opt) = @_;
    my $last;
    wait_for(sub {
        my $s = status_report(%opt) or return 0;
        $last = $s;
        local $_ = $s;
        return $cond->($s) ? 1 : 0;
    }, timeout => $opt{timeout}, what => $opt{what} // 'the status report to show the expected counters');
    return $last;
}

# Splits an event stream into [{event, data, json, id}], skipping comments.
sub parse_sse {
    my ($text) = @_;
    my @events;
    for my $block (split /\r\n\r\n|\n\n|\r\r/, $text // '') {
        my (%ev, @data);
        for my $line (split /\r\n|\n|\r/, $block) {
            next if $line =~ /^:/;
            my ($field, $value) = $line =~ /^([^:]*)(?::[ ]?(.*))?$/;
            $value //= '';
            if    ($field eq 'data')  { push @data, $value }
            elsif ($field eq 'event') { $ev{event} = $value }
            elsif ($field eq 'id')    { $ev{id} = $value }
        }
        next unless @data || defined $ev{event};
        $ev{data} = join "\n", @data;
        $ev{json} = eval { $JSON->decode($ev{data}) };
        push @events, \%ev;
    }
    return \@events;
}

# ---------------------------------------------------------------- blocks

# Declaring no_plan first keeps Test::Base's END hook from planning again.
sub done_testing {
    plan('no_plan') unless Test::More->builder->has_plan;
    Test::More::done_testing(@_);
}

# block_defaults(config => '...', no_module => '', ...): sections for every
# block of the file that does not have its own.
my %DEFAULTS;
sub block_defaults { %DEFAULTS = @_; return }

sub run_tests {
    # No plan needed: without one we run as no_plan ("1..N" at the end),
    # which also keeps Test::Base's END hook from planning a second time.
    plan('no_plan') unless Test::More->builder->has_plan;
    start_mock();
    _run_block($_) for blocks();
    return;
}

sub _expand {
    my ($text) = @_;
    return $text unless defined $text && !ref $text;
    $text =~ s{\$(?:\{(TEST_NGINX_[A-Z0-9_]+)\}|(TEST_NGINX_[A-Z0-9_]+))}{
        my $name = $1 // $2;
        $ENVH{$name} // $ENV{$name} // "\$$name";
    }ge;
    return $text;
}

sub _has { return exists $_[0]->{ $_[1] } }

sub _values {
    my ($block, $name) = @_;
    return exists $block->{$name} ? @{ $block->{$name} } : ();
}

sub _value {
    my ($block, $name) = @_;
    return exists $block->{$name} ? $block->{$name}[0] : undef;
}

sub _lines {
    my ($text) = @_;
    return grep {/\S/} split /\n/, $text // '';
}

# one test named $name, with a diag line per failure
sub _verdict {
    my ($name, @failures) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::ok(!@failures, $name) or Test::More::diag(join "\n", @failures);
}

sub _run_block {
    my ($block) = @_;
    my $name = $block->name;

    for my $section (@{ $block->{_section_order}[0] || [] }) {
        $block->{$section} = [ map { _expand($_) } @{ $block->{$section} } ];
    }
    for my $section (keys %DEFAULTS) {
        $block->{$section} //= [ _expand($DEFAULTS{$section}) ];
    }
    unless (eval { $block->run_filters; 1 }) {
        Test::More::fail("$name - sections evaluate");
        Test::More::diag($@);
        return;
    }

    if (_has($block, 'skip')) {
        my $why = _value($block, 'skip');
        Test::More->builder->skip($why =~ /\S/ ? $why : "$name skipped");
        return;
    }

    my %env = map { /^\s*([^=\s]+)\s*=(.*)$/ ? ($1 => $2) : () } _lines(_value($block, 'env'));
    my %conf = (
        main_config => _value($block, 'main_config'),
        http_config => _value($block, 'http_config'),
        config      => _value($block, 'config'),
        no_module   => _has($block, 'no_module'),
        env         => \%env,
    );

    return _run_must_die($block, %conf) if _has($block, 'must_die');

    my @requests = eval { _block_requests($block) };
    if ($@) {
        Test::More::fail("$name - request section");
        Test::More::diag($@);
        return;
    }

    mock_clear();
    unless (eval { start_nginx(%conf); 1 }) {
        Test::More::fail("$name - nginx starts");
        Test::More::diag($@);
        stop_nginx();
        return;
    }

    my $timeout = _value($block, 'timeout') // 30;
    my @guard;    # requests that hit the timeout guard or could not connect
    my @resps;
    for my $req (@requests) {
        my $resp = http_request($req->{method}, $req->{uri}, $req->{headers}, $req->{body}, timeout => $timeout);
        push @resps, $resp;
        push @guard, "request $req->{method} $req->{uri}: $resp->{error}" if $resp->{connect_failed};
        push @guard, "request $req->{method} $req->{uri}: timed out after ${timeout}s (x$SCALE)"
            if $resp->{timed_out};
    }
    my $resp = $resps[-1] // {};

    # not scaled under valgrind: blocks wait for time-based effects (cooldowns)
    if (my $wait = _value($block, 'wait')) { Time::HiRes::sleep($wait) }

    _check_response($block, $resp);

    if (_has($block, 'checks')) {
        my $mock = eval { mock_requests() } // do { Test::More::diag("mock log unavailable: $@"); [] };
        _run_checks($block, $resp, \@resps, $mock);
    }

    eval { mock_release() };    # never leave a gated stream holding nginx's shutdown
    my $problems = stop_nginx();

    my $log = error_log_since_start();
    _check_log($block, $log, 'error.log');
    _verdict("$name - clean run", @guard, @$problems);
}

# nginx -t must refuse the config, naming the file and line
sub _run_must_die {
    my ($block, %conf) = @_;
    my $name = $block->name;
    my $out = "$SERVROOT/logs/nginx-t.out";
    eval { _prepare_servroot(%conf); 1 } or do {
        Test::More::fail("$name - nginx -t fails");
        Test::More::diag($@);
        return;
    };
    my $pid = _spawn(argv => [_nginx_argv('-t')], env => $conf{env}, output => $out);
    my $status = _reap($pid, 30 * $SCALE);
    my $text = _slurp($out);
    my @fail;
    push @fail, 'nginx -t hung' unless defined $status;
    push @fail, 'nginx -t accepted the configuration' if defined $status && $status == 0;
    push @fail, 'the message names no file:line' unless $text =~ m{ in \S+:\d+}m;
    _verdict("$name - nginx -t fails, naming file:line", @fail, @fail ? "--- nginx -t said:\n$text" : ());
    _check_log($block, $text, 'nginx -t output');
}

# The request list: `request` (or `request eval` / `request_eval` returning
# a string or an arrayref of them), with more_headers on every one.
sub _block_requests {
    my ($block) = @_;
    my @raw;
    if (_has($block, 'request_eval')) {
        my $code = _value($block, 'request_eval');
        my @r = eval "package main; no strict 'vars'; $code";
        die "request_eval: $@" if $@;
        @raw = @r;
    }
    elsif (_has($block, 'request')) {
        @raw = _values($block, 'request');
    }
    elsif (_has($block, 'checks')) {
        return;    # the checks talk to nginx themselves
    }
    else {
        die "no request section\n";
    }
    @raw = map { ref $_ eq 'ARRAY' ? @$_ : $_ } @raw;
    die "empty request list\n" unless @raw;

    my @headers;
    for my $line (_lines(_value($block, 'more_headers'))) {
        if ($line =~ /^\s*!\s*(\S+)\s*$/) {
            push @headers, [$1, undef];    # suppress a default header
        }
        elsif ($line =~ /^\s*([^:\s]+)\s*:\s?(.*?)\s*$/) {
            push @headers, [$1, $2];
        }
        else {
            die "bad more_headers line: $line\n";
        }
    }

    my @requests;
    for my $r (@raw) {
        if (ref $r eq 'HASH') {
            push @requests, { method => $r->{method} // 'GET', uri => $r->{uri} // $r->{path},
                body => $r->{body}, headers => [ @headers, _pairs($r->{headers}) ] };
            next;
        }
        (my $text = $r) =~ s/\A\s*\n//;
        my ($line, $body) = split /\n/, $text, 2;
        my ($method, $uri) = ($line // '') =~ m{^\s*(\S+)\s+(\S+)(?:\s+HTTP/[\d.]+)?\s*$}
            or die "bad request line: " . ($line // '') . "\n";
        $body //= '';
        $body =~ s/\n\z//;
        push @requests, { method => $method, uri => $uri, body => $body, headers => [@headers] };
    }
    return @requests;
}

sub _pairs {
    my ($h) = @_;
    return () unless $h;
    return map { [ $_, $h->{$_} ] } sort keys %$h if ref $h eq 'HASH';
    return map { ref $_ ? $_ : () } @$h if ref $h eq 'ARRAY' && ref $h->[0];
    my @flat = @$h;
    my @pairs;
    push @pairs, [ splice @flat, 0, 2 ] while @flat;
    return @pairs;
}

sub _check_response {
    my ($block, $resp) = @_;
    my $name = $block->name;
    my $status = $resp->{status} // 'none';

    if (_has($block, 'error_code')) {
        my $want = _value($block, 'error_code');
        $want =~ s/^\s+|\s+$//g;
        _verdict("$name - status $want", $status eq $want ? () : (
            "got status $status" . ($resp->{error} ? " ($resp->{error})" : ''),
            '--- body: ' . _excerpt($resp->{body})));
    }

    if (_has($block, 'response_headers')) {
        my @fail;
        for my $line (_lines(_value($block, 'response_headers'))) {
            if ($line =~ /^\s*!\s*(\S+)\s*$/) {
                my $h = lc $1;
                push @fail, "header $1 present: $resp->{headers}{$h}" if exists $resp->{headers}{$h};
            }
            elsif ($line =~ /^\s*([^:\s]+)\s*:\s?(.*?)\s*$/) {
                my ($h, $want) = (lc $1, $2);
                my $got = $resp->{headers}{$h};
                push @fail, !defined $got ? "header $1 missing (want '$want')"
                          : $got ne $want ? "header $1 is '$got', want '$want'"
                          : ();
            }
            else { push @fail, "bad response_headers line: $line" }
        }
        _verdict("$name - response_headers", @fail, @fail ? _headers_dump($resp) : ());
    }

    if (_has($block, 'response_headers_like')) {
        my @fail;
        for my $line (_lines(_value($block, 'response_headers_like'))) {
            my ($h, $re) = $line =~ /^\s*([^:\s]+)\s*:\s?(.*?)\s*$/
                or do { push @fail, "bad response_headers_like line: $line"; next };
            my $got = $resp->{headers}{ lc $h };
            push @fail, !defined $got ? "header $h missing (want /$re/)"
                      : $got !~ /$re/ ? "header $h is '$got', not like /$re/"
                      : ();
        }
        _verdict("$name - response_headers_like", @fail, @fail ? _headers_dump($resp) : ());
    }

    if (_has($block, 'response_body')) {
        my $want = _value($block, 'response_body') // '';
        my $got  = $resp->{body} // '';
        _verdict("$name - response_body", $got eq $want ? () : (
            "--- expected:\n$want", "--- got:\n" . _excerpt($got)));
    }

    if (_has($block, 'response_body_like')) {
        my $re = _value($block, 'response_body_like');
        unless (ref $re eq 'Regexp') { chomp $re; $re = qr/$re/s }
        my $got = $resp->{body} // '';
        _verdict("$name - response_body_like", $got =~ $re ? () : (
            "body not like $re", '--- got: ' . _excerpt($got)));
    }
}

sub _headers_dump {
    my ($resp) = @_;
    return join "\n", '--- got headers:', map {"$_->[0]: $_->[1]"} @{ $resp->{header_list} || [] };
}

sub _excerpt {
    my ($text) = @_;
    $text //= '';
    return length $text > 2000 ? substr($text, 0, 2000) . '... (' . length($text) . ' bytes)' : $text;
}

# error_log / no_error_log: one pattern per line (substring), or with eval,
# strings and qr// items
sub _log_patterns {
    my ($block, $section) = @_;
    my @items = map { ref $_ eq 'ARRAY' ? @$_ : $_ } _values($block, $section);
    return map { ref $_ eq 'Regexp' ? $_ : _lines($_) } grep {defined} @items;
}

sub _log_has {
    my ($text, $pattern) = @_;
    return ref $pattern eq 'Regexp' ? $text =~ $pattern : index($text, $pattern) >= 0;
}

sub _check_log {
    my ($block, $text, $what) = @_;
    my $name = $block->name;
    if (_has($block, 'error_log')) {
        my @missing = grep { !_log_has($text, $_) } _log_patterns($block, 'error_log');
        _verdict("$name - error_log", (map {"not found in $what: $_"} @missing),
            @missing ? "--- $what (last non-debug lines):\n" . _log_tail($text) : ());
    }
    if (_has($block, 'no_error_log')) {
        my @found;
        for my $p (_log_patterns($block, 'no_error_log')) {
            my @lines = grep { _log_has($_, $p) } split /\n/, $text;
            push @found, "found in $what: $p", map {"    $_"} @lines[0 .. ($#lines > 4 ? 4 : $#lines)] if @lines;
        }
        _verdict("$name - no_error_log", @found);
    }
}

# the log without its [debug] noise, last 40 lines
sub _log_tail {
    my ($text) = @_;
    my @lines = grep { !/^\S+ \S+ \[debug\]/ } split /\n/, $text;
    @lines = @lines[-40 .. -1] if @lines > 40;
    return join "\n", @lines;
}

sub _run_checks {
    my ($block, $resp, $resps, $mock) = @_;
    my $name = $block->name;
    my $code = _value($block, 'checks') // '';
    (my $label = $name) =~ s/"/'/g;
    my $sub = eval join "\n",
        'package main; use strict; use warnings;',
        'sub { my ($resp, $resps, $mock, $env, $block) = @_;',
        qq{#line 1 "$label, checks"},
        $code,
        '}';
    unless ($sub) {
        Test::More::fail("$name - checks compile");
        Test::More::diag($@);
        return;
    }
    unless (eval { $sub->($resp, $resps, $mock, {%ENVH}, $block); 1 }) {
        Test::More::fail("$name - checks died");
        Test::More::diag($@);
    }
}

# ---------------------------------------------------------------- cleanup

END {
    if ($$ == $PARENT_PID) {
        local $?;    # keep the test script's exit status
        stop_nginx() if $nginx;
        stop_mock();
    }
}

# ================================================================ client

package Test::Conductor::Stream;

use IO::Select;
use IO::Socket::INET;
use Scalar::Util ();
use Time::HiRes ();

my $JSON_DECODER = JSON::PP->new->utf8;

our @OPEN;    # weak references to open streams, closed by stop_nginx

sub open {
    my ($class, %a) = @_;
    my $self = bless {
        %a,
        buf => '', body => '', headers => {}, header_list => [],
        done => 0, complete => 0, timed_out => 0, error => undef,
    }, $class;
    $self->{started} = Time::HiRes::time();

    my @headers = Test::Conductor::_pairs($a{headers});
    my %given = map { lc $_->[0] => 1 } @headers;
    my $body = $a{body} // '';
    utf8::encode($body) if utf8::is_utf8($body);

    unshift @headers, [ Host => 'localhost' ] unless $given{host};
    push @headers, [ Connection => 'close' ] unless $given{connection};
    if ((length $body || $a{method} =~ /^(?:POST|PUT|PATCH)$/) && !$given{'content-length'}
        && !$given{'transfer-encoding'}) {
        push @headers, [ 'Content-Length' => length $body ];
    }
    push @headers, [ 'Content-Type' => 'application/json' ] if length $body && !$given{'content-type'};
    $self->{close_requested} = grep { lc $_->[0] eq 'connection' && defined $_->[1] && lc $_->[1] eq 'close' } @headers;

    my $req = "$a{method} $a{path} HTTP/1.1\r\n"
        . join('', map {"$_->[0]: $_->[1]\r\n"} grep { defined $_->[1] } @headers)
        . "\r\n" . $body;

    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $a{port}, Proto => 'tcp', Timeout => 5,
    );
    unless ($sock) {
        $self->{error} = "connect to 127.0.0.1:$a{port}: $!";
        @$self{qw(done connect_failed)} = (1, 1);
        return $self;
    }
    $sock->blocking(0);
    $self->{sock} = $sock;
    $self->{local_port} = $sock->sockport;    # names the request in the access log
    push @OPEN, $self;
    Scalar::Util::weaken($OPEN[-1]);
    my $deadline = $self->{started} + $a{timeout};
    $self->_send($req, $deadline);
    $self->_read_head($deadline);
    return $self;
}

# Writes without blocking forever; a server that answers early (413) and
# closes is fine, the answer is read afterwards.
sub _send {
    my ($self, $data, $deadline) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $sel = IO::Select->new($self->{sock});
    my $off = 0;
    while ($off < length $data) {
        my $left = $deadline - Time::HiRes::time();
        if ($left <= 0) { $self->{timed_out} = 1; return }
        next unless $sel->can_write($left);
        my $n = syswrite $self->{sock}, $data, 65536, $off;
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            return;    # peer closed: read whatever it answered
        }
        $off += $n;
    }
}

# Reads more bytes into buf: count, 0 at EOF, undef at the deadline.
sub _fill {
    my ($self, $deadline) = @_;
    my $sel = IO::Select->new($self->{sock});
    while (1) {
        my $left = $deadline - Time::HiRes::time();
        return undef if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread $self->{sock}, my $data, 65536;
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            $self->{reset} = 1 if $!{ECONNRESET};
            return 0;
        }
        $self->{buf} .= $data;
        return $n;
    }
}

sub _read_head {
    my ($self, $deadline) = @_;
    return if $self->{done} || $self->{timed_out};
    while (1) {
        if ($self->{buf} =~ s/\A(.*?)\r?\n\r?\n//s) {
            my @lines = split /\r?\n/, $1;
            my $status_line = shift @lines // '';
            my ($code, $reason) = $status_line =~ m{^HTTP/\d\.\d\s+(\d{3})\s*(.*)$};
            unless (defined $code) {
                $self->{error} = "bad status line: $status_line";
                $self->{done} = 1;
                return;
            }
            next if $code =~ /^1/ && $code != 101;    # 100 Continue and friends
            $self->{status} = 0 + $code;
            $self->{reason} = $reason;
            for my $line (@lines) {
                my ($h, $v) = $line =~ /^([^:]+):\s*(.*?)\s*$/ or next;
                push @{ $self->{header_list} }, [ $h, $v ];
                my $k = lc $h;
                $self->{headers}{$k} = exists $self->{headers}{$k} ? "$self->{headers}{$k}, $v" : $v;
            }
            $self->_body_mode;
            return;
        }
        my $n = $self->_fill($deadline);
        if (!defined $n) { $self->{timed_out} = 1; $self->{done} = 1; return }
        if ($n == 0) {
            $self->{error} = length $self->{buf} ? 'connection closed inside the response head'
                                                 : 'connection closed without a response';
            $self->{done} = 1;
            return;
        }
    }
}

sub _body_mode {
    my ($self) = @_;
    my $h = $self->{headers};
    if ($self->{method} eq 'HEAD' || $self->{status} =~ /^(?:1\d\d|204|304)$/) {
        @$self{qw(done complete)} = (1, 1);
    }
    elsif (($h->{'transfer-encoding'} // '') =~ /chunked/i) {
        $self->{mode} = 'chunked';
        $self->{chunk_state} = 'size';
    }
    elsif (defined $h->{'content-length'} && $h->{'content-length'} =~ /^\s*(\d+)/) {
        $self->{mode} = 'length';
        $self->{left} = $1;
        @$self{qw(done complete)} = (1, 1) if $1 == 0;
    }
    else {
        $self->{mode} = 'eof';
    }
}

# Turns buffered bytes into body bytes; returns the new body bytes.
sub _decode {
    my ($self) = @_;
    my $out = '';
    if ($self->{mode} eq 'length') {
        my $n = length $self->{buf} < $self->{left} ? length $self->{buf} : $self->{left};
        $out = substr $self->{buf}, 0, $n, '';
        $self->{left} -= $n;
        @$self{qw(done complete)} = (1, 1) if $self->{left} == 0;
    }
    elsif ($self->{mode} eq 'eof') {
        $out = $self->{buf};
        $self->{buf} = '';
    }
    else {
        while (!$self->{done}) {
            my $st = $self->{chunk_state};
            if ($st eq 'data') {
                last unless length $self->{buf};
                my $n = length $self->{buf} < $self->{left} ? length $self->{buf} : $self->{left};
                $out .= substr $self->{buf}, 0, $n, '';
                $self->{left} -= $n;
                $self->{chunk_state} = 'crlf' if $self->{left} == 0;
            }
            elsif ($st eq 'crlf') {
                if ($self->{buf} =~ s/\A\r?\n//) { $self->{chunk_state} = 'size' }
                elsif (length $self->{buf} >= 2) { $self->_bad_chunk('no CRLF after chunk data') }
                else { last }
            }
            elsif ($st eq 'size') {
                if ($self->{buf} =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r?\n//) {
                    my $size = hex $1;
                    @$self{qw(chunk_state left)} = $size ? ('data', $size) : ('trailer', 0);
                }
                elsif ($self->{buf} =~ /\A[0-9a-fA-F]*(?:;[^\r\n]*)?\r?\z/ && length $self->{buf} < 1024) { last }
                else { $self->_bad_chunk('bad chunk size line') }
            }
            else {    # trailer lines up to the empty line
                if ($self->{buf} =~ s/\A\r?\n//) { @$self{qw(done complete)} = (1, 1) }
                elsif ($self->{buf} =~ s/\A[^\r\n]+\r?\n//) { next }
                else { last }
            }
        }
    }
    $self->{body} .= $out;
    return $out;
}

sub _bad_chunk {
    my ($self, $why) = @_;
    $self->{error} = "chunked encoding: $why";
    $self->{done} = 1;
}

# Next body bytes (decoded), waiting up to $timeout (default: the request's);
# undef when the body is over, the connection closed, or the wait timed out
# (see ->complete and ->timed_out).
sub read_some {
    my ($self, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // $self->{timeout});
    while (1) {
        return undef if $self->{done} && !length $self->{buf};
        if (length $self->{buf}) {
            my $out = $self->_decode;
            return $out if length $out;
            return undef if $self->{done};
        }
        my $n = $self->_fill($deadline);
        if (!defined $n) { $self->{timed_out} = 1; return undef }
        if ($n == 0) {
            my $out = length $self->{buf} ? $self->_decode : '';
            $self->{done} = 1;
            if ($self->{complete}) { }
            elsif (($self->{mode} // '') eq 'eof') { $self->{complete} = 1 }
            else { $self->{error} //= 'connection closed before the end of the body' }
            return length $out ? $out : undef;
        }
    }
}

# Reads until the body so far matches $re; true if it does.
sub read_until {
    my ($self, $re, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // $self->{timeout});
    while ($self->{body} !~ $re) {
        my $left = $deadline - Time::HiRes::time();
        return 0 if $left <= 0 || !defined $self->read_some($left);
    }
    return 1;
}

# Reads the rest of the body; returns the whole body.
sub read_all {
    my ($self, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // $self->{timeout});
    while (!$self->{done}) {
        my $left = $deadline - Time::HiRes::time();
        if ($left <= 0) { $self->{timed_out} = 1; last }
        last unless defined $self->read_some($left);
    }
    return $self->{body};
}

# After a "Connection: close" exchange, waits for the server to close: nginx
# runs the log phase before it closes, so log-phase effects are visible next.
sub wait_close {
    my ($self) = @_;
    return unless $self->{sock} && $self->{close_requested} && !$self->{timed_out};
    my $deadline = Time::HiRes::time() + 5 * $SCALE;
    while (1) {
        my $n = $self->_fill($deadline);
        last unless $n;
        $self->{buf} = '';    # bytes after the response are not ours to judge
    }
    $self->close;
}

# Waits until nginx has written this request's line to the harness's access
# log (its LOG phase ran), for at most $seconds (default: the harness's
# wait); true once it is there, or when there is nothing to wait for (not an
# answer of the harness's nginx).
sub wait_logged {
    my ($self, $seconds) = @_;
    return 1 if !$self->{log} || $self->{logged};
    return 0 unless $self->{local_port};
    my $line = qr/^[^\s:]+:$self->{local_port} /m;
    my $deadline = Time::HiRes::time() + ($seconds // $Test::Conductor::WAIT_SECONDS * $SCALE);
    my $polls = 0;
    while (1) {
        if (CORE::open my $fh, '<', $self->{log}) {
            # from where the file ended before the request (from the start
            # if it was recreated since)
            seek $fh, $self->{log_from}, 0 if ((-s $fh) || 0) >= $self->{log_from};
            local $/;
            my $text = <$fh>;
            return $self->{logged} = 1 if defined $text && $text =~ $line;
        }
        return 0 if Time::HiRes::time() >= $deadline;
        # nginx usually writes it within a millisecond of the close
        Time::HiRes::sleep(++$polls < 100 ? 0.0002 : 0.005);
    }
}

sub status      { $_[0]{status} }
sub headers     { $_[0]{headers} }
sub header      { $_[0]{headers}{ lc $_[1] } }
sub body        { $_[0]{body} }
sub complete    { $_[0]{complete} }
sub timed_out   { $_[0]{timed_out} }
sub error       { $_[0]{error} }
sub done        { $_[0]{done} }

sub close {
    my ($self) = @_;
    CORE::close(delete $self->{sock}) if $self->{sock};
}

sub response {
    my ($self) = @_;
    my $body = $self->{body};
    my $json = length $body ? eval { $JSON_DECODER->decode($body) } : undef;
    my %r = (
        status      => $self->{status},
        reason      => $self->{reason},
        headers     => $self->{headers},
        header_list => $self->{header_list},
        body        => $body,
        json        => $json,
        complete    => $self->{complete},
        timed_out   => $self->{timed_out},
        error       => $self->{error},
        connect_failed => $self->{connect_failed},
        elapsed     => Time::HiRes::time() - $self->{started},
    );
    $r{sse} = Test::Conductor::parse_sse($body) if ($self->{headers}{'content-type'} // '') =~ /event-stream/;
    return \%r;
}

package Test::Conductor::Filter;

# Test::Base's eval filter turns a syntax error into the section's value;
# here it fails the block instead, and the code sees the test file's subs.
use base 'Test::Base::Filter';

sub eval {
    my ($self, $code) = @_;
    my @values = CORE::eval("package main; no strict 'vars'; $code");
    die "eval section failed: $@" if $@;
    return @values;
}


# ---------------------------------------------------------------- SSE blocks

package Test::Conductor;

# An event stream cut into its events, each with the blank line that ends it
# (line ends of any kind); what follows the last blank line is the last item.
sub sse_blocks {
    my ($text) = @_;
    my (@blocks, $cur);
    $cur = '';
    pos($text) = 0;
    while ($text =~ /\G([^\r\n]*)(\r\n|\r|\n)/gc) {
        $cur .= $1 . $2;
        if ($1 eq '') { push @blocks, $cur; $cur = '' }
    }
    $cur .= substr $text, pos($text) // 0;
    push @blocks, $cur if length $cur;
    return @blocks;
}

# the JSON of an event's data lines, or undef
sub block_json {
    my ($block) = @_;
    my @data = map { /^data: ?(.*)\z/s ? $1 : () } split /\r\n|\r|\n/, $block;
    return undef unless @data;
    return eval { JSON::PP->new->decode(join "\n", @data) };
}

# a decoded chunk that is the usage-only one: choices [], usage an object
sub usage_only {
    my ($j) = @_;
    return ref $j eq 'HASH' && ref $j->{choices} eq 'ARRAY' && !@{ $j->{choices} } && ref $j->{usage} eq 'HASH';
}

1;

__END__

=head1 NAME

Test::Conductor - Test::Nginx::Socket-style block tests for ngx_http_conductor_module

=head1 SYNOPSIS

    use lib 't/lib';
    use Test::Conductor;

    block_defaults(http_config => '...');    # optional: sections every block gets
    run_tests();                             # no plan needed (see PLAN)

    __DATA__

    === TEST 1: chat through the gateway
    --- http_config
    conductor_provider mock { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 test-key-1; }
    --- config
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
    --- request
    POST /v1/chat/completions
    {"model":"x","messages":[]}
    --- more_headers
    Authorization: Bearer client-secret
    --- error_code: 200
    --- response_headers
    Content-Type: application/json
    !X-Absent
    --- response_body_like: "object":"chat.completion"
    --- checks
    is $mock->[0]{json}{model}, 'x', 'model as sent';
    --- no_error_log
    [error]

Run with C<prove t/>, C<prove -j2 t/>, or C<TEST_NGINX_USE_VALGRIND=1 prove t/>.

=head1 WHAT A BLOCK DOES

For every block: the mock provider's request log is cleared, a fresh
C<t/servroot-E<lt>testfileE<gt>/conf/nginx.conf> is written, its logs are
emptied, nginx is started (C<nginx -p servroot -c conf/nginx.conf>) and the
harness waits until the port accepts. The requests are sent in order, each
once the previous one is in the access log (see C<http_request>), then
C<wait>, then the response assertions and C<checks> run while nginx is still
up; then nginx is stopped with QUIT (TERM, then KILL, after a 20 s grace) and
the log assertions and the crash check read C<logs/error.log>, which holds
only what this nginx wrote, shutdown included.

The generated configuration:

    load_module <TEST_NGINX_MODULE or ROOT/build/ngx_http_conductor_module.so>;  # not with no_module
    daemon on; master_process on; worker_processes 1;    # each only if main_config lacks it
    error_log logs/error.log debug;
    pid logs/nginx.pid;
    <main_config>
    events { worker_connections 1024; }
    http {
        client_body_temp_path ...; proxy_temp_path ...;    # all under servroot
        <http_config>
        log_format conductor_test_harness '$remote_addr:$remote_port - ...';  # then as combined
        access_log logs/access.log conductor_test_harness;
        server {
            listen 127.0.0.1:$TEST_NGINX_PORT;
            server_name localhost;
            <config>
        }
    }

=head1 SECTIONS

Every section's text has the placeholders replaced first (also in C<eval>
sections, so C<"$TEST_NGINX_PORT"> in Perl code is the number); Test::Base's
default filters C<norm trim> then apply (CRLF to LF, leading blank lines
dropped, trailing whitespace cut to one newline). Filters can be added after
the name as usual: C<--- response_body chomp>, C<--- error_log eval>.

=over

=item main_config, http_config, config

Top level, inside C<http{}> before the server, inside the C<server{}>. A
C<worker_processes>, C<daemon>, C<master_process> or C<user> line in
main_config replaces the generated one (under valgrind, daemon /
master_process lines are dropped and forced off). When the tests run as
root, the generated C<user> line runs the workers as the real user (root)
and that user's group rather than nginx's built-in C<nobody>, who may not
be able to enter the checkout (a clone under a 0700 home).

=item no_module

Present (no value needed): no C<load_module> line; plain nginx.

=item env

C<NAME=VALUE> lines, set in nginx's environment for this block (and for
C<nginx -t> in must_die blocks). nginx reads them at configuration time
(C<key ... env=NAME>); workers see them only through an C<env> directive.

=item request

First line C<METHOD URI> (an C<HTTP/1.x> suffix is ignored), the rest is the
body, with the section's trailing newline removed. Sent over HTTP/1.1 with
C<Host: localhost>, C<Connection: close> (unless more_headers has a
Connection header), C<Content-Length> for bodies (and for POST/PUT/PATCH
without one) and C<Content-Type: application/json> for non-empty bodies,
each unless more_headers gives that header. Chunked answers are decoded.

=item request_eval, request eval

Perl code returning a request string or an arrayref of them; a hashref
C<< {method, uri, body, headers => {...}} >> also works for one request.
Requests go one after the other; response assertions apply to the last;
C<$resps> in checks holds them all.

=item more_headers

C<Name: value> lines for every request of the block; C<!Name> suppresses a
default header (Content-Type, Connection, Host, Content-Length).

=item error_code

The expected status of the last response.

=item response_headers

C<Name: value> lines, compared exactly (repeated headers are joined with
C<, >); C<!Name> means the header must be absent.

=item response_headers_like

C<Name: regex> lines.

=item response_body

Exact body. The default trim filter keeps one trailing newline: use
C<--- response_body chomp> for a body without one.

=item response_body_like

A regex (the section's trailing newline removed; matched with /s), or a qr//
from C<--- response_body_like eval>.

=item error_log, no_error_log

One pattern per line, substring match, against what this block's nginx wrote
to error.log (for must_die: against the output of C<nginx -t>). With
C<eval>: a list or arrayref of strings and qr// items.

=item checks

Perl code, run in package main under strict, with

    $resp   the last response: { status, reason, headers (lower-case keys),
            header_list ([name, value] pairs as received), body, json (decoded
            body or undef), sse (parse_sse of the body for event streams),
            complete (body framing finished), timed_out, error, elapsed }
    $resps  all responses of the block
    $mock   arrayref of the requests the mock provider received in this block:
            { seq, time, port, method, url, headers (lower-case), body, json, key }
    $env    the placeholders (TEST_NGINX_PORT, ...)
    $block  the Test::Base block

It calls Test::More functions itself (is, ok, like, is_deeply, cmp_ok, ...)
and may talk to nginx (http_request, http_stream_open): nginx is still up. A
block with checks and no request section sends nothing itself.

=item must_die

C<nginx -t> must fail for this configuration, with a message that names the
file and line (C< in /path:N>); error_log / no_error_log then apply to its
output. nginx is not started.

=item wait

Seconds to sleep after the requests, before checks and the log assertions
(not scaled under valgrind).

=item timeout

Per-request read timeout in seconds, default 30 (times 10 under valgrind). A
guard, not an assertion: a request that hits it fails the block's clean-run
test.

=item skip

C<--- skip: reason> skips the block (one skipped test). Test::Base's own
C<--- SKIP> (block dropped, no test), C<--- ONLY> and C<--- LAST> work too.

=back

=head1 PLAN

C<run_tests()> declares C<no_plan> when the file has declared no plan, so a
file needs nothing else; code after C<run_tests()> may add tests and end with
C<done_testing()>. To declare a fixed plan, count per block:

    must_die block:    1 (nginx -t fails, naming file:line)
                       + 1 each for error_log, no_error_log
    skip block:        1
    any other block:   1 each for error_code, response_headers,
                       response_headers_like, response_body, response_body_like,
                       error_log, no_error_log (one test per section, however
                       many lines)
                       + 1 "clean run" (no [alert], [emerg], "exited on signal",
                         no hang on QUIT, no request timeout, valgrind clean)
                       + the tests the checks code runs

A block that fails to start nginx or to evaluate its sections reports one
failed test and stops there.

=head1 PLACEHOLDERS

C<$TEST_NGINX_PORT> (nginx), C<$TEST_NGINX_MOCK_PORT>, C<$TEST_NGINX_MOCK_PORT2>,
C<$TEST_NGINX_MOCK_PORT3> (the mock provider, one process on three ports),
C<$TEST_NGINX_DEAD_PORT> (nothing listens), C<$TEST_NGINX_SERVROOT>,
C<$TEST_NGINX_CONF_DIR> (the repository's conf/), C<$TEST_NGINX_ROOT>. Also
written C<${TEST_NGINX_PORT}>. The ports are chosen per test file (a base
derived from the PID, kept only if they bind), so files run in parallel; the
values are in C<%ENV> as well.

=head1 EXPORTED FUNCTIONS

=over

=item run_tests()

Runs the blocks of C<__DATA__>.

=item block_defaults(section => text, ...)

Sections that every block without its own gets (placeholders replaced, no
filters).

=item harness_env()

The placeholders, as a hashref copy.

=item start_nginx(http_config => ..., config => ..., main_config => ..., env => {...}, no_module => 1)

Starts a fresh nginx with that configuration (stopping a running one first);
croaks with the tails of nginx's output and error.log when it cannot.

=item stop_nginx()

Stops it; returns an arrayref of problems (empty when clean): crashes,
C<[alert]>/C<[emerg]> lines, a hang on QUIT, valgrind errors. Typical use:
C<is_deeply stop_nginx(), [], 'clean shutdown';>

=item nginx_running(), nginx_pid()

=item error_log_since_start()

What the running (or last) nginx wrote to error.log.

=item http_request($method, $path, \%headers, $body, port => N, timeout => S, await_log => 0)

Returns the response hash described under checks. Headers may be a hashref
or an arrayref of pairs; a header whose value is undef is not sent (this
suppresses a default). Waits for nginx to close a C<Connection: close>
connection, and then, for an answer of the harness's nginx (the default
port while C<start_nginx>'s nginx runs), until nginx has written the
request's line to C<logs/access.log> (found by the client's port, the
C<$remote_port> of the harness's log format). So the LOG phase has run when
it returns: the module's counters (the status report), the block's own
C<access_log> files (written before the harness's: its C<access_log> comes
after C<http_config>) and whatever a next request's routing reads from them
include this request. nginx runs that phase after the answer was sent, and
with a lingering close (a request with a body) only once the client has
closed too, so without the wait a reader could race it.

The wait is bounded by C<$Test::Conductor::WAIT_SECONDS> (5 s, times 10
under valgrind) and costs well under a millisecond a request. When a line
does not come (a block that logs elsewhere: C<access_log> in its server or
location, C<access_log off>), a diag says so and the harness stops waiting
for that nginx. C<< await_log => 0 >> skips the wait for one request.

With more than one worker, another worker may serve a next request before
the module's log handler (it runs right after the access log's) has
finished; for counters use C<status_wait> there.

=item wait_for(sub { ... }, timeout => S, interval => S, what => 'text')

Calls the sub (in scalar context) every C<interval> (0.02 s) until it
returns a true value, for at most C<timeout> seconds (default
C<$Test::Conductor::WAIT_SECONDS>, times 10 under valgrind); returns that
value, or after a diag C<gave up after N s waiting for E<lt>whatE<gt>> the
last false one. For anything nginx does in its own time: a log record, a
health check, a reload. Assert on what is there afterwards, so a real
failure fails with the value it got:

    my @records;
    wait_for(sub { @records = usage_records(); @records >= 3 }, what => 'three usage records');
    is scalar(@records), 3, 'one record per request';

=item status_report(port => N, path => '/conductor/status', headers => {...})

The status report (C<conductor_status>), decoded; undef unless the answer
is a 200 with a JSON object.

=item status_wait(sub { $_->{totals}{requests} == 3 }, timeout => S, what => ..., port => N, path => ...)

Fetches C<status_report> until the condition holds for it (the report is in
C<$_> and C<$_[0]>), bounded as C<wait_for>; returns the last report
fetched whether the condition holds or not, so that the test asserts on
it (undef if none could be fetched). For counters that a request's own
answer does not wait for: with several workers, after a health check, from
an nginx outside the harness (C<port>).

    my $st = status_wait(sub { $_->{totals}{requests} >= 3 }, port => $gw);
    is $st->{totals}{requests}, 3, 'status counts them';

=item http_stream_open(same arguments)

Returns a C<Test::Conductor::Stream> whose head is read: C<status>,
C<headers>, C<header($name)>; then C<read_some($timeout)> (next decoded body
bytes; undef at the end of the body, at EOF or on timeout, see
C<complete>, C<timed_out>, C<error>), C<read_until(qr/.../, $timeout)> (true
once the body so far matches), C<read_all($timeout)>, C<body>, C<response>
(the hash), C<close>, C<wait_logged($seconds)> (after the body and C<close>:
waits for the request's access log line as C<http_request> does; true once
it is there). Streams left open are closed by stop_nginx.

=item parse_sse($text)

C<[{event, data, json, id}]>, comments skipped, CRLF / no-space tolerant.

=item start_mock(), stop_mock(), mock_requests(), mock_clear(), mock_release()

The mock provider (started on first need, stopped in END); its request log;
clearing it (also resets fail_first counters); releasing gated streams
(returns how many).

=item done_testing()

=back

=head1 ENVIRONMENT

C<TEST_NGINX_USE_VALGRIND=1> runs nginx as one foreground process
(C<daemon off; master_process off;>) under valgrind memcheck with
C<t/valgrind.supp>; a block fails when C<logs/valgrind.log> reports errors or a
definite leak with an C<ngx_http_conductor> frame. C<TEST_NGINX_MODULE> (path
of the .so), C<TEST_NGINX_BINARY> (nginx), C<TEST_NGINX_NODE> (node).

=cut
