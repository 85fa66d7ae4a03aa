# Active health checks skip an unhealthy provider and bring it back;
# counters survive a reload; a zone too small is refused, not corrupted.
use lib 't/lib';
use Test::Conductor;
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();

my $env = harness_env();

# poll the error log (each step is a real event; the guard only stops a hang)
sub wait_log {
    my ($re) = @_;
    for (1 .. 300) {
        return 1 if error_log_since_start() =~ $re;
        select undef, undef, undef, 0.1;
    }
    return 0;
}

sub chat {
    return http_request(POST => '/v1/chat/completions', {}, '{"model":"m","messages":[]}');
}

my $server = <<"SERVER";
    location /v1/ { conductor_route; include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf; }
    location = /conductor/status { conductor_status; }
SERVER

# ---- health checks
{
    start_nginx(
        http_config => <<"HTTP",
    conductor_zone conductor:1m;
    conductor_provider a {
        url http://127.0.0.1:$env->{TEST_NGINX_DEAD_PORT}/v1;
        health_check interval=200ms timeout=1s uri=/models fails=1 passes=1;
        key ka s;
    }
    conductor_provider b { url http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1; key kb s; }
    conductor_model m { a am; b bm; }
    conductor_strategy sequential;
    upstream conductor_backend { conductor_balancer; }
HTTP
        config => $server,
    );

    ok wait_log(qr/provider "a" is unhealthy/), 'the dead provider is found unhealthy';
    my $st = status_report();
    my ($pa) = grep { $_->{name} eq 'a' } @{ $st->{providers} };
    is $pa->{healthy}, JSON::PP::false, 'status says so';

    mock_clear();
    my $r = chat();
    is $r->{status}, 200, 'served';
    is $r->{headers}{'x-conductor-provider'}, 'b', 'by the healthy provider';
    is $r->{headers}{'x-conductor-attempts'}, 1, 'the unhealthy one was not even tried';

    # the provider comes back: something answers on its port
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $env->{TEST_NGINX_DEAD_PORT}, Listen => 16, ReuseAddr => 1)
        or die "listen: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        # the harness's END and signal handlers are the parent's business
        $SIG{$_} = 'DEFAULT' for qw(TERM INT HUP);
        while (my $c = $listen->accept) {
            my $req = '';
            while (sysread $c, my $buf, 65536) {
                $req .= $buf;
                last if $req =~ /\r\n\r\n/ && ($req !~ /Content-Length: (\d+)/i
                    || length($req) - index($req, "\r\n\r\n") - 4 >= $1);
            }
            my $body = '{"id":"x","object":"chat.completion","created":1,"model":"am",'
                . '"choices":[{"index":0,"message":{"role":"assistant","content":"back"},'
                . '"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}';
            print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
            close $c;
        }
        POSIX::_exit(0);
    }
    close $listen;

    ok wait_log(qr/provider "a" is healthy again/), 'found healthy again';
    $r = chat();
    is $r->{headers}{'x-conductor-provider'}, 'a', 'and used again';
    is $r->{json}{choices}[0]{message}{content}, 'back', 'its answer';

    kill 'KILL', $pid;
    waitpid $pid, 0;
    is_deeply stop_nginx(), [], 'nginx stopped cleanly';
}

# ---- counters survive a reload (valgrind runs nginx with master_process
# off, where nginx itself does not serve after a reload: not there)
unless ($ENV{TEST_NGINX_USE_VALGRIND}) {
    start_nginx(
        http_config => <<"HTTP",
    conductor_zone conductor:1m;
    conductor_provider p { url http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1; key k s rpm=3; }
    conductor_model m { p pm; }
    upstream conductor_backend { conductor_balancer; }
HTTP
        config => $server,
    );

    chat() for 1 .. 3;
    my $before = status_report();

    open my $f, '<', "$env->{TEST_NGINX_SERVROOT}/logs/nginx.pid" or die $!;
    chomp(my $master = <$f>);
    kill 'HUP', $master;
    ok wait_log(qr/reconfiguring/), 'reloaded';

    # the new configuration answers once it is in place
    my $after = wait_for(sub { status_report() }, timeout => 30, what => 'the status after the reload');

    my ($kb) = @{ $before->{providers}[0]{keys} };
    my ($ka) = @{ $after->{providers}[0]{keys} };
    is $ka->{requests}, 3, 'requests kept';
    is_deeply $ka->{tokens}, $kb->{tokens}, 'tokens kept';
    is $ka->{limits}{rpm}{used}, 3, 'the minute window kept';
    is chat()->{status}, 429, 'and still enforced after the reload';
    is_deeply stop_nginx(), [], 'nginx stopped cleanly';
}

run_tests();

__DATA__

=== TEST 1: a zone too small for the keys is refused with a clear message
--- http_config eval
"conductor_zone tiny:32k;\n"
. "conductor_provider p { url http://127.0.0.1:1/v1;\n"
. join('', map { "key k$_ s$_;\n" } 1 .. 200)
. "}\nupstream conductor_backend { conductor_balancer; }\n"
--- config
--- must_die
--- error_log
conductor zone "tiny" (32768 bytes) is too small for 200 keys
