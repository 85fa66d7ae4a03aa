# Large chat streams to clients that read slowly (issue 7, part 1).
#
# A ~10 MB chat stream through the gateway to a client slower than the
# provider: nginx's writes to the client block, and the stream must still
# arrive whole, byte for byte, as the client reads on. Strip mode (the client
# did not ask for stream_options.include_usage: the gateway asks the provider
# and takes the usage-only chunk out) and include_usage (the stream passes
# byte-identical) are both checked:
#   1   strip, a reader at 2 MB/s, and beside it curl --limit-rate 1M
#   2   strip, a reader that reads nothing for 3 s, then at full speed
#   3   include_usage, the same two readers (at once)
#   4   strip, 50 readers at 1 MB/s at once, ~8 MB each, while the nginx
#       worker's VmRSS / VmHWM are sampled (SLOW_50_USAGE=1: include_usage too)
# Every reader has a 256 KB SO_RCVBUF, set before connecting (a window like
# a real client's; loopback autotuning would grow it to 32 MB and let the
# kernel absorb the whole stream), so the reader, not the kernel, sets the pace.
#
# The expected stream is the provider's own: the request the gateway sent
# upstream (from the provider's log) is replayed straight to the provider and
# read at full speed; the two differ only in the chunk id and created time,
# which are normalised before the byte comparison. In strip mode the expected
# stream is that one less its usage-only chunk (the README: every other line
# unchanged).
#
# Every read is bounded: a stream fails when no byte arrived for $STALL s
# while the reader wanted more, or when it took over $MAX s; the diagnostics
# give the bytes that had arrived, when the last one did, and the first byte
# that differs from the expected stream.
#
# Knobs: SLOW_ONLY=1,2,3,4 (cases), SLOW_TOKENS / SLOW_TOKENS50 (stream
# sizes, in chunks of ~265 bytes), SLOW_READERS (50), SLOW_RCVBUF, SLOW_CHUNK
# (how the mock writes: chunk_delay=0 = every event its own write),
# SLOW_CURL=0 (no curl).
use lib 't/lib';
use Test::Conductor;
use IO::Handle;
use IO::Select;
use Socket qw(PF_INET SOCK_STREAM IPPROTO_TCP SOL_SOCKET SO_RCVBUF pack_sockaddr_in inet_aton);
use Digest::SHA ();
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);

my $TOKENS   = $ENV{SLOW_TOKENS} // 40000;      # ~265 bytes an event: ~10.6 MB
my $TOKENS50 = $ENV{SLOW_TOKENS50} // 30000;    # ~8 MB each for the 50
my $VALGRIND = $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0;
my $STALL  = 10 * ($VALGRIND ? 10 : 1);          # s without a byte: a stall
my $MAX    = 60 * ($VALGRIND ? 10 : 1);          # s for one stream at most
my $RATE   = 2 * 1024 * 1024;                    # the single slow readers
my $RATE50 = 1024 * 1024;                        # each of the 50
my $N50    = $ENV{SLOW_READERS} // ($VALGRIND ? 5 : 50);
my $RSS_BOUND_KB = 200 * 1024;
my $RCVBUF = $ENV{SLOW_RCVBUF} // 256 * 1024;    # the readers' SO_RCVBUF
# how the mock writes the stream: every event its own write, no pause
my $CHUNK  = $ENV{SLOW_CHUNK} // 'chunk_delay=0';
# SLOW_ONLY=1,1b,2,3,4: only those cases
my %ONLY   = map { $_ => 1 } split /,/, $ENV{SLOW_ONLY} // '';
sub want_case { return !%ONLY || $ONLY{ $_[0] } }

my $env = harness_env();

