# conductor_history: the ring of recent requests and the per-minute buckets
# in the zone, served by conductor_status (?recent=N, ?history=DURATION).
# After a mix of requests (JSON, a stream, a failover with two attempts, a
# 429 of the gateway's own, an unpriced model, a client key behind
# conductor_auth, errors, a messages request, a long unknown alias) every
# field of every record is checked against what the answers said, newest
# first; ?recent is bounded by the ring; each series' buckets are what the
# records add up to, minute by minute; no secret is anywhere; bad values
# answer 400. Then: a reload keeps the history (and one with other sizes
# keeps what fits), two workers under a burst lose no request and tear no
# record, and a minute turns over once, for real.
use lib 't/lib';
use Test::Conductor;
use JSON::PP ();
use POSIX ();
use Time::HiRes ();

my $env   = harness_env();
my $MOCK  = $env->{TEST_NGINX_MOCK_PORT};
my $MOCK3 = $env->{TEST_NGINX_MOCK_PORT3};
my $VALGRIND = $ENV{TEST_NGINX_USE_VALGRIND};

my %SECRET = (
    a1 => 'sk-alpha-hist-0001', b1 => 'sk-bad-hist-0002', l1 => 'sk-lim-hist-0003',
    c1 => 'sk-claude-hist-0004', team_a => 'sk-team-a-client-key-77', team_b => 'sk-team-b-client-key-88',
);

my $HTTP = <<"HTTP";
    conductor_zone conductor:2m;
    conductor_history window=1h recent=20;
    conductor_unknown_models reject;
    conductor_provider alpha {
        url http://127.0.0.1:$MOCK/v1;
        key a1 "$SECRET{a1};prompt_tokens=100;completion_tokens=20;cached_tokens=30";
        price m-priced input=1 output=2 cached_input=0.5;
    }
    conductor_provider bad {
        url http://127.0.0.1:$MOCK/v1;
        key b1 "$SECRET{b1};status=503";
    }
    conductor_provider lim {
        url http://127.0.0.1:$MOCK/v1;
        key l1 "$SECRET{l1};prompt_tokens=5;completion_tokens=4" rpm=1;
    }
    conductor_provider claude {
        url http://127.0.0.1:$MOCK3;
        api anthropic;
        key c1 "$SECRET{c1};prompt_tokens=40;completion_tokens=8";
        price claude-mock input=3 output=15;
    }
    conductor_model priced { alpha m-priced; }
    conductor_model free { alpha m-free; }
    conductor_model fo { bad m-fo; alpha m-priced priority=2; }
    conductor_model limited { lim m-lim; }
    conductor_model broken { bad m-broken; }
    conductor_model claude { claude claude-mock; }
    conductor_client team-a { key $SECRET{team_a}; }
    conductor_client team-b { key $SECRET{team_b}; models free; }
    upstream conductor_backend { conductor_balancer; }
HTTP

