# The configurations shipped in conf/ work as they are: conductor.conf runs
# with no key (the embedded mock), conductor-seed.conf passes nginx -t.
use lib 't/lib';
use Test::Conductor;
use File::Path ();
use JSON::PP ();

my $env = harness_env();
my $root = $env->{TEST_NGINX_ROOT};
my $module = $ENV{TEST_NGINX_MODULE} // "$root/build/ngx_http_conductor_module.so";
my $prefix = "$env->{TEST_NGINX_SERVROOT}-shipped";
# this file never starts the harness's nginx or mock: their two ports, found
# free for this file when it began, are the gateway's and the embedded
# mock's (ports merely near them were never checked: another test's
# server, or another test's client of a "dead" port, could be there)
my ($gw, $mock) = ($env->{TEST_NGINX_PORT}, $env->{TEST_NGINX_MOCK_PORT});

File::Path::remove_tree($prefix);
File::Path::make_path("$prefix/conf", "$prefix/logs");

# the shipped files, with only the module path and the ports changed
for my $f (glob "$root/conf/*.conf") {
    open my $in, '<', $f or die $!;
    my $text = do { local $/; <$in> };
    $text =~ s{^load_module \S+;}{load_module $module;}m;
    $text =~ s{127\.0\.0\.1:8000}{127.0.0.1:$gw}g;
    $text =~ s{127\.0\.0\.1:8001}{127.0.0.1:$mock}g;
    (my $name = $f) =~ s{.*/}{};
    open my $out, '>', "$prefix/conf/$name" or die $!;
    print $out $text;
}

sub nginx_run { system('nginx', '-p', "$prefix/", '-c', @_) }

is nginx_run('conf/conductor.conf'), 0, 'conductor.conf starts';
for (1 .. 100) {
    last if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$gw");
    select undef, undef, undef, 0.05;
}

my $r = http_request(POST => '/v1/chat/completions', {},
    '{"model":"fast","messages":[{"role":"user","content":"hi"}]}', port => $gw);
is $r->{status}, 200, 'chat through the embedded mock';
like $r->{json}{choices}[0]{message}{content}, qr/^Hello from mock-small/, 'rewritten to the provider model';

$r = http_request(POST => '/v1/chat/completions', {},
    '{"model":"fast","stream":true,"messages":[]}', port => $gw);
like $r->{body}, qr/data: \[DONE\]\n\n\z/, 'a stream';
unlike $r->{body}, qr/"usage":\{/, 'no usage chunk the client did not ask for';

$r = http_request(POST => '/v1/messages', { 'anthropic-version' => '2023-06-01' },
    '{"model":"claude","max_tokens":8,"messages":[]}', port => $gw);
is $r->{json}{type}, 'message', 'anthropic';

# This nginx is not the harness's and runs several workers. A request is
# counted (and logged) in its LOG phase, which nginx runs when it closes the
# connection; for a request with a body that is a lingering close: nginx
# shuts its side down (the client sees the end of the answer), then waits
# for the client's close, for up to lingering_timeout (5 s, as long as the
# harness's default wait). So a status read, served by any worker, can come
# before the last request is counted (about one read in seven did, on a
# quiet machine): first the usage log (written in the LOG phase, right
# before the module counts), then the counters, each awaited well past 5 s.
my @records;
wait_for(sub {
    open my $log, '<', "$prefix/logs/usage.log" or return 0;
    @records = grep { $_->{uri} =~ m{^/v1/} } map { JSON::PP::decode_json($_) } <$log>;
    return @records >= 3;
}, timeout => 15, what => 'the usage log records of the three requests');
is_deeply [ sort map { $_->{model} } @records ], [qw(claude fast fast)], 'the usage log records';

my $st = status_wait(sub { ($_->{totals}{requests} // 0) >= 3 }, port => $gw, timeout => 15);
is $st->{totals}{requests}, 3, 'status counts them'
    or diag 'per provider: ' . join(' ', map { "$_->{name}=$_->{requests}" } @{ $st->{providers} || [] })
        . '; usage log: ' . join(' ', map { "$_->{uri}:$_->{model}" } @records);
cmp_ok $st->{totals}{cost_usd}, '>', 0, 'priced';

open my $pidf, '<', "$prefix/logs/nginx.pid" or die $!;
chomp(my $pid = <$pidf>);
kill 'QUIT', $pid;
for (1 .. 200) { last unless kill 0, $pid; select undef, undef, undef, 0.05 }
ok !kill(0, $pid), 'stopped';

# the seed's providers live on the internet, which a test never reaches:
# nginx -t with their keys, each provider pointed at an unused address
{
    open my $in, '<', "$prefix/conf/conductor-seed.conf" or die $!;
    my $text = do { local $/; <$in> };
    $text =~ s{(url\s+https://[^;]+;)}{$1 address 127.0.0.1:9;}g;
    open my $out, '>', "$prefix/conf/seed-test.conf" or die $!;
    print $out $text;
    close $out;

    local @ENV{qw(CEREBRAS_KEY_1 CEREBRAS_KEY_2 NVIDIA_API_KEY)} = qw(a b c);
    is nginx_run('conf/seed-test.conf', '-t', '-q'), 0, 'conductor-seed.conf passes nginx -t';
}

File::Path::remove_tree($prefix);
done_testing();
