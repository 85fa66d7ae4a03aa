# A request lets go of its key and its client when its answer has been
# given, not when nginx lets go of the connection.  With "Connection:
# close" nginx closes lingering (it waits up to lingering_timeout, 5 s, for
# the client to close first) and runs the LOG phase only then; a client
# that keeps the connection open after reading the answer must not hold a
# key's max_inflight (or its client's) place, nor keep its tokens out of
# the status, all that time.
use lib 't/lib';
use Test::Conductor;
use Test::More ();
use IO::Socket::INET ();
use Time::HiRes ();

my $env = harness_env();
my $MOCK = "http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1";

start_nginx(http_config => <<"HTTP", config => <<"SERVER");
    conductor_zone conductor:1m;
    conductor_provider p1 {
        url $MOCK;
        key k1 "k1;prompt_tokens=7;completion_tokens=5" max_inflight=1;
    }
    conductor_provider p2 {
        url $MOCK;
        key k2 "k2;gate;prompt_tokens=7;completion_tokens=5" max_inflight=1;
    }
    conductor_model m1 { p1 pm; }
    conductor_model m2 { p2 pm; }
    conductor_client solo { key sk-solo; limit max_inflight=1; }
    upstream conductor_backend { conductor_balancer keepalive=4; }
HTTP
    location /v1/ {
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location /solo/v1/ {
        conductor_auth on;
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location = /conductor/status { conductor_status; }
SERVER

# sends one request with "Connection: close", reads the whole answer and
# returns the socket still open, with the answer
sub answered_kept_open {
    my ($path, $body, $auth) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $env->{TEST_NGINX_PORT},
                                  Proto => 'tcp') or die "connect: $!";
    my $req = "POST $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            . ($auth ? "Authorization: Bearer $auth\r\n" : '')
            . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    syswrite $s, $req;
    my $buf = '';
    my $deadline = Time::HiRes::time() + 10;
    # the answer is whole at the chunked end (streams) or at its length
    while (Time::HiRes::time() < $deadline) {
        my $sel = IO::Select->new($s);
        last unless $sel->can_read(1) || 1;
        my $n = sysread($s, my $chunk, 65536);
        $buf .= $chunk if $n;
        last if !$n;
        last if $buf =~ /\r\n0\r\n\r\n\z/;
        if ($buf =~ /\r\n\r\n/ && $buf =~ /^Content-Length: (\d+)/mi) {
            my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
            last if length($rest) >= $1;
        }
    }
    return ($s, $buf);
}

sub key_inflight {
    my ($name) = @_;
    my $st = status_report() or return -1;
    my ($p) = grep { $_->{name} eq ($name eq 'k1' ? 'p1' : 'p2') } @{ $st->{providers} };
    my ($k) = grep { $_->{name} eq $name } @{ $p->{keys} };
    return $k->{inflight};
}

my ($s1, $a1) = answered_kept_open('/v1/chat/completions', '{"model":"m1","messages":[]}');
like $a1, qr{^HTTP/1\.1 200 }, 'a JSON answer, read whole; the connection left open';
my $x = http_request('POST', '/v1/chat/completions', {}, '{"model":"m1","messages":[]}', await_log => 0);
is $x->{status}, 200, 'the next request on k1 (max_inflight=1) is served, not refused';
is key_inflight('k1'), 0, 'k1 shows nothing in flight';
my $st = status_report();
is $st->{totals}{tokens}{total}, 24, 'both answers\' tokens are counted already';
close $s1;

# a stream, held by the mock, then let go: read to its end, kept open
my $held = Test::Conductor::burst(1, '{"model":"m2","stream":true,"messages":[]}', gated => 1);
is key_inflight('k2'), 1, 'a held stream: k2 has one in flight';
my $y = http_request('POST', '/v1/chat/completions', {}, '{"model":"m2","messages":[]}', await_log => 0);
is $y->{status}, 429, 'while it streams, k2 has no room';
mock_release();
my $sock = $held->[0]{sock};
my $buf = '';
my $deadline = Time::HiRes::time() + 10;
while (Time::HiRes::time() < $deadline && $buf !~ /\r\n0\r\n\r\n\z/) {
    my $n = sysread($sock, my $chunk, 65536);
    last unless $n;
    $buf .= $chunk;
}
like $buf, qr/\[DONE\]/, 'the stream ended; its connection left open';
ok wait_for(sub { key_inflight('k2') == 0 }, timeout => 2, what => 'k2 free'),
    'k2 is free as soon as the stream has ended';
close $sock;

# the client's own max_inflight=1
my ($s3, $a3) = answered_kept_open('/solo/v1/chat/completions', '{"model":"m1","messages":[]}', 'sk-solo');
like $a3, qr{^HTTP/1\.1 200 }, "client solo's answer, the connection left open";
my $z = http_request('POST', '/solo/v1/chat/completions', { Authorization => 'Bearer sk-solo' },
                     '{"model":"m1","messages":[]}', await_log => 0);
is $z->{status}, 200, 'its next request is served at once (its max_inflight=1 is free)';
close $s3;

done_testing();
