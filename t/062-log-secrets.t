# No secret in any log, at any level (issue 9): nginx itself logs every
# request header at debug level ("http header: ...") and quotes header
# lines it rejects; the module's writer on every error log replaces the
# values of Authorization, x-api-key and the like with "[redacted]". Logs
# of every kind of place: the main error_log (a file and syslog), a
# server's, a location's, nested, regex, named, limit_except and if
# blocks, a location's syslog. Requests that succeed, that nginx refuses
# (invalid header lines, a header line too long) and that fail later
# (conductor_auth's 401, limit_except, a bad body). Every log must still have its debug lines,
# with "[redacted]" where the secrets were. Last, an nginx run by hand
# (the harness writes its main error_log before http{}): main error_log
# lines after http{}, which nginx adds when the http block is done.
use lib 't/lib';
use Test::Conductor;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

my $env  = harness_env();
my $port = $env->{TEST_NGINX_PORT};
my $logs = "$env->{TEST_NGINX_SERVROOT}/logs";
my $conf = $env->{TEST_NGINX_CONF_DIR};

# a second server, on a port free now, where the main error_log applies
my $probe = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1)
    or die "no free port: $!\n";
my $main_port = $probe->sockport;
close $probe;

# syslog: a UDP listener on loopback, a child that appends every datagram
# to a file (so that none is dropped while the test waits on nginx)
my $udp = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'udp')
    or die "udp socket: $!\n";
my $syslog_port = $udp->sockport;
my $syslog_file = "$env->{TEST_NGINX_SERVROOT}/syslog.txt";
unlink $syslog_file;
my $syslog_pid = fork // die "fork: $!\n";
if (!$syslog_pid) {
    $SIG{TERM} = sub { POSIX::_exit(0) };
    open my $fh, '>>', $syslog_file or POSIX::_exit(1);
    $fh->autoflush(1);
    while (1) {
        defined $udp->recv(my $dgram, 65536) or next;
        print {$fh} $dgram, "\n";
    }
}
close $udp;
END { if ($syslog_pid) { kill 'TERM', $syslog_pid; waitpid $syslog_pid, 0 } }

# every secret of the test: client keys, and the providers' keys
my @secrets = qw(
    client-secret-XYZ other-secret provider-secret-P1 provider-secret-A1
    mixed-secret-1 mixed-secret-2 mixed-secret-3 mixed-secret-4 mixed-secret-5
    invalid-secret-1 invalid-secret-2 nul-secret long-secret toolong-secret
    nested-secret regex-secret named-secret limit-secret if-secret
    syslog-secret usage-secret exact-secret auth-secret-ok auth-secret-wrong
);
my $long    = 'long-secret-' . ('L' x 3000);       # past NGX_MAX_ERROR_STR
my $toolong = 'toolong-secret-' . ('T' x 9000);    # past the header buffers

my $to_main = "proxy_pass http://127.0.0.1:$main_port;";

start_nginx(
    main_config => "error_log syslog:server=127.0.0.1:$syslog_port,tag=mainsys debug;",
    http_config => <<"HTTP",
    conductor_zone conductor:1m;
    conductor_provider mock {
        url http://127.0.0.1:$main_port/mock/v1;
        key p1 provider-secret-P1;
    }
    conductor_provider mock-ant {
        url http://127.0.0.1:$main_port/mock/v1;
        api anthropic;
        key a1 provider-secret-A1;
    }
    conductor_model fast { mock mock-small; }
    conductor_model claude { mock-ant mock-claude; }
    upstream conductor_backend { conductor_balancer; }
    conductor_client team { key auth-secret-ok; }

    # no error_log of its own: the main ones (logs/error.log and syslog)
    server {
        listen 127.0.0.1:$main_port;
        location /v1/ {
            conductor_route;
            include $conf/conductor_proxy.conf;
        }
        location / { conductor_mock; }
    }
HTTP
    config => <<"SERVER",
        error_log logs/server.log debug;

        location /v1/ {
            conductor_route;
            include $conf/conductor_proxy.conf;
        }
        location /auth/v1/ {
            conductor_auth on;
            conductor_route;
            include $conf/conductor_proxy.conf;
        }
        location /openai/ {
            error_log logs/location.log debug;
            conductor_usage mock;
            proxy_pass http://127.0.0.1:$main_port/mock/;
            location /openai/nested/ {
                error_log logs/nested.log debug;
                $to_main
            }
        }
        location ~ ^/regex/ {
            error_log logs/regex.log debug;
            $to_main
        }
        location = /exact/v1/chat/completions {
            error_log logs/exact.log debug;
            $to_main
        }
        location /to-named/ {
            error_page 418 = \@named;
            return 418;
        }
        location \@named {
            error_log logs/named.log debug;
            $to_main
        }
        location /limit/ {
            error_log logs/limit.log debug;
            limit_except GET { $to_main }
            return 405;
        }
        location /if/ {
            error_log logs/if.log debug;
            if (\$request_method = POST) { $to_main }
        }
        location /syslog/ {
            error_log syslog:server=127.0.0.1:$syslog_port,tag=locsys debug;
            $to_main
        }
SERVER
);