# The 50 streams come from t/slow/provider.js: the mock's stream, rendered
# once and served from memory (the mock builds every answer anew, ~0.5 s of
# its one thread for 8 MB, which would make it, not the readers, the slow end).
my $fast_pid;
my $FAST_PORT = 0;
sub start_fast {
    my $port_file = "$env->{TEST_NGINX_SERVROOT}/fast.port";
    unlink $port_file;
    STDOUT->flush;
    STDERR->flush;
    $fast_pid = fork // die "fork: $!";
    unless ($fast_pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$env->{TEST_NGINX_SERVROOT}/fast.log" or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        setpgrp(0, 0);
        { no warnings 'exec'; exec { $ENV{TEST_NGINX_NODE} // 'node' } 'node',
            "$env->{TEST_NGINX_ROOT}/t/slow/provider.js", '--port-file', $port_file; }
        POSIX::_exit(127);
    }
    my $deadline = time + 15;
    until (-s $port_file) {
        die "t/slow/provider.js did not start (see $env->{TEST_NGINX_SERVROOT}/fast.log)\n"
            if time > $deadline || waitpid($fast_pid, POSIX::WNOHANG()) == $fast_pid;
        sleep 0.02;
    }
    ($FAST_PORT) = do { open my $f, '<', $port_file or die; local $/; <$f> } =~ /(\d+)/;
}
sub stop_fast {
    return unless $fast_pid;
    kill 'TERM', $fast_pid;
    for (1 .. 250) { last if waitpid($fast_pid, POSIX::WNOHANG()) == $fast_pid; sleep 0.02 }
    if (kill 0, $fast_pid) { kill 'KILL', $fast_pid; waitpid $fast_pid, 0 }
    undef $fast_pid;
}
END { stop_fast() }
start_fast() if want_case(4);

# The harness logs at debug level: ~500,000 lines for one 10 MB stream,
# which makes nginx itself slower than the readers (it never has to wait for
# them). Requests log at info here; crashes and alerts still reach error.log.
my $http = <<"HTTP";
    error_log logs/error.log info;
    conductor_zone conductor:1m;
    conductor_provider oai {
        url http://127.0.0.1:\$TEST_NGINX_MOCK_PORT/v1;
        key k1 "k1;completion_tokens=$TOKENS;$CHUNK";
    }
    conductor_provider fast {
        url http://127.0.0.1:@{[ $FAST_PORT || $env->{TEST_NGINX_DEAD_PORT} ]}/v1;
        key k2 "k2;completion_tokens=$TOKENS50";
    }
    conductor_model slow { oai slow-model; }
    conductor_model slow50 { fast slow-model; }
    upstream conductor_backend { conductor_balancer; }
HTTP
my $server = <<'SERVER';
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
SERVER
s/\$(TEST_NGINX_\w+)/$env->{$1}/g for $http, $server;

# the request: strip mode (no include_usage) or include_usage
sub request_body {
    my ($model, $usage) = @_;
    return qq({"model":"$model","stream":true,)
        . ($usage ? '"stream_options":{"include_usage":true},' : '')
        . '"messages":[{"role":"user","content":"hi"}]}';
}
my $JSON = JSON::PP->new->utf8;
my $T0 = time;

# ---------------------------------------------------------------- reader

# A reader: connects, sends the request, then reads when pump() lets it:
# from `pause` seconds on, at most `rate` bytes a second (token bucket).
sub reader {
    my (%o) = @_;
    my $r = {
        name => $o{name}, rate => $o{rate}, pause => $o{pause} // 0,
        raw_bytes => 0, body => '', inbuf => '', state => 'head', headers => {},
        tokens => 0, started => time, done => 0, complete => 0, why => undef,
    };
    # a fixed receive buffer, set before connecting (no autotuning): a
    # window like a real client's, not loopback's up to 32 MB, so a slow
    # reader does make nginx's writes block
    my $sock;
    unless (socket($sock, PF_INET, SOCK_STREAM, IPPROTO_TCP)
        && (!$o{rcvbuf} || setsockopt($sock, SOL_SOCKET, SO_RCVBUF, $o{rcvbuf}))
        && connect($sock, pack_sockaddr_in($o{port}, inet_aton('127.0.0.1'))))
    {
        @$r{qw(done why)} = (1, "connect to 127.0.0.1:$o{port}: $!");
        return $r;
    }
    my $h = join '', map {"$_->[0]: $_->[1]\r\n"} @{ $o{headers} || [] };
    my $req = "POST $o{path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($o{body}) . "\r\n$h\r\n$o{body}";
    local $SIG{PIPE} = 'IGNORE';
    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite $sock, $req, length($req) - $off, $off;
        unless (defined $n) { @$r{qw(done why)} = (1, "send: $!"); return $r }
        $off += $n;
    }
    $sock->blocking(0);
    $r->{sock} = $sock;
    $r->{read_from} = $r->{last_refill} = time + $r->{pause};
    return $r;
}

sub finish {
    my ($r, $why) = @_;
    $r->{done} = 1;
    $r->{why} //= $why;
    $r->{ended} = time;
    close delete $r->{sock} if $r->{sock};
}

# head, then chunked decoding, incrementally
sub feed {
    my ($r, $data) = @_;
    $r->{inbuf} .= $data;
    while (1) {
        my $st = $r->{state};
        if ($st eq 'head') {
            my $i = index $r->{inbuf}, "\r\n\r\n";
            if ($i < 0) { return finish($r, 'response head too long') if length $r->{inbuf} > 65536; return }
            my ($status_line, @lines) = split /\r\n/, substr($r->{inbuf}, 0, $i);
            substr($r->{inbuf}, 0, $i + 4) = '';
            ($r->{status}) = $status_line =~ m{^HTTP/1\.\d (\d{3})};
            for (@lines) { $r->{headers}{ lc $1 } = $2 if /^([^:]+):\s*(.*?)\s*$/ }
            return finish($r, "not a chunked response: $status_line")
                unless ($r->{headers}{'transfer-encoding'} // '') =~ /chunked/i;
            $r->{state} = 'size';
        }
        elsif ($st eq 'size') {
            my $i = index $r->{inbuf}, "\r\n";
            if ($i < 0) { return finish($r, 'bad chunk size line') if length $r->{inbuf} > 1024; return }
            my $line = substr $r->{inbuf}, 0, $i + 2, '';
            return finish($r, "bad chunk size line: $line") unless $line =~ /\A([0-9a-fA-F]+)(?:;[^\r\n]*)?\r\n\z/;
            $r->{left} = hex $1;
            $r->{chunks}++;
            $r->{state} = $r->{left} ? 'data' : 'trailer';
        }
        elsif ($st eq 'data') {
            return unless length $r->{inbuf};
            my $n = length $r->{inbuf} < $r->{left} ? length $r->{inbuf} : $r->{left};
            $r->{body} .= substr $r->{inbuf}, 0, $n, '';
            $r->{left} -= $n;
            $r->{state} = 'crlf' unless $r->{left};
        }
        elsif ($st eq 'crlf') {
            return if length $r->{inbuf} < 2;
            return finish($r, 'no CRLF after chunk data') unless substr($r->{inbuf}, 0, 2, '') eq "\r\n";
            $r->{state} = 'size';
        }
        elsif ($st eq 'trailer') {
            my $i = index $r->{inbuf}, "\r\n";
            return if $i < 0;
            my $line = substr $r->{inbuf}, 0, $i + 2, '';
            next if $i > 0;    # a trailer field
            $r->{complete} = 1;
            $r->{complete_at} = time;
            $r->{state} = 'after';
        }
        else {    # after the last chunk: nothing more may come
            return unless length $r->{inbuf};
            return finish($r, 'bytes after the end of the chunked body: ' . substr($r->{inbuf}, 0, 40));
        }
    }
}

# Runs the readers until every one is done; $tick->() every 0.1 s.
sub pump {
    my ($readers, $tick) = @_;
    my $next_tick = 0;
    while (my @active = grep { !$_->{done} } @$readers) {
        my $now = time;
        if ($tick && $now >= $next_tick) { $tick->(); $next_tick = $now + 0.1 }
        my $sel = IO::Select->new;
        my %by_fd;
        my $wait = 0.05;
        for my $r (@active) {
            if ($now - $r->{started} > $MAX) { finish($r, "took longer than $MAX s"); next }
            if ($now < $r->{read_from}) { $wait = $r->{read_from} - $now if $r->{read_from} - $now < $wait; next }
            $r->{last_byte} //= $now;    # the stall clock starts when we want bytes
            if ($now - $r->{last_byte} > $STALL) { finish($r, "stalled: no byte for $STALL s"); next }
            if ($r->{rate}) {
                my $cap = $r->{rate} * 0.05 > 16384 ? $r->{rate} * 0.05 : 16384;
                $r->{tokens} += $r->{rate} * ($now - $r->{last_refill});
                $r->{tokens} = $cap if $r->{tokens} > $cap;
                $r->{last_refill} = $now;
                if ($r->{tokens} < 4096) {
                    my $t = (4096 - $r->{tokens}) / $r->{rate};
                    $wait = $t if $t < $wait;
                    next;
                }
            }
            $sel->add($r->{sock});
            $by_fd{ fileno $r->{sock} } = $r;
        }
        unless ($sel->count) { sleep($wait > 0.001 ? $wait : 0.001); next }
        for my $fh ($sel->can_read($wait)) {
            my $r = $by_fd{ fileno $fh };
            my $want = $r->{rate} ? int $r->{tokens} : 262144;
            $want = 65536 if $r->{rate} && $want > 65536;
            my $buf;
            my $n = sysread $fh, $buf, $want;
            if (!defined $n) {
                next if $!{EAGAIN} || $!{EINTR};
                finish($r, "read error: $!");
                next;
            }
            if ($n == 0) { finish($r, $r->{complete} ? 'eof' : 'connection closed before the end of the body'); next }
            my $t = time;
            $r->{first_byte} //= $t;
            $r->{last_byte} = $t;
            $r->{raw_bytes} += $n;
            $r->{tokens} -= $n if $r->{rate};
            feed($r, $buf);
        }
    }
}

sub run_readers {
    my ($n, %o) = @_;
    my $tick = delete $o{tick};
    my @r = map { reader(port => $env->{TEST_NGINX_PORT}, path => '/v1/chat/completions', name => "#$_",
        rcvbuf => $RCVBUF, %o) } 1 .. $n;
    pump(\@r, $tick);
    return @r;
}

# one line about a reader's run
sub summary {
    my ($r) = @_;
    my $t  = sub { defined $_[0] ? sprintf('%.2fs', $_[0] - $r->{started}) : '-' };
    return sprintf '%s: %s; status %s, %d bytes on the wire, %d body bytes in %d HTTP chunks, first byte at %s, last byte at %s, %s',
        $r->{name}, $r->{why} // '?', $r->{status} // '-', $r->{raw_bytes}, length $r->{body},
        $r->{chunks} // 0, $t->($r->{first_byte}), $t->($r->{last_byte}),
        $r->{complete} ? 'chunked body complete at ' . $t->($r->{complete_at}) : 'chunked body NOT complete';
}

# ---------------------------------------------------------------- the expected stream

# [id, created] of a chat stream's first chunk
sub stream_ids {
    my ($body) = @_;
    return $body =~ /\Adata: \{"id":"([^"]+)","object":"chat\.completion\.chunk","created":(\d+),/ ? ($1, $2) : ();
}

# the stream with its chunk id and created replaced by fixed ones
sub normalised {
    my ($body) = @_;
    my ($id, $created) = stream_ids($body) or return undef;
    (my $n = $body) =~ s/"id":"\Q$id\E","object":"chat\.completion\.chunk","created":$created,/"id":"ID","object":"chat.completion.chunk","created":0,/g;
    return $n;
}

# The request the gateway sent upstream, replayed straight to the mock and
# read at full speed: the provider's stream, normalised.
sub provider_stream {
    my ($sent, $port) = @_;
    my $r = reader(port => $port, path => $sent->{url}, name => 'provider',
        body => $sent->{body}, headers => [ [ Authorization => $sent->{headers}{authorization} ] ]);
    pump([$r]);
    die "the provider stream itself failed: " . summary($r) . "\n" unless $r->{complete};
    return normalised($r->{body});
}

# Events of a stream: count, concatenated content, events of an unexpected
# shape (the provider's own stream is also decoded as JSON, once per mode;
# a stream byte-exact with it has the same events).
sub content_of {
    my ($body) = @_;
    my ($events, $content, $bad) = (0, '', 0);
    for my $ev (split /\n\n/, $body) {
        $events++;
        next if $ev eq 'data: [DONE]';
        if ($ev =~ /\Adata: \{"id":"[^"]+","object":"chat\.completion\.chunk","created":\d+,"model":"slow-model",[^\n]*"choices":\[\{"index":0,"delta":\{(?:"role":"assistant",)?(?:"content":"((?:[^"\\]|\\.)*)")?[^\n]*\}\z/) {
            $content .= $1 // '';
        }
        elsif ($ev !~ /\Adata: \{"id":"[^"]+",[^\n]*"choices":\[\],"usage":\{[^\n]*\}\z/) {
            $bad++;
        }
    }
    return ($events, $content, $bad);
}

# JSON::PP is slow (~80 us an event): the first and last 200 events and
# every 50th are decoded; content_of checks the shape of every one
sub json_events_ok {
    my ($body) = @_;
    my @ev = split /\n\n/, $body;
    my $bad = 0;
    for my $i (0 .. $#ev) {
        next unless $i < 200 || $i > $#ev - 200 || $i % 50 == 0;
        next if $ev[$i] eq 'data: [DONE]';
        $bad++ unless $ev[$i] =~ /\Adata: (.*)\z/s && eval { $JSON->decode($1); 1 };
    }
    return $bad;
}

# Position of the first difference between got and want ('' when equal).
sub first_difference {
    my ($got, $want) = @_;
    return '' if $got eq $want;
    my $n = length $got < length $want ? length $got : length $want;
    my ($lo, $hi) = (0, $n);    # substr(got, 0, lo) eq substr(want, 0, lo)
    while ($lo < $hi) {
        my $mid = int(($lo + $hi + 1) / 2);
        if (substr($got, 0, $mid) eq substr($want, 0, $mid)) { $lo = $mid } else { $hi = $mid - 1 }
    }
    # a cut stream: exact up to its end, or up to its last, partial event
    # (whose id, cut short, is not normalised)
    my $events_end = rindex($got, "\n\n") + 2;
    return sprintf 'what it got is a byte-exact prefix of the expected stream: %d of %d bytes (ids normalised)%s',
        length $got, length $want, $lo == length $got ? '' : ', up to its last event, cut short'
        if $lo == length $got || ($events_end > 1 && $lo >= $events_end);
    return sprintf 'first difference at byte %d of %d (want %d): got "%s", want "%s"', $lo, length $got,
        length $want, map { my $s = substr($_, $lo > 40 ? $lo - 40 : 0, 120); $s =~ s/\n/\\n/g; $s } $got, $want;
}

# Every assertion about one stream a client got: whole, framed, byte-exact.
sub check_stream {
    my ($label, $r, $want, %o) = @_;
    my $tokens = $o{tokens} // $TOKENS;
    is($r->{status}, 200, "$label: status 200");
    ok($r->{complete}, "$label: the chunked body ends (0-size chunk)");
    is($r->{why}, 'eof', "$label: then the connection closes, nothing after it");
    like(substr($r->{body}, -64), qr/\n\ndata: \[DONE\]\n\n\z/, "$label: ends with data: [DONE]")
        or diag(sprintf '%s: %d body bytes; the last ones: %s', $label, length $r->{body},
            join '', map { s/\n/\\n/gr } substr($r->{body}, -80));
    my $diff = first_difference(normalised($r->{body}) // '', $want);
    ok($diff eq '', "$label: byte-exact with the provider's stream" . ($o{strip} ? ' less its usage-only chunk' : ''))
        or diag("$label: $diff");
    my ($events, $content, $bad) = content_of($r->{body});
    is($bad, 0, "$label: every event a chat chunk");
    is($events, $tokens + 3 + ($o{strip} ? 0 : 1), "$label: every event ($tokens content chunks)");
    is($content, 'Hello from slow-model', "$label: the content of every chunk");
    if ($o{strip}) {
        unlike($r->{body}, qr/"choices":\[\]/, "$label: no usage-only chunk");
    }
    else {
        like($r->{body}, qr/\n\ndata: \{[^\n]*"choices":\[\],"usage":\{"prompt_tokens":12,"completion_tokens":$tokens,/,
            "$label: the usage chunk the client asked for");
    }
    diag(summary($r));
}

# ---------------------------------------------------------------- nginx

# the nginx worker's pid (worker_processes 1; under valgrind nginx is one
# process, without a master)
sub worker_pid {
    my $master = nginx_pid() or return undef;
    return $master if $VALGRIND;
    for my $dir (glob '/proc/[0-9]*') {
        open my $f, '<', "$dir/status" or next;
        my $status = do { local $/; <$f> };
        return $1 if $status =~ /^PPid:\s+$master\b/m && $status =~ /^Pid:\s+(\d+)/m;
    }
    return undef;
}

sub mem_kb {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/status" or return;
    my $status = do { local $/; <$f> };
    return map { $status =~ /^$_:\s+(\d+) kB/m ? $1 : undef } qw(VmRSS VmHWM);
}

sub start {
    start_nginx(http_config => $http, config => $server);
    mock_clear();
}

sub stop {
    my ($label) = @_;
    my $t = time;
    is_deeply(stop_nginx(), [], "$label: nginx stopped cleanly");
    diag(sprintf '%s: nginx took %.1fs to stop', $label, time - $t) if time - $t > 2;
}

# The provider's stream for a mode, from the first request of that mode:
# what the gateway sent upstream (it must have asked for usage), replayed.
my %want;
sub want_for {
    my ($mode, $label) = @_;
    return $want{$mode} //= do {
        my $t0 = time;
        my $fast = $mode =~ /50\z/;
        my $seen = $fast ? http_request(GET => '/__fast/requests', {}, undef, port => $FAST_PORT)->{json}
                         : mock_requests();
        my ($sent) = grep { $_->{url} =~ m{/chat/completions\z} } reverse @{ $seen || [] };
        die "$label: the provider saw no chat request\n" unless $sent;
        is($sent->{json}{stream_options}{include_usage}, JSON::PP::true,
            "$label: the gateway asked the provider for usage");
        my $p = provider_stream($sent, $fast ? $FAST_PORT : $env->{TEST_NGINX_MOCK_PORT});
        is(json_events_ok($p), 0, "$label: (the provider's stream: every event is JSON)");
        if ($mode =~ /^strip/) {
            my $n = ($p =~ s/\n\ndata: \{[^\n]*"choices":\[\],"usage":\{[^\n]*\n\n/\n\n/g);
            is($n, 1, "$label: (the provider's stream has one usage-only chunk)");
        }
        my ($events, $content) = content_of($p);
        diag(sprintf '%s-mode stream expected: %d bytes (with its ids normalised), %d events, content "%s" (%.1fs to fetch and check)',
            $mode, length $p, $events, $content, time - $t0);
        $p;
    };
}

sub case_time {
    my ($label, $t) = @_;
    diag(sprintf '%s: %.1fs', $label, time - $t);
}

# ---------------------------------------------------------------- the cases

# curl in the background: curl_start(label) ... curl_finish($c) -> a reader
# hash as pump() leaves one, from curl's --raw output (chunked framing kept)
sub have_curl { return grep { -x "$_/curl" } split /:/, $ENV{PATH} }
sub curl_start {
    my ($label, $body) = @_;
    my $c = { label => $label, out => "$env->{TEST_NGINX_SERVROOT}/curl.out",
        w => "$env->{TEST_NGINX_SERVROOT}/curl.w", started => time };
    unlink $c->{out}, $c->{w};
    # -Y 1 -y $STALL: under 1 byte/s for $STALL s (a stall) fails curl
    my @cmd = ('curl', '-sS', '--raw', '--limit-rate', '1M', '--max-time', $MAX, '-Y', 1, '-y', $STALL,
        '-H', 'Content-Type: application/json', '--data-binary', $body, '-o', $c->{out},
        '-w', '%{http_code} %{size_download} %{time_total}',
        "http://127.0.0.1:$env->{TEST_NGINX_PORT}/v1/chat/completions");
    STDOUT->flush;
    STDERR->flush;
    $c->{pid} = fork // die "fork: $!";
    unless ($c->{pid}) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $c->{w} or POSIX::_exit(126);
        { no warnings 'exec'; exec @cmd; }
        POSIX::_exit(127);
    }
    return $c;
}
sub curl_finish {
    my ($c) = @_;
    my $deadline = time + $MAX + 10;
    until (waitpid($c->{pid}, POSIX::WNOHANG()) == $c->{pid}) {
        if (time > $deadline) { kill 'KILL', $c->{pid}; waitpid $c->{pid}, 0; last }
        sleep 0.05;
    }
    my $exit = $? >> 8;
    my ($code, $size, $secs) = split ' ', do { open my $f, '<', $c->{w} or die "$c->{w}: $!"; local $/; <$f> } // '';
    is($exit, 0, "$c->{label}: curl exits 0")
        or diag("$c->{label}: curl exit $exit (28: over --max-time, or under 1 byte/s for $STALL s)");
    my $raw = do { open my $f, '<', $c->{out} or die "$c->{out}: $!"; local $/; <$f> } // '';
    my $r = { name => 'curl', status => $code, raw_bytes => length $raw, body => '', inbuf => '',
        state => 'size', started => $c->{started}, headers => {} };
    feed($r, $raw);
    $r->{why} //= $r->{complete} ? 'eof' : "curl exit $exit";
    diag(sprintf '%s: curl took %ss for %d bytes (%.2f MB/s)', $c->{label}, $secs // '?', $size // 0,
        ($size // 0) / ($secs || 1) / 1024 / 1024);
    return $r;
}

# 1. strip mode: a reader at 2 MB/s and, beside it, curl --limit-rate 1M
# (how the issue was reported; curl's limit is loose: it often reads faster)
if (want_case(1)) {
    my $label = 'strip, slow reader';
    my $clabel = 'strip, curl --limit-rate 1M';
    my $t = time;
    start();
    my $c = have_curl() && ($ENV{SLOW_CURL} // 1) ? curl_start($clabel, request_body('slow')) : undef;
    my ($r) = run_readers(1, body => request_body('slow'), rate => $RATE);
    check_stream($label, $r, want_for(strip => $label), strip => 1);
    if ($c) { check_stream($clabel, curl_finish($c), want_for(strip => $clabel), strip => 1) }
    else    { SKIP: { skip 'no curl', 1 } }
    stop($label);
    case_time($label, $t);
}

# 2. strip mode, a reader that reads nothing for 3 s, then at full speed
if (want_case(2)) {
    my $label = 'strip, paused reader';
    my $t = time;
    start();
    my ($r) = run_readers(1, body => request_body('slow'), pause => 3);
    check_stream($label, $r, want_for(strip => $label), strip => 1);
    stop($label);
    case_time($label, $t);
}

# 3. include_usage: the provider's stream, byte for byte; a slow and a
# paused reader at once
if (want_case(3)) {
    my $label = 'include_usage';
    my $t = time;
    start();
    my @r = (reader(port => $env->{TEST_NGINX_PORT}, path => '/v1/chat/completions', name => 'slow',
                 body => request_body('slow', 1), rate => $RATE, rcvbuf => $RCVBUF),
             reader(port => $env->{TEST_NGINX_PORT}, path => '/v1/chat/completions', name => 'paused',
                 body => request_body('slow', 1), pause => 3, rcvbuf => $RCVBUF));
    pump(\@r);
    check_stream("$label, slow reader", $r[0], want_for(usage => $label));
    check_stream("$label, paused reader", $r[1], want_for(usage => $label));
    stop($label);
    case_time($label, $t);
}

# 4. 50 slow readers at once, each at 1 MB/s; the worker's memory stays
# bounded. SLOW_50_USAGE=1 runs the include_usage variant as well.
for my $mode ('strip', ($ENV{SLOW_50_USAGE} ? 'usage' : ())) {
    next unless want_case(4);
    my $label = "$mode, $N50 slow readers at once";
    my $t = time;
    start();
    http_request(DELETE => '/__fast/requests', {}, undef, port => $FAST_PORT);
    my $wpid = worker_pid();
    ok($wpid, "$label: found the nginx worker");
    my ($rss0) = $wpid ? mem_kb($wpid) : ();
    my ($peak_rss, $hwm) = (0, 0);
    my $sample = sub {
        return unless $wpid;
        my ($rss, $h) = mem_kb($wpid);
        $peak_rss = $rss if ($rss // 0) > $peak_rss;
        $hwm = $h if ($h // 0) > $hwm;
    };
    my @r = run_readers($N50, body => request_body('slow50', $mode eq 'usage'), rate => $RATE50, tick => $sample);
    $sample->();
    my $want = want_for("${mode}50" => $label);
    my $strip = $mode eq 'strip';

    my @bytes = sort { $a <=> $b } map { length $_->{body} } @r;
    my @ends  = sort { $a <=> $b } map { ($_->{complete_at} // $_->{ended}) - $_->{started} } @r;
    diag(sprintf '%s: body bytes per stream: min %d, median %d, max %d; the streams ended after %.1f..%.1fs',
        $label, $bytes[0], $bytes[ $#bytes / 2 ], $bytes[-1], $ends[0], $ends[-1]);

    my @whole = grep { $_->{complete} && $_->{why} eq 'eof' } @r;
    is(scalar @whole, $N50, "$label: every stream ended properly (chunked body ends, then close)");
    my %why;
    $why{ $_->{why} }++ for @r;
    diag("$label: how the streams ended: " . join ', ', map {"$why{$_} $_"} sort keys %why);
    my @short = grep { !($_->{complete} && $_->{why} eq 'eof') } @r;
    diag(join "\n", map { summary($_) } @short[0 .. ($#short > 4 ? 4 : $#short)]) if @short;

    # each stream against the expected one, then only its digest is kept
    my (@wrong, %distinct, @usage_only);
    for my $r (@r) {
        my $n = normalised($r->{body}) // '';
        push @wrong, "$r->{name}: " . first_difference($n, $want) if $n ne $want;
        push @usage_only, $r->{name} if $r->{body} =~ /"choices":\[\]/;
        $distinct{ Digest::SHA::sha1_hex($n) } //= $n eq $want ? $want : $n;
        delete $r->{body};
    }
    is(scalar @wrong, 0, "$label: every stream byte-exact with the provider's" . ($strip ? ' less its usage-only chunk' : ''));
    diag(join "\n", @wrong[0 .. ($#wrong > 4 ? 4 : $#wrong)]) if @wrong;
    is(scalar keys %distinct, 1, "$label: all $N50 streams the same")
        or diag("$label: " . (keys %distinct) . ' different streams');
    # events and content of every distinct stream (the same for byte-equal ones)
    my @bad = grep {
        my ($e, $c, $b) = content_of($_);
        $b || $c ne 'Hello from slow-model' || $e != $TOKENS50 + 3 + ($strip ? 0 : 1)
    } values %distinct;
    is(scalar @bad, 0, "$label: every stream's events and content");
    %distinct = ();
    is(scalar @usage_only, $strip ? 0 : $N50,
        $strip ? "$label: no usage-only chunk in any" : "$label: the usage chunk in every one");

    diag(sprintf '%s: nginx worker %s: VmRSS %d kB before; during the run peak VmRSS %d kB (%.1f MB), VmHWM %d kB (%.1f MB)',
        $label, $wpid // '?', $rss0 // 0, $peak_rss, $peak_rss / 1024, $hwm, $hwm / 1024);
    cmp_ok($hwm, '>', 0, "$label: the worker's memory was sampled");
    SKIP: {
        skip 'valgrind: its own memory is in the figures', 1 if $VALGRIND;
        cmp_ok($hwm, '<', $RSS_BOUND_KB, "$label: the worker's peak RSS stays under " . $RSS_BOUND_KB / 1024 . ' MB');
    }
    @r = ();
    stop($label);
    case_time($label, $t);
}

diag(sprintf 'total %.1fs', time - $T0);
done_testing();