my $SERVER = <<"SERVER";
    location /v1/ {
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location /auth/v1/ {
        conductor_auth on;
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location = /conductor/status {
        conductor_status;
        allow 127.0.0.1;
        deny all;
    }
SERVER

start_nginx(http_config => $HTTP, config => $SERVER);

# prices, USD per token
my %PRICE = (
    'm-priced'    => { input => 1e-6, output => 2e-6, cached => 0.5e-6 },
    'claude-mock' => { input => 3e-6, output => 15e-6, cached => 3e-6 },
);

my @sent;    # what each request should have left in the ring, oldest first

# one request; %x: what its record says besides what the answer tells
sub send_one {
    my ($path, $headers, $body, %x) = @_;
    my $t0 = Time::HiRes::time();
    my $r = http_request(POST => $path, $headers, $body);
    my $t1 = Time::HiRes::time();
    my $json = JSON::PP->new->decode($body);
    my %e = (t0 => $t0, t1 => $t1, status => $r->{status}, stream => $json->{stream} ? 1 : 0, %x);
    $e{provider} //= $r->{headers}{'x-conductor-provider'};
    $e{key}      //= $r->{headers}{'x-conductor-key'};
    $e{attempts} //= $r->{headers}{'x-conductor-attempts'} // 0;

    # the usage the answer reports
    my $u;
    if ($e{stream}) {
        for my $ev (@{ $r->{sse} || [] }) {
            my $j = $ev->{json} or next;
            $u = $j->{usage} if $j->{usage};
        }
    }
    else {
        $u = $r->{json} && $r->{json}{usage};
    }
    if (($r->{status} // 0) == 200 && $u) {
        if (exists $u->{input_tokens}) {    # Anthropic: prompt counts every input token
            $e{prompt} = $u->{input_tokens} + ($u->{cache_read_input_tokens} // 0)
                + ($u->{cache_creation_input_tokens} // 0);
            $e{cached} = $u->{cache_read_input_tokens} // 0;
            $e{completion} = $u->{output_tokens};
        }
        else {
            $e{prompt} = $u->{prompt_tokens};
            $e{completion} = $u->{completion_tokens};
            $e{cached} = ($u->{prompt_tokens_details} // {})->{cached_tokens} // 0;
        }
        $e{source} = 'response';
        if (my $p = $PRICE{ $e{upstream_model} // '' }) {
            $e{cost} = ($e{prompt} - $e{cached}) * $p->{input} + $e{cached} * $p->{cached}
                + $e{completion} * $p->{output};
        }
    }
    else {
        @e{qw(prompt completion cached)} = (0, 0, 0);
        $e{source} = undef;
        # an error of a priced model cost 0; of an unpriced one, nothing known
        $e{cost} = $PRICE{ $e{upstream_model} // '' } ? 0 : undef;
    }
    push @sent, \%e;
    return $r;
}

my $CHAT = '/v1/chat/completions';
sub chat_body { my ($m, %o) = @_; return JSON::PP->new->canonical->encode({ model => $m, messages => [{ role => 'user', content => 'hi' }], %o }) }

# ---------------------------------------------------------------- the mix

my $r = send_one($CHAT, {}, chat_body('priced'), model => 'priced', upstream_model => 'm-priced', endpoint => 'chat');
is $r->{status}, 200, 'priced: 200';
$r = send_one($CHAT, {}, chat_body('priced', stream => JSON::PP::true(),
        stream_options => { include_usage => JSON::PP::true() }),
    model => 'priced', upstream_model => 'm-priced', endpoint => 'chat');
is $r->{status}, 200, 'priced stream: 200';
ok scalar(grep { $_->{json} && $_->{json}{usage} } @{ $r->{sse} || [] }), '... with its usage';
$r = send_one($CHAT, {}, chat_body('fo'), model => 'fo', upstream_model => 'm-priced', endpoint => 'chat');
is $r->{status}, 200, 'failover: 200';
is $r->{headers}{'x-conductor-attempts'}, 2, '... after 2 attempts';
is $r->{headers}{'x-conductor-provider'}, 'alpha', '... the second provider answered';
$r = send_one($CHAT, {}, chat_body('limited'), model => 'limited', upstream_model => 'm-lim', endpoint => 'chat');
is $r->{status}, 200, 'limited: the one request a minute';
$r = send_one($CHAT, {}, chat_body('limited'), model => 'limited', upstream_model => undef, endpoint => 'chat',
    provider => undef, key => undef, ttfb => 'null');
is $r->{status}, 429, 'limited again: 429 of the gateway, nothing sent';
$r = send_one($CHAT, {}, chat_body('free'), model => 'free', upstream_model => 'm-free', endpoint => 'chat');
is $r->{status}, 200, 'an unpriced model: 200';
# (no X-Conductor-* header for a client that is not admin: what happened is known)
$r = send_one('/auth/v1/chat/completions', { Authorization => "Bearer $SECRET{team_a}" }, chat_body('priced'),
    model => 'priced', upstream_model => 'm-priced', endpoint => 'chat', client => 'team-a',
    provider => 'alpha', key => 'a1', attempts => 1);
is $r->{status}, 200, 'a client key behind conductor_auth: 200';
$r = send_one('/auth/v1/chat/completions', {}, chat_body('priced'),
    model => undef, upstream_model => undef, endpoint => 'chat', provider => undef, key => undef, ttfb => 'null');
is $r->{status}, 401, 'no client key: 401';
$r = send_one('/auth/v1/chat/completions', { 'x-api-key' => $SECRET{team_b} }, chat_body('priced'),
    model => 'priced', upstream_model => undef, endpoint => 'chat', client => 'team-b',
    provider => undef, key => undef, ttfb => 'null');
is $r->{status}, 403, 'a model the client may not use: 403';
$r = send_one($CHAT, {}, chat_body('broken'), model => 'broken', upstream_model => 'm-broken', endpoint => 'chat');
is $r->{status}, 503, 'the one provider failing: its 503 to the client';
$r = send_one('/v1/messages', { 'anthropic-version' => '2023-06-01' },
    JSON::PP->new->canonical->encode({ model => 'claude', max_tokens => 64, messages => [{ role => 'user', content => 'hi' }] }),
    model => 'claude', upstream_model => 'claude-mock', endpoint => 'messages');
is $r->{status}, 200, 'messages: 200';
my $long = "\x{e9}" x 50;    # 100 bytes of UTF-8: cut to 64, on a character
my $long_utf8 = $long; utf8::encode($long_utf8);
$r = send_one($CHAT, {}, qq{{"model":"$long_utf8","messages":[]}},
    model => "\x{e9}" x 32, upstream_model => undef, endpoint => 'chat', provider => undef, key => undef,
    ttfb => 'null');
is $r->{status}, 404, 'an unknown model (a long name of 2-byte characters): 404';

my $N = @sent;

# ---------------------------------------------------------------- recent

sub status_json {
    my ($query) = @_;
    my $r = http_request(GET => "/conductor/status$query");
    return $r->{status} == 200 ? $r->{json} : undef;
}

my $s = status_json('?recent=100');
ok $s && ref $s->{recent} eq 'ARRAY', '?recent=100: a "recent" array' or BAIL_OUT('no recent array');
ok !exists $s->{history}, '... and no history (not asked)';
is scalar @{ $s->{recent} }, $N, "all $N requests, the ring holds 20";

my @KEYS = sort qw(time client model provider key upstream_model endpoint stream status attempts tokens
    usage_source cost_usd ttfb_ms duration_ms);

sub check_record {
    my ($q, $e, $what) = @_;
    my @f;
    push @f, 'members: ' . join(',', sort keys %$q) unless join(',', sort keys %$q) eq join(',', @KEYS);
    push @f, "time $q->{time} not in [$e->{t0}, $e->{t1}]"
        unless $q->{time} >= int($e->{t0} * 1000) / 1000 && $q->{time} <= $e->{t1} + 0.001;
    push @f, "time $q->{time}: not in ms" unless abs($q->{time} * 1000 - int($q->{time} * 1000 + 0.5)) < 0.01;
    for my $k (qw(client model provider key upstream_model endpoint)) {
        my $want = $e->{$k};
        push @f, "$k: " . ($q->{$k} // 'null') . ', expected ' . ($want // 'null')
            unless (defined $want ? defined $q->{$k} && $q->{$k} eq $want : !defined $q->{$k});
    }
    push @f, "stream: $q->{stream}" unless ($q->{stream} ? 1 : 0) == $e->{stream} && JSON::PP::is_bool($q->{stream});
    push @f, "status $q->{status}, the client got $e->{status}" unless $q->{status} == $e->{status};
    push @f, "attempts $q->{attempts}, expected $e->{attempts}" unless $q->{attempts} == $e->{attempts};
    my $t = $q->{tokens};
    push @f, 'tokens ' . JSON::PP->new->canonical->encode($t) . ", expected $e->{prompt}/$e->{completion}/$e->{cached}"
        unless $t->{prompt} == $e->{prompt} && $t->{completion} == $e->{completion} && $t->{cached} == $e->{cached}
            && $t->{total} == $e->{prompt} + $e->{completion};
    push @f, 'usage_source ' . ($q->{usage_source} // 'null')
        unless (defined $e->{source} ? ($q->{usage_source} // '') eq $e->{source} : !defined $q->{usage_source});
    push @f, 'cost_usd ' . ($q->{cost_usd} // 'null') . ', expected ' . ($e->{cost} // 'null')
        unless (defined $e->{cost} ? defined $q->{cost_usd} && abs($q->{cost_usd} - $e->{cost}) < 1e-12
                                   : !defined $q->{cost_usd});
    my $elapsed = ($e->{t1} - $e->{t0}) * 1000 + 2;
    push @f, "duration_ms $q->{duration_ms} (the client waited $elapsed ms)"
        unless $q->{duration_ms} =~ /^\d+$/ && $q->{duration_ms} <= $elapsed;
    if (($e->{ttfb} // '') eq 'null') {
        push @f, "ttfb_ms $q->{ttfb_ms}, expected null" if defined $q->{ttfb_ms};
    }
    else {
        push @f, 'ttfb_ms ' . ($q->{ttfb_ms} // 'null') . " > duration $q->{duration_ms}"
            unless defined $q->{ttfb_ms} && $q->{ttfb_ms} =~ /^\d+$/ && $q->{ttfb_ms} <= $q->{duration_ms};
    }
    ok !@f, $what or diag join "\n", @f, JSON::PP->new->canonical->encode($q);
}

my @newest_first = reverse @sent;
for my $i (0 .. $N - 1) {
    check_record($s->{recent}[$i], $newest_first[$i], "record $i (newest first): "
        . "$newest_first[$i]{status} " . ($newest_first[$i]{model} // 'no model'));
}

is scalar @{ status_json('?recent=3')->{recent} }, 3, '?recent=3: three';
is_deeply status_json('?recent=3')->{recent}, [ @{ $s->{recent} }[0 .. 2] ], '... the three newest';
is_deeply status_json('?recent=0')->{recent}, [], '?recent=0: none';

# ---------------------------------------------------------------- history

# the minute a request is counted in: when it ended (its start plus duration)
sub minute_of { my ($q) = @_; return int((int($q->{time} * 1000 + 0.5) + $q->{duration_ms}) / 60000) }

# expected arrays of a series, from records, for a history ending at $end
sub expected_series {
    my ($recs, $end, $minutes) = @_;
    my %a = map { $_ => [ (0) x $minutes ] } qw(requests tokens cost_usd errors);
    for my $q (@$recs) {
        my $i = $minutes - 1 - ($end / 60 - minute_of($q));
        next if $i < 0 || $i >= $minutes;
        $a{requests}[$i]++;
        $a{tokens}[$i] += $q->{tokens}{total};
        $a{cost_usd}[$i] += $q->{cost_usd} // 0;
        $a{errors}[$i]++ if $q->{status} >= 400;
    }
    return \%a;
}

sub same_series {
    my ($got, $want, $what) = @_;
    my @f;
    for my $k (qw(requests tokens errors)) {
        push @f, "$k: [@{ $got->{$k} // [] }], expected [@{ $want->{$k} }]"
            unless join(',', @{ $got->{$k} // [] }) eq join(',', @{ $want->{$k} });
    }
    my @c = @{ $got->{cost_usd} // [] };
    push @f, "cost_usd: [@c], expected [@{ $want->{cost_usd} }]"
        unless @c == @{ $want->{cost_usd} }
            && !grep { abs($c[$_] - $want->{cost_usd}[$_]) > 1e-12 } 0 .. $#c;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok !@f, $what or diag join "\n", @f;
}

# the whole history, checked against the records: every series, every minute
sub check_history {
    my ($h, $recs, $now, $minutes, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok $h && $h->{bucket_seconds} == 60 && $h->{minutes} == $minutes, "$what: $minutes buckets of 60 s"
        or return;
    is $h->{end}, POSIX::floor($now / 60) * 60, "$what: end is the start of the current minute";
    my $want = expected_series($recs, $h->{end}, $minutes);
    same_series($h->{total}, $want, "$what: total");
    for my $k (sort keys %{ $h->{total} }) {
        is scalar @{ $h->{total}{$k} }, $minutes, "$what: total $k has $minutes values";
    }
    my %by = (providers => 'provider', models => 'model', clients => 'client');
    for my $map (sort keys %by) {
        my %names = map { $_ => 1 } keys %{ $h->{$map} };
        $names{ $_->{ $by{$map} } } = 1 for grep { defined $_->{ $by{$map} } } @$recs;
        for my $name (sort keys %names) {
            my @mine = grep { ($_->{ $by{$map} } // '') eq $name } @$recs;
            # refused before its model was looked up (403, 404): no model's
            @mine = grep { $_->{status} != 403 && $_->{status} != 404 } @mine if $map eq 'models';
            next if !@mine && !$h->{$map}{$name};
            same_series($h->{$map}{$name}, expected_series(\@mine, $h->{end}, $minutes), "$what: $map $name");
        }
    }
    my %keys = map { $_ => 1 } keys %{ $h->{keys} };
    $keys{"$_->{provider}/$_->{key}"} = 1 for grep { defined $_->{key} } @$recs;
    for my $name (sort keys %keys) {
        my @mine = grep { defined $_->{key} && "$_->{provider}/$_->{key}" eq $name } @$recs;
        same_series($h->{keys}{$name}, expected_series(\@mine, $h->{end}, $minutes), "$what: key $name");
    }
}

$s = status_json('?recent=100&history=1h');
ok $s && $s->{history}, 'both at once: ?recent=100&history=1h';
is scalar @{ $s->{recent} }, $N, '... the records';
check_history($s->{history}, $s->{recent}, $s->{time}, 60, 'history=1h');

is_deeply [ sort keys %{ $s->{history}{providers} } ], [qw(alpha bad claude lim)], 'every provider has a series';
is_deeply [ sort keys %{ $s->{history}{keys} } ], [qw(alpha/a1 bad/b1 claude/c1 lim/l1)], 'every key, as PROVIDER/KEY';
is_deeply [ sort keys %{ $s->{history}{models} } ], [qw(broken claude fo free limited priced)],
    'every model (the unknown name has none: it was refused)';
is_deeply [ sort keys %{ $s->{history}{clients} } ], [qw(team-a team-b)], 'every client';
is $s->{history}{total}{requests}[-1] + ($s->{history}{total}{requests}[-2] // 0), $N,
    "the $N requests are in the last two minutes";
is scalar(grep { $_->{status} >= 400 } @{ $s->{recent} }), 5, 'five errors among them (429, 401, 403, 5xx, 404)';

my $h15 = status_json('?history=15m')->{history};
is $h15->{minutes}, 15, '?history=15m: 15 minutes';
is_deeply [ @{ $h15->{total}{requests} } ], [ @{ $s->{history}{total}{requests} }[45 .. 59] ], '... the last 15 of the hour'
    unless $h15->{end} != $s->{history}{end};
is status_json('?history=2h')->{history}{minutes}, 60, '?history=2h: the window is 1h, 60 minutes';
is status_json('?history=90s')->{history}{minutes}, 2, '?history=90s: 2 minutes';

# ---------------------------------------------------------------- bad values

for my $q ('recent=abc', 'recent=-1', 'recent=', 'recent=1e3', 'history=abc', 'history=0', 'history=',
           'history=-5m', 'recent=5&history=1x')
{
    my $b = http_request(GET => "/conductor/status?$q");
    is $b->{status}, 400, "?$q: 400";
    like $b->{headers}{'content-type'}, qr{^application/json}, '... JSON';
    ok $b->{json} && $b->{json}{error}{type} eq 'invalid_request_error' && $b->{json}{error}{message} =~ /\S/,
        '... an error with a message' or diag $b->{body};
}
my $prom = http_request(GET => '/conductor/status?format=prometheus&recent=abc&history=1h');
is $prom->{status}, 200, 'Prometheus ignores recent= and history=';
unlike $prom->{body}, qr/recent|history|upstream_model/, '... and has neither';

# ---------------------------------------------------------------- secrets

my $everything = http_request(GET => '/conductor/status?recent=1000&history=24h')->{body}
    . http_request(GET => '/conductor/status?format=html')->{body} . $prom->{body};
for my $name (sort keys %SECRET) {
    unlike $everything, qr/\Q$SECRET{$name}\E/, "the secret of $name is nowhere in the output";
}
unlike $everything, qr/sk-[a-z]+-(?:hist|client)/, 'nor any part of a key';

# ---------------------------------------------------------------- the ring

# more requests than the ring holds: only the newest 20
my $before = $N;
send_one($CHAT, {}, chat_body('free'), model => 'free', upstream_model => 'm-free', endpoint => 'chat')
    for 1 .. 21 - $N + 5;
my $all = status_json('?recent=1000&history=1h');
is scalar @{ $all->{recent} }, 20, '?recent=1000 after ' . scalar(@sent) . ' requests: the ring\'s 20';
@newest_first = reverse @sent;
check_record($all->{recent}[$_], $newest_first[$_], "ring record $_: the newest 20 of what was sent") for 0 .. 19;
is_deeply [ @{ $all->{recent} }[@sent - $before .. 19] ], [ @{ $s->{recent} }[0 .. 19 - (@sent - $before)] ],
    '... the older ones as they were';
my $sum = 0;
$sum += $_ for @{ $all->{history}{total}{requests} };
is $sum, scalar @sent, 'the history counts every request, the ring\'s and the older ones';

# ---------------------------------------------------------------- reload

sub workers {
    my $master = nginx_pid();
    my @w;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        my ($pid, $ppid) = $line =~ /^(\d+) \(.*\) \S (\d+)/s or next;
        push @w, $pid if $ppid == $master;
    }
    return sort { $a <=> $b } @w;
}

# HUP, then the new workers only (the old ones gone)
sub reload {
    my @old = workers();
    kill 'HUP', nginx_pid();
    return wait_for(sub {
        my @w = workers();
        my %old = map { $_ => 1 } @old;
        return @w && !grep { $old{$_} } @w;
    }, timeout => 30, what => 'the new workers of the reload');
}

SKIP: {
    skip 'a reload needs a master process (valgrind runs without one)', 8 if $VALGRIND;

    my $b = status_json('?recent=1000&history=1h');
    ok reload(), 'reloaded with the same configuration';
    my $a = status_json('?recent=1000&history=1h');
    is_deeply $a->{recent}, $b->{recent}, 'the records are all there';
    is_deeply $a->{history}{total}, $b->{history}{total}, 'the total\'s buckets too'
        unless $a->{history}{end} != $b->{history}{end};
    is_deeply $a->{history}{keys}, $b->{history}{keys}, '... and every key\'s'
        unless $a->{history}{end} != $b->{history}{end};

    # smaller: the newest records and minutes that fit
    my $conf = "$env->{TEST_NGINX_SERVROOT}/conf/nginx.conf";
    my $text = do { local (@ARGV, $/) = $conf; <> };
    $text =~ s/conductor_history window=1h recent=20;/conductor_history window=30m recent=5;/ or die 'no history line';
    open my $fh, '>', $conf or die $!;
    print {$fh} $text;
    close $fh;
    ok reload(), 'reloaded with window=30m recent=5';
    my $c = status_json('?recent=1000&history=1h');
    is_deeply $c->{recent}, [ @{ $b->{recent} }[0 .. 4] ], 'the newest 5 records are kept';
    is $c->{history}{minutes}, 30, 'the history is 30 minutes now';
    is_deeply $c->{history}{total}{requests}, [ @{ $b->{history}{total}{requests} }[30 .. 59] ],
        '... the last 30 of the hour before'
        unless $c->{history}{end} != $b->{history}{end};

    my $n = http_request(POST => $CHAT, {}, chat_body('free'));
    is $n->{status}, 200, 'a request after the reloads';
    my $d = status_json('?recent=1000');
    is scalar @{ $d->{recent} }, 5, 'the ring holds 5';
    is_deeply [ @{ $d->{recent} }[1 .. 4] ], [ @{ $c->{recent} }[0 .. 3] ], 'the new record first, then the kept ones';
}

is_deeply stop_nginx(), [], 'nginx ran clean';

# ---------------------------------------------------------------- two workers

my %BURST = map { ("c$_" => "sk-burst-client-$_-secret") } 1 .. 4;
start_nginx(
    main_config => 'worker_processes 2;',
    http_config => <<"HTTP",
    conductor_zone conductor:2m;
    conductor_history window=1h recent=400;
    conductor_provider p {
        url http://127.0.0.1:$MOCK/v1;
        key k1 "sk-burst-provider-secret";
        price m-burst input=1 output=1;
    }
    conductor_provider pt {
        url http://127.0.0.1:$MOCK/v1;
        key kt "sk-tick-provider-secret;prompt_tokens=3;completion_tokens=2";
    }
    conductor_model burst { p m-burst; }
    conductor_model tick { pt m-tick; }
@{[ map { "    conductor_client $_ { key $BURST{$_}; }\n" } sort keys %BURST ]}
    upstream conductor_backend { conductor_balancer; }
HTTP
    config => <<"SERVER",
    location /v1/ {
        conductor_auth on;
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
        proxy_set_header x-mock \$http_x_mock;
    }
    location = /conductor/status {
        conductor_status;
    }
SERVER
);

# client cK's requests use K * 11 prompt and K completion tokens: a record
# that mixed two requests would not add up
my $BN = 200;
my $burst_body = chat_body('burst');
my $res = burst($BN, $burst_body, headers => sub {
    my $k = $_[0] % 4 + 1;
    return "Authorization: Bearer $BURST{\"c$k\"}\r\nx-mock: prompt_tokens=" . (11 * $k) . ";completion_tokens=$k";
});
is_deeply tally(map { $_->{status} } @$res), { 200 => $BN }, "$BN concurrent requests on two workers: all 200";

my $bs = status_wait(sub { my $t = 0; $t += $_ for @{ $_->{history}{total}{requests} }; $t >= $BN },
    path => '/conductor/status?recent=1000&history=1h', what => 'every request of the burst in the history');
my $total = 0;
$total += $_ for @{ $bs->{history}{total}{requests} };
is $total, $BN, "the history counts $BN requests";
is scalar @{ $bs->{recent} }, $BN, "the ring has $BN records";
my (%per, @torn);
for my $q (@{ $bs->{recent} }) {
    my ($k) = ($q->{client} // '') =~ /^c(\d)$/;
    $per{ $q->{client} // 'none' }++;
    push @torn, JSON::PP->new->canonical->encode($q)
        unless $k && $q->{tokens}{prompt} == 11 * $k && $q->{tokens}{completion} == $k
            && $q->{tokens}{total} == 12 * $k && $q->{model} eq 'burst' && $q->{provider} eq 'p'
            && $q->{key} eq 'k1' && $q->{upstream_model} eq 'm-burst' && $q->{status} == 200
            && abs($q->{cost_usd} - 12 * $k * 1e-6) < 1e-12;
}
is_deeply \%per, { map { ("c$_" => $BN / 4) } 1 .. 4 }, 'each client has its 50 records';
is_deeply \@torn, [], 'no record mixes two requests';
for my $k (1 .. 4) {
    my $c = $bs->{history}{clients}{"c$k"};
    my ($n, $t) = (0, 0);
    $n += $_ for @{ $c->{requests} };
    $t += $_ for @{ $c->{tokens} };
    is_deeply [ $n, $t ], [ $BN / 4, $BN / 4 * 12 * $k ], "client c$k: its requests and tokens in the history";
}
unlike http_request(GET => '/conductor/status?recent=1000&history=1h')->{body}, qr/secret/,
    'no key of a client or a provider in the output';

# ---------------------------------------------------------------- a minute turns

# one request late in a minute, one early in the next: the first is counted
# in the next-to-last bucket, the second in the last (a real clock: the wait
# is at most a minute, once)
my ($from, $to) = $VALGRIND ? (40, 52) : (45, 57);
my $sec = time % 60;
Time::HiRes::sleep(($from - $sec) % 60 + 0.1) if $sec < $from || $sec >= $to;
my %tick = (Authorization => "Bearer $BURST{c1}");
my $x = http_request(POST => $CHAT, \%tick, chat_body('tick'));
my $xr = status_json('?recent=1')->{recent}[0];
Time::HiRes::sleep(60 - (Time::HiRes::time() - int(Time::HiRes::time() / 60) * 60) + 1.1);
my $y = http_request(POST => $CHAT, \%tick, chat_body('tick'));
is_deeply [ $x->{status}, $y->{status} ], [ 200, 200 ], 'two requests, a minute apart';
my $ts = status_json('?recent=2&history=5m');
my $yr = $ts->{recent}[0];
is minute_of($yr), minute_of($xr) + 1, 'they ended in consecutive minutes';
is $ts->{history}{end}, minute_of($yr) * 60, 'the history ends in the minute of the second';
is_deeply $ts->{history}{models}{tick}{requests}, [ 0, 0, 0, 1, 1 ], 'tick: one request in each of the last two minutes';
is_deeply $ts->{history}{models}{tick}{tokens}, [ 0, 0, 0, 5, 5 ], '... with their tokens';

is_deeply stop_nginx(), [], 'nginx ran clean';

# ---------------------------------------------------------------- off

start_nginx(
    http_config => <<"HTTP",
    conductor_history off;
    conductor_provider p { url http://127.0.0.1:$MOCK/v1; key k "sk-off-secret"; }
    conductor_model m { p pm; }
    upstream conductor_backend { conductor_balancer; }
HTTP
    config => <<"SERVER",
    location /v1/ {
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location = /conductor/status { conductor_status; }
SERVER
);
is http_request(POST => $CHAT, {}, chat_body('m'))->{status}, 200, 'off: a request';
my $off = status_json('?recent=10&history=1h');
ok $off && $off->{totals}{requests} == 1, 'off: the totals count it';
is_deeply $off->{recent}, [], 'off: no recent requests';
ok exists $off->{history} && !defined $off->{history}, 'off: "history" is null';
is_deeply stop_nginx(), [], 'nginx ran clean';

run_tests();

__DATA__

=== TEST 1: a window beyond a day
--- http_config
conductor_history window=25h;
--- config
--- must_die
--- error_log
"conductor_history" directive has a window of more than 24h

=== TEST 2: more records than kept
--- http_config
conductor_history recent=10001;
--- config
--- must_die
--- error_log
recent=10001: at most 10000 records are kept

=== TEST 3: an unknown parameter
--- http_config
conductor_history size=3;
--- config
--- must_die
--- error_log
invalid parameter "size=3": expected window=TIME, recent=N

=== TEST 4: zero
--- http_config
conductor_history window=0;
--- config
--- must_die
--- error_log
invalid parameter "window=0"

=== TEST 5: twice
--- http_config
conductor_history window=1h;
conductor_history recent=5;
--- config
--- must_die
--- error_log
"conductor_history" directive is duplicate

=== TEST 6: only at http level
--- http_config
--- config
conductor_history off;
--- must_die
--- error_log
"conductor_history" directive is not allowed here