my $chat = '{"model":"fast","messages":[{"role":"user","content":"hi"}]}';

sub post {
    my ($path, $headers, %opt) = @_;
    return http_request(POST => $path, $headers, $opt{body} // $chat, port => $opt{port} // $port);
}

my @r;
push @r, [ 200, post('/v1/chat/completions', [ Authorization => 'Bearer client-secret-XYZ' ]) ];
push @r, [ 200, post('/v1/messages', [ 'x-api-key' => 'other-secret', 'anthropic-version' => '2023-06-01' ],
    body => '{"model":"claude","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}') ];
push @r, [ 200, post('/v1/chat/completions', [
    AUTHORIZATION => 'Bearer mixed-secret-1', 'X-Api-Key' => 'mixed-secret-2',
    'Proxy-Authorization' => 'Basic mixed-secret-3', 'X-GOOG-API-KEY' => 'mixed-secret-4',
    'Api-Key' => 'mixed-secret-5' ], port => $main_port) ];
# invalid header lines nginx ignores (logged at info), then one it refuses
push @r, [ 200, post('/v1/chat/completions', [ x_api_key => 'invalid-secret-1',
    'Authorization(x)' => 'Bearer invalid-secret-2' ], port => $main_port) ];
push @r, [ 400, post('/v1/chat/completions', [ Authorization => "Bearer nul-secret\0tail" ]) ];
push @r, [ 200, post('/v1/chat/completions', [ Authorization => "Bearer $long" ]) ];
push @r, [ 400, post('/v1/chat/completions', [ Authorization => "Bearer $toolong" ]) ];
push @r, [ 400, post('/v1/chat/completions', [ Authorization => 'Bearer client-secret-XYZ' ], body => '{bad') ];
# conductor_auth: a client's key, a key no client has, none
push @r, [ 200, post('/auth/v1/chat/completions', [ Authorization => 'Bearer auth-secret-ok' ]) ];
push @r, [ 401, post('/auth/v1/chat/completions', [ 'x-api-key' => 'auth-secret-wrong' ]) ];
push @r, [ 401, post('/auth/v1/chat/completions', []) ];
push @r, [ 200, post('/openai/v1/chat/completions', [ Authorization => 'Bearer usage-secret' ]) ];
push @r, [ 200, post('/openai/nested/v1/chat/completions', [ Authorization => 'Bearer nested-secret' ]) ];
push @r, [ 200, post('/regex/v1/chat/completions', [ 'x-api-key' => 'regex-secret' ]) ];
push @r, [ 200, post('/exact/v1/chat/completions', [ 'X-Goog-Api-Key' => 'exact-secret' ]) ];
push @r, [ 200, post('/to-named/v1/chat/completions', [ Authorization => 'Bearer named-secret' ]) ];
push @r, [ 200, post('/limit/v1/chat/completions', [ Authorization => 'Bearer limit-secret' ]) ];
push @r, [ 405, http_request(GET => '/limit/v1/models', [ Authorization => 'Bearer limit-secret' ]) ];
push @r, [ 200, post('/if/v1/chat/completions', [ 'api-key' => 'if-secret' ]) ];
push @r, [ 200, post('/syslog/v1/chat/completions', [ Authorization => 'Bearer syslog-secret' ]) ];

for my $i (0 .. $#r) {
    my ($want, $resp) = @{ $r[$i] };
    is $resp->{status}, $want, "request $i: status $want" or diag $resp->{error} // $resp->{body};
}

# the syslog lines of the last requests may still be on their way
wait_for(sub { -s $syslog_file && _slurp($syslog_file) =~ /syslog-secret|locsys.*\[redacted\]/ },
    what => 'the location syslog lines');

is_deeply stop_nginx(), [], 'nginx stopped cleanly';
Time::HiRes::sleep(0.2);

my %log = map { (/([^\/]+)\z/)[0] => _slurp($_) } glob("$logs/*"), $syslog_file;

# no secret anywhere, in any file nginx wrote
for my $file (sort keys %log) {
    my @found = grep { index($log{$file}, $_) >= 0 } @secrets;
    push @found, 'a run of the long key' if $log{$file} =~ /L{20}|T{20}/;
    is "@found", '', "$file: no secret";
}

# ... while the debug lines are there, redacted
sub has {
    my ($file, $re, $what) = @_;
    like $log{$file} // '', $re, "$file: $what";
}
my $syslog = 'syslog.txt';

has 'server.log', qr/\[debug\] .*http header: "Authorization: \[redacted\]"$/m, 'Authorization header dump';
has 'server.log', qr/http header: "x-api-key: \[redacted\]"$/m, 'x-api-key header dump';
has 'server.log', qr/http header: "Host: localhost"$/m, 'other headers untouched';
has 'server.log', qr/client sent invalid header line: "Authorization: \[redacted\]" while reading/,
    'a refused header line (NUL in the value)';
has 'server.log', qr/http header: "Authorization: \[redacted\]\n/, 'a line cut inside a long value';
has 'server.log', qr/client sent too long header line: "Authorization: \[redacted\]" while reading/,
    'a header line too long';
has 'error.log', qr/http header: "AUTHORIZATION: \[redacted\]"$/m, 'upper case';
has 'error.log', qr/http header: "X-Api-Key: \[redacted\]"$/m, 'mixed case';
has 'error.log', qr/http header: "Proxy-Authorization: \[redacted\]"$/m, 'Proxy-Authorization';
has 'error.log', qr/http header: "X-GOOG-API-KEY: \[redacted\]"$/m, 'x-goog-api-key';
has 'error.log', qr/http header: "Api-Key: \[redacted\]"$/m, 'api-key';
has 'error.log', qr/client sent invalid header line: "x_api_key: \[redacted\]" while reading/,
    'an ignored header line (underscores)';
has 'error.log', qr/client sent invalid header line: "Authorization\(x\): \[redacted\]" while reading/,
    'an ignored header line (a bad name)';
has 'error.log', qr/http header: "x-api-key: \[redacted\]"$/m, "the provider's x-api-key, at the mock";
has 'error.log', qr/http header: "Authorization: \[redacted\]"$/m, "the provider's key, at the mock";
has 'location.log', qr/http proxy header:\n"POST .*\r\nAuthorization: \[redacted\]\r\n/s,
    "proxy's request dump (conductor_usage pass-through)";
has $_, qr/\r\n(?i:authorization|x-api-key|x-goog-api-key|api-key): \[redacted\]\r\n/, 'proxy dump'
    for qw(nested.log regex.log exact.log named.log limit.log if.log);
has $syslog, qr/mainsys: .*http header: "Authorization: \[redacted\]"/, 'main syslog';
has $syslog, qr/locsys: .*Authorization: \[redacted\]/, "a location's syslog";
has 'limit.log', qr/\[debug\]/, 'limit_except logs where its location does';

# ------------------------------------------------------------------ main
# error_log lines after http{}: a file whose level is above the first
# log's (nginx swaps it into the head of the chain) and a syslog, both
# added after the module's postconfiguration; the module looks again once
# the configuration is done.
{
    my $dir = "$env->{TEST_NGINX_SERVROOT}/after";
    mkdir $dir;
    mkdir "$dir/logs";
    unlink glob "$dir/logs/*";
    truncate $syslog_file, 0;    # the listener appends to it
    my $nginx  = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
    my $module = $ENV{TEST_NGINX_MODULE} // "$env->{TEST_NGINX_ROOT}/build/ngx_http_conductor_module.so";
    my $user   = $> == 0 ? 'user ' . getpwuid($<) . ';' : '';
    open my $fh, '>', "$dir/nginx.conf" or die "$dir/nginx.conf: $!\n";
    print {$fh} <<"CONF";
load_module $module;
$user
daemon on;
master_process on;
worker_processes 1;
pid logs/nginx.pid;
error_log logs/first.log crit;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/client_body_temp;
    server {
        listen 127.0.0.1:$main_port;
        location / { return 204; }
    }
}
error_log logs/after.log debug;
error_log syslog:server=127.0.0.1:$syslog_port,tag=after debug;
CONF
    close $fh;

    is system($nginx, '-p', "$dir/", '-c', "$dir/nginx.conf"), 0, 'after: nginx starts';
    my $pid;
    wait_for(sub { ($pid) = _slurp("$dir/logs/nginx.pid") =~ /(\d+)/; $pid }, what => 'the pid file');
    my $resp;
    wait_for(sub {
        $resp = http_request(GET => '/', [ Authorization => 'Bearer after-secret-1',
            x_api_key => 'after-secret-2' ], undef, port => $main_port);
        ($resp->{status} // 0) == 204;
    }, what => 'an answer');
    is $resp->{status}, 204, 'after: answered';
    wait_for(sub { _slurp($syslog_file) =~ /after: .*\[info\]/ }, what => 'its syslog lines');
    kill 'QUIT', $pid if $pid;
    wait_for(sub { !kill 0, $pid }, what => 'nginx to exit') if $pid;

    my $after  = _slurp("$dir/logs/after.log");
    my $sys    = _slurp($syslog_file);
    for ([ 'after.log', $after ], [ 'syslog', $sys ], [ 'first.log', _slurp("$dir/logs/first.log") ]) {
        my ($what, $text) = @$_;
        unlike $text, qr/after-secret/, "after: $what: no secret";
        unlike $text, qr/\[(?:alert|crit|emerg)\]|exited on signal/, "after: $what: no alert, no crash";
    }
    like $after, qr/http header: "Authorization: \[redacted\]"$/m, 'after: the file has the header, redacted';
    like $after, qr/client sent invalid header line: "x_api_key: \[redacted\]"/, 'after: the info line';
    like $sys, qr/after: .*http header: "Authorization: \[redacted\]"/, 'after: syslog has it, redacted';
}

sub _slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    local $/;
    return scalar <$fh> // '';
}

done_testing();
