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
my ($gw, $mock) = ($env->{TEST_NGINX_MOCK_PORT3} + 200, $env->{TEST_NGINX_MOCK_PORT3} + 201);

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

# this nginx is not the harness's and runs several workers: a request is
# counted and logged by its worker after the answer, maybe after a next
# request was served by another one; so both are awaited
my $st = status_wait(sub { ($_->{totals}{requests} // 0) >= 3 }, port => $gw);
is $st->{totals}{requests}, 3, 'status counts them';
cmp_ok $st->{totals}{cost_usd}, '>', 0, 'priced';

my @records;
wait_for(sub {
    open my $log, '<', "$prefix/logs/usage.log" or return 0;
    @records = grep { $_->{uri} =~ m{^/v1/} } map { JSON::PP::decode_json($_) } <$log>;
    return @records >= 3;
}, what => 'the usage log records of the three requests');
is_deeply [ sort map { $_->{model} } @records ], [qw(claude fast fast)], 'the usage log records';

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
