# The usage log shipped to a collector with nginx's own syslog writer, as
# README's "Shipping the usage log" says: `access_log
# syslog:server=127.0.0.1:PORT,tag=conductor conductor_json;` with the
# shipped conf/conductor_log.conf. A UDP listener here receives one
# datagram per request; each is an RFC 3164 line (priority local7.info,
# the tag) whose message parses as JSON with the request's client, model,
# provider, key name, tokens and cost: a chat, a stream and an Anthropic
# message through a client key, and a 401 (empty usage). No key, client or
# provider, is in any datagram.

use strict;
use warnings;

use FindBin ();
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use lib "$FindBin::Bin/lib";

use Test::Conductor;
use Test::More;

my $env = harness_env();

# the collector: a UDP socket on a port the kernel picks, on loopback
my $udp = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'udp')
    or die "udp socket: $!\n";
my $uport = $udp->sockport;

my $MOCK = $env->{TEST_NGINX_MOCK_PORT};
start_nginx(
    http_config => <<"HTTP",
    conductor_zone conductor:1m;
    include $env->{TEST_NGINX_CONF_DIR}/conductor_log.conf;
    access_log syslog:server=127.0.0.1:$uport,tag=conductor conductor_json;
    conductor_provider oai {
        url http://127.0.0.1:$MOCK/v1;
        key k1 "oai-secret-1;prompt_tokens=30;completion_tokens=7";
        price m-chat input=1 output=2;
    }
    conductor_provider ant {
        url http://127.0.0.1:$MOCK/v1;
        api anthropic;
        key a1 "ant-secret-1;prompt_tokens=50;completion_tokens=9";
        price m-claude input=3 output=15;
    }
    conductor_model chat   { oai m-chat; }
    conductor_model claude { ant m-claude; }
    conductor_client team { key sk-team-secret; }
    upstream conductor_backend { conductor_balancer; }
HTTP
    config => route_location('/v1/', auth => 1),
);

# the datagrams received within a few seconds, until $n of them
sub receive {
    my ($n) = @_;
    my $sel = IO::Select->new($udp);
    my @got;
    my $deadline = time + 10;
    while (@got < $n && time < $deadline) {
        next unless $sel->can_read(0.5);
        my $buf;
        $udp->recv($buf, 65535) // next;
        push @got, $buf;
    }
    return @got;
}

# <PRI>Mmm dd hh:mm:ss HOST TAG: MSG
sub syslog_line {
    my ($d) = @_;
    my ($pri, $time, $host, $tag, $msg) =
        $d =~ /^<(\d+)>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (\S+) (\w+): (.*)\z/s or return;
    return { pri => $pri, time => $time, host => $host, tag => $tag, msg => $msg,
             json => eval { JSON::PP::decode_json($msg) } };
}

my %team = (Authorization => 'Bearer sk-team-secret', 'Content-Type' => 'application/json');
my $r1 = http_request(POST => '/v1/chat/completions', \%team,
    '{"model":"chat","messages":[{"role":"user","content":"hi"}]}');
my $r2 = http_request(POST => '/v1/chat/completions', \%team,
    '{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}');
my $r3 = http_request(POST => '/v1/messages',
    { 'x-api-key' => 'sk-team-secret', 'anthropic-version' => '2023-06-01' },
    '{"model":"claude","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}');
my $r4 = http_request(POST => '/v1/chat/completions', { Authorization => 'Bearer not-a-key' },
    '{"model":"chat","messages":[]}');
is_deeply [ map { $_->{status} } $r1, $r2, $r3, $r4 ], [200, 200, 200, 401], 'the four answers';

my @got = receive(4);
note "a datagram: $got[0]" if @got;
is scalar @got, 4, 'four datagrams, one a request';
my @lines = map { syslog_line($_) } @got;
is scalar(grep { $_ && $_->{json} } @lines), 4, 'each an RFC 3164 line whose message is JSON'
    or diag explain \@got;

for (grep {$_} @lines) {
    is $_->{tag}, 'conductor', 'the tag';
    is $_->{pri}, 23 * 8 + 6, 'local7.info (nginx\'s default facility and severity)';
}

my @rec = map { $_->{json} } grep { $_ && $_->{json} } @lines;
my ($chat, $stream) = grep { $_->{model} eq 'chat' && $_->{status} eq '200' } @rec;
my ($msg)  = grep { $_->{model} eq 'claude' } @rec;
my ($deny) = grep { $_->{status} eq '401' } @rec;

# 30 in at 1 USD and 7 out at 2 USD a million: 0.000044
for ([chat => $chat], [stream => $stream]) {
    my ($what, $u) = @$_;
    is_deeply $u && [ @$u{qw(client model provider key upstream_model prompt_tokens completion_tokens total_tokens cost_usd usage_source)} ],
        [qw(team chat oai k1 m-chat 30 7 37 0.000044 response)], "$what: client, model, provider, key, tokens, cost";
}
# 50 in at 3 USD and 9 out at 15 USD a million: 0.000285
is_deeply $msg && [ @$msg{qw(client model provider key prompt_tokens completion_tokens total_tokens cost_usd uri)} ],
    [qw(team claude ant a1 50 9 59 0.000285 /v1/messages)], 'the Anthropic message';
is_deeply $deny && [ @$deny{qw(client model prompt_tokens cost_usd)} ], ['', '', '', ''], 'the 401: no client, no usage';
like $_->{request_id}, qr/^[0-9a-f]{32}$/, 'a request id' for @rec;

my $all = join "\n", @got;
unlike $all, qr/secret|not-a-key/, 'no key (provider or client) in any datagram';

my $problems = stop_nginx();
is_deeply $problems, [], 'nginx stopped cleanly' or diag join "\n", @$problems;

done_testing();
