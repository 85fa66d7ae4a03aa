# conductor_status: the counters after requests of every kind (success,
# stream, failover, 401, 429, connect error, timeout, estimated usage) as
# JSON, as Prometheus text (checked by a parser of the exposition format
# below) and as the HTML page; methods, formats, secrets.
use lib 't/lib';
use Test::Conductor;
use Time::HiRes ();

# ---------------------------------------------------------------- helpers

# package globals: the --- checks sections are compiled elsewhere
use vars qw(@ERRORS @TOKENS @FIELDS);
@ERRORS = qw(4xx 429 5xx timeout connect);
@TOKENS = qw(prompt completion cached cache_creation reasoning);
@FIELDS = qw(requests responses estimated unpriced);

# A parser of the Prometheus text exposition format 0.0.4: every line is a
# HELP, a TYPE, a comment, a blank line or a sample, by the format's
# grammar; returns ({families => {name => {type, help, samples}},
# samples => [...]}, [errors]).
sub parse_exposition {
    my ($text) = @_;
    my (%fam, @samples, @errors, %series, %closed);
    my $last = '';
    push @errors, 'the text does not end with a line feed' if length $text && $text !~ /\n\z/;
    my $n = 0;
    for my $line (split /\n/, $text, -1) {
        $n++;
        next if $line eq '';
        my $err = sub { push @errors, "line $n: $_[0]: $line"; };
        if ($line =~ /^#[ \t]+(HELP|TYPE)[ \t]+(.*)$/) {
            my ($kind, $rest) = ($1, $2);
            my ($name, $arg) = $rest =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:[ \t]+(.*))?$/
                or do { $err->("bad metric name in $kind"); next };
            my $f = $fam{$name} //= { samples => [] };
            if ($kind eq 'HELP') {
                $err->("second HELP for $name") if defined $f->{help};
                my $help = $arg // '';
                while ($help =~ /\\(.?)/gs) { $err->("bad escape \\$1 in HELP") unless $1 =~ /^[\\n]$/ }
                $help =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
                $f->{help} = $help;
            }
            else {
                $err->("second TYPE for $name") if defined $f->{type};
                $err->("TYPE after samples of $name") if @{ $f->{samples} };
                $err->("unknown type '" . ($arg // '') . "'")
                    unless ($arg // '') =~ /^(?:counter|gauge|histogram|summary|untyped)$/;
                $f->{type} = $arg;
            }
            next;
        }
        next if $line =~ /^#/;    # a comment

        my ($s, $why) = _parse_sample($line);
        if (!$s) { $err->($why); next }
        my $family = $s->{name};
        if (!($fam{$family} && $fam{$family}{type})
            && $family =~ /^(.*)_(?:sum|count|bucket)$/
            && ($fam{$1}{type} // '') =~ /^(?:summary|histogram)$/) {
            $family = $1;
        }
        my $f = $fam{$family};
        unless ($f && defined $f->{type}) { $err->("sample of $family, which has no TYPE"); next }
        $err->("samples of $family are not together") if $closed{$family};
        $closed{$last} = 1 if $last ne $family;
        $last = $family;
        if ($f->{type} eq 'counter') {
            $err->("counter $family does not end in _total") unless $family =~ /_total$/;
            $err->("counter $family is negative or NaN") unless $s->{value} >= 0;
        }
        my $id = join ',', $s->{name}, map {"$_=$s->{labels}{$_}"} sort keys %{ $s->{labels} };
        $err->("duplicate series $id") if $series{$id}++;
        push @{ $f->{samples} }, $s;
        push @samples, $s;
    }
    return ({ families => \%fam, samples => \@samples }, \@errors);
}

# name{label="value",...} value [timestamp]
sub _parse_sample {
    my ($line) = @_;
    $line =~ /\G([a-zA-Z_:][a-zA-Z0-9_:]*)/gc or return (undef, 'bad metric name');
    my %s = (name => $1, labels => {});
    if ($line =~ /\G\{/gc) {
        while (1) {
            last if $line =~ /\G\}/gc;    # empty set, or after a trailing comma
            $line =~ /\G([a-zA-Z_][a-zA-Z0-9_]*)="/gc or return (undef, 'bad label name');
            my ($label, $value) = ($1, '');
            return (undef, "reserved label name $label") if $label =~ /^__/;
            while (1) {
                if ($line =~ /\G\\(.)/gc) {
                    my $c = $1;
                    return (undef, "bad escape \\$c in a label value") unless $c =~ /^[\\"n]$/;
                    $value .= $c eq 'n' ? "\n" : $c;
                }
                elsif ($line =~ /\G"/gc)         { last }
                elsif ($line =~ /\G([^"\\]+)/gc) { $value .= $1 }
                else                             { return (undef, 'unterminated label value') }
            }
            return (undef, "label $label twice") if exists $s{labels}{$label};
            $s{labels}{$label} = $value;
            next if $line =~ /\G,/gc;
            $line =~ /\G\}/gc or return (undef, 'expected , or } after a label');
            last;
        }
    }
    $line =~ /\G[ \t]+(\S+)/gc or return (undef, 'no value');
    my $v = $1;
    return (undef, "bad value '$v'")
        unless $v =~ /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|NaN)$/i;
    $s{value} = $v =~ /^([+-]?)inf$/i ? ($1 eq '-' ? -9**9**9 : 9**9**9) : $v =~ /nan/i ? 'nan' : 0 + $v;
    $s{timestamp} = $1 if $line =~ /\G[ \t]+(-?\d+)/gc;
    $line =~ /\G[ \t]*\z/gc or return (undef, 'junk after the value');
    return \%s;
}

# the value of the one sample of $name with exactly these labels
sub sample {
    my ($parsed, $name, %labels) = @_;
    my $want = join ',', map {"$_=$labels{$_}"} sort keys %labels;
    for my $s (@{ $parsed->{samples} }) {
        next unless $s->{name} eq $name;
        my $got = join ',', map {"$_=$s->{labels}{$_}"} sort keys %{ $s->{labels} };
        return $s->{value} if $got eq $want;
    }
    return undef;
}

sub near { my ($got, $want, $eps) = @_; return defined $got && abs($got - $want) <= ($eps // 1e-9) }

# sum of a numeric field over a list of JSON objects; "errors.5xx" style paths
sub total_of {
    my ($list, $path) = @_;
    my $sum = 0;
    for my $o (@$list) {
        my $v = $o;
        $v = $v->{$_} for split /\./, $path;
        $sum += $v;
    }
    return $sum;
}

sub counter_paths {
    return (@FIELDS, (map {"errors.$_"} @ERRORS), (map {"tokens.$_"} @TOKENS, 'total'), 'cost_usd');
}

sub get_status {
    my ($query, $headers) = @_;
    return http_request('GET', "/conductor/status$query", $headers // {});
}

# checks that no output carries a secret of the configuration
sub no_secret {
    my ($what, $text) = @_;
    unlike $text, qr/secret/i, "$what: no secret";
}

# every counter of every key, provider and model, as JSON and Prometheus
# report them, must agree
sub prometheus_matches_json {
    my ($prom, $json) = @_;
    my @bad;
    my $b = sub { my $x = shift; utf8::encode($x); $x };    # labels are UTF-8 bytes
    my $cmp = sub {
        my ($what, $name, $want, %labels) = @_;
        my $got = sample($prom, $name, %labels);
        my $eps = $name =~ /cost/ ? 1e-6 : 0;
        push @bad, "$what $name: prometheus " . ($got // 'none') . ", json $want"
            unless defined $got && abs($got - $want) <= $eps;
    };
    my $totals = sub {
        my ($scope, $o, %labels) = @_;
        $cmp->("$scope $o->{name}", "conductor_${scope}_${_}_total", $o->{$_}, %labels) for @FIELDS;
        $cmp->("$scope $o->{name}", "conductor_${scope}_errors_total", $o->{errors}{$_}, %labels, class => $_)
            for @ERRORS;
        $cmp->("$scope $o->{name}", "conductor_${scope}_tokens_total", $o->{tokens}{$_}, %labels, type => $_)
            for @TOKENS;
        $cmp->("$scope $o->{name}", "conductor_${scope}_cost_usd_total", $o->{cost_usd}, %labels);
    };
    for my $p (@{ $json->{providers} }) {
        $totals->('provider', $p, provider => $b->($p->{name}));
        for my $k (@{ $p->{keys} }) {
            my %l = (provider => $b->($p->{name}), key => $b->($k->{name}));
            $totals->('key', $k, %l);
            $cmp->("key $k->{name}", 'conductor_key_inflight', $k->{inflight}, %l);
            $cmp->("key $k->{name}", 'conductor_key_consecutive_failures', $k->{consecutive_failures}, %l);
            $cmp->("key $k->{name}", 'conductor_key_breaker_state',
                { closed => 0, open => 1, half_open => 2 }->{ $k->{breaker} }, %l);
            $cmp->("key $k->{name}", 'conductor_key_disabled', $k->{disabled} ? 1 : 0, %l);
            $cmp->("key $k->{name}", 'conductor_key_limit_remaining', $k->{limits}{$_}{remaining}, %l, limit => $_)
                for keys %{ $k->{limits} };
            my @lim = grep { $_->{name} eq 'conductor_key_limit_remaining'
                             && $_->{labels}{provider} eq $p->{name} && $_->{labels}{key} eq $k->{name} }
                @{ $prom->{samples} };
            push @bad, "key $k->{name}: " . @lim . ' limit_remaining samples, '
                . keys(%{ $k->{limits} }) . ' limits' unless @lim == keys %{ $k->{limits} };
        }
    }
    $totals->('model', $_, model => $b->($_->{name})) for @{ $json->{models} };
    return @bad;
}

block_defaults(
    config => <<'SERVER',
    location /v1/ {
        conductor_route;
        include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
    }
    location /slow/v1/ {
        conductor_route;
        proxy_pass $conductor_upstream_scheme://conductor_backend;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $conductor_upstream_host;
        proxy_buffering off;
        proxy_next_upstream error timeout http_429 http_500 http_502 http_503
                            http_504 non_idempotent;
        proxy_read_timeout 1s;
    }
    location = /conductor/status {
        conductor_status;
        allow 127.0.0.1;
        deny all;
    }
SERVER
);

run_tests();

# ---------------------------------------------------------------- the parser itself

my @bad_texts = (
    [ "x_total 1\n",                                              'sample without TYPE' ],
    [ "# TYPE x counter\nx 1\n",                                  'counter without _total' ],
    [ "# TYPE x_total counter\nx_total{a=\"1\"} 1\nx_total{a=\"1\"} 2\n", 'duplicate series' ],
    [ "# TYPE x gauge\nx{a=\"\\t\"} 1\n",                         'bad escape' ],
    [ "# TYPE x gauge\nx{a=\"1} 1\n",                             'unterminated label value' ],
    [ "# TYPE x gauge\nx one\n",                                  'bad value' ],
    [ "# TYPE x gauge\n# TYPE x gauge\nx 1\n",                    'second TYPE' ],
    [ "# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx{a=\"b\"} 2\n", 'family split' ],
    [ "# TYPE x gauge\nx 1",                                      'no final line feed' ],
);
for my $t (@bad_texts) {
    my (undef, $errors) = parse_exposition($t->[0]);
    ok scalar(@$errors), "the exposition parser refuses: $t->[1]";
}
{
    my ($p, $errors) = parse_exposition(
        "# HELP x_total A \\\\ help\\nline.\n# TYPE x_total counter\n"
        . "x_total{a=\"q\\\"b\\\\s\\nl\",b=\"\",} 1.5e3 1700000000000\n\n# a comment\n");
    is_deeply $errors, [], 'the exposition parser takes a valid text';
    is sample($p, 'x_total', a => "q\"b\\s\nl", b => ''), 1500, '... and unescapes label values';
    is $p->{families}{x_total}{help}, "A \\ help\nline.", '... and HELP';
}

done_testing();

__DATA__

=== TEST 1: every kind of request, then the counters as JSON, Prometheus and HTML
--- http_config
conductor_zone conductor:1m;
conductor_provider alpha {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key a1 "alpha-secret-1;prompt_tokens=100;completion_tokens=7;cached_tokens=40;reasoning_tokens=3;ttfb=50;remaining_requests=42;remaining_tokens=9000"
        rpm=50 tpm=100000 rpd=1000 max_inflight=4;
    price m-alpha input=1.5 output=6 cached_input=0.5;
}
conductor_provider beta {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1;
    key b1 "beta-secret-1;status=503";
    price m-beta input=1 output=1;
}
conductor_provider gamma {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT3;
    api anthropic;
    key g1 "gamma-secret-1;prompt_tokens=200;completion_tokens=20;cached_tokens=50;cache_creation=10";
}
conductor_provider delta {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1;
    key d1 "delta-secret-1;status=401";
}
conductor_provider epsilon {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1;
    key e1 "epsilon-secret-1;status=429;retry_after=30";
}
conductor_provider dead {
    url http://127.0.0.1:$TEST_NGINX_DEAD_PORT/v1;
    key x1 dead-secret-1;
}
conductor_provider slow {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT3/v1;
    key s1 "slow-secret-1;ttfb=3000";
}
conductor_provider eta {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key h1 "eta-secret-1;usage=omit";
    price m-eta input=1 output=1;
}
conductor_model chat    { alpha m-alpha; }
conductor_model fb      { beta m-beta; alpha m-alpha priority=2; }
conductor_model claude  { gamma claude-mock; }
conductor_model refused { delta m-delta; }
conductor_model limited { epsilon m-eps; }
conductor_model gone    { dead m-dead; }
conductor_model slowm   { slow m-slow; }
conductor_model est     { eta m-eta; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
# the minute windows must not turn over between the requests and the checks
Time::HiRes::sleep(0.2) while time % 60 > 48;
my $chat = sub { +{ method => 'POST', uri => "$_[1]/v1/chat/completions",
                   body => qq{{"model":"$_[0]","messages":[{"role":"user","content":"hi"}]}} } };
my $msg = sub { +{ method => 'POST', uri => '/v1/messages', headers => { 'anthropic-version' => '2023-06-01' },
                  body => qq{{"model":"claude","max_tokens":32,"stream":$_[0],"messages":[{"role":"user","content":"hi"}]}} } };
[
    (map { $chat->('chat', '') } 1 .. 3),
    { method => 'POST', uri => '/v1/chat/completions',
      body => '{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}' },
    $chat->('fb', ''),
    $msg->('false'),
    $msg->('true'),
    $chat->('refused', ''),
    $chat->('limited', ''),
    $chat->('gone', ''),
    $chat->('slowm', '/slow'),
    $chat->('est', ''),
    'GET /conductor/status',
]
--- error_code: 200
--- response_headers
Content-Type: application/json
Cache-Control: no-store
--- checks
my @status = map { $_->{status} } @$resps;
is_deeply [ @status[0 .. 9] ], [ 200, 200, 200, 200, 200, 200, 200, 401, 429, 502 ], 'the answers the clients got';
like $status[10], qr/^50[24]$/, 'the timed out request failed';
is $status[11], 200, 'the request with estimated usage';

my $s = $resp->{json};
ok $s, 'the status is JSON' or diag $resp->{body};
my $now = time;
is $s->{module}, 'ngx_http_conductor_module', 'module';
is $s->{version}, '0.1.0', 'version';
like $s->{nginx}, qr/^\d+\.\d+\.\d+$/, 'nginx version';
ok abs($s->{time} - $now) <= 5, 'time is now';
no_secret('json', $resp->{body});

my %p = map { $_->{name} => $_ } @{ $s->{providers} };
my %k = map { my $p = $_; map { ("$p->{name}/$_->{name}" => $_) } @{ $p->{keys} } } @{ $s->{providers} };
my %m = map { $_->{name} => $_ } @{ $s->{models} };
is_deeply [ map { $_->{name} } @{ $s->{providers} } ],
    [qw(alpha beta gamma delta epsilon dead slow eta)], 'providers in configuration order';
is_deeply [ map { $_->{name} } @{ $s->{models} } ],
    [qw(chat fb claude refused limited gone slowm est)], 'models in configuration order, no pseudo-model';
is $p{alpha}{url}, "http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1", 'provider url';
is $p{gamma}{api}, 'anthropic', 'api anthropic';
is $p{alpha}{api}, 'openai', 'api openai';
is_deeply $m{fb}{targets}, [ { provider => 'beta', model => 'm-beta', priority => 1, weight => 1 },
                             { provider => 'alpha', model => 'm-alpha', priority => 2, weight => 1 } ], 'targets';
ok !$m{fb}{builtin} && defined $m{fb}{builtin}, 'not built in';

# what each key saw: attempts, 2xx, error classes, tokens from the mock's usage
my %zero_tokens = map { $_ => 0 } @TOKENS;
my %want_key = (
    'alpha/a1' => { requests => 5, responses => 5, errors => {},
                    tokens => { prompt => 500, completion => 35, cached => 200, cache_creation => 0, reasoning => 15 },
                    cost_usd => 5 * 0.000152, estimated => 0, unpriced => 0 },
    'beta/b1'  => { requests => 1, responses => 0, errors => { '5xx' => 1 }, tokens => \%zero_tokens, cost_usd => 0 },
    'gamma/g1' => { requests => 2, responses => 2, errors => {},
                    tokens => { prompt => 520, completion => 40, cached => 100, cache_creation => 20, reasoning => 0 },
                    cost_usd => 0, estimated => 0, unpriced => 2 },
    'delta/d1'   => { requests => 1, responses => 0, errors => { '4xx' => 1 }, tokens => \%zero_tokens, cost_usd => 0 },
    'epsilon/e1' => { requests => 1, responses => 0, errors => { '429' => 1 }, tokens => \%zero_tokens, cost_usd => 0 },
    'dead/x1'    => { requests => 1, responses => 0, errors => { connect => 1 }, tokens => \%zero_tokens, cost_usd => 0 },
    'slow/s1'    => { requests => 1, responses => 0, errors => { timeout => 1 }, tokens => \%zero_tokens, cost_usd => 0 },
    'eta/h1'     => { requests => 1, responses => 1, errors => {}, estimated => 1, unpriced => 0 },
);
for my $name (sort keys %want_key) {
    my ($w, $g) = ($want_key{$name}, $k{$name});
    ok $g, "key $name reported" or next;
    is $g->{$_}, $w->{$_}, "key $name: $_" for grep { exists $w->{$_} } qw(requests responses estimated unpriced);
    is_deeply { map { $_ => $g->{errors}{$_} } @ERRORS }, { map { $_ => $w->{errors}{$_} // 0 } @ERRORS },
        "key $name: errors by class";
    if ($w->{tokens}) {
        is_deeply { map { $_ => $g->{tokens}{$_} } @TOKENS }, $w->{tokens}, "key $name: tokens";
        is $g->{tokens}{total}, $w->{tokens}{prompt} + $w->{tokens}{completion}, "key $name: total tokens";
    }
    ok near($g->{cost_usd}, $w->{cost_usd}), "key $name: cost $w->{cost_usd}" or diag "got $g->{cost_usd}"
        if exists $w->{cost_usd};
    is $g->{inflight}, 0, "key $name: nothing in flight";
}
ok $k{'eta/h1'}{tokens}{prompt} > 0, 'estimated usage counts tokens';
ok $k{'eta/h1'}{cost_usd} > 0, 'estimated usage is priced';

# the state of the keys
my $a1 = $k{'alpha/a1'};
is $a1->{max_inflight}, 4, 'max_inflight';
is $k{'beta/b1'}{max_inflight}, 0, 'no max_inflight';
ok $a1->{ttfb_ms} >= 50, "ttfb EWMA ($a1->{ttfb_ms} ms) measured";
ok $a1->{ttfb_avg_ms} >= 50, "ttfb average ($a1->{ttfb_avg_ms} ms)";
is $k{'dead/x1'}{ttfb_ms}, 0, 'no ttfb without an answer';
is $a1->{consecutive_failures}, 0, 'no failure';
is $k{'beta/b1'}{consecutive_failures}, 1, 'one failure in a row';
is $a1->{breaker}, 'closed', 'breaker closed';
like $k{"$_"}{breaker}, qr/^(?:closed|open|half_open)$/, "$_ breaker state" for sort keys %k;
is $a1->{cooldown_until}, undef, 'no cooldown: null';
my $cool = $k{'epsilon/e1'}{cooldown_until};
ok defined $cool && $cool > ($now + 20) * 1000 && $cool <= ($now + 32) * 1000,
    'a 429 with Retry-After 30 cools the key down (epoch ms)' or diag $cool // 'null';
ok $k{'delta/d1'}{disabled} && JSON::PP::is_bool($k{'delta/d1'}{disabled}), 'a 401 disables the key';
ok !$a1->{disabled} && JSON::PP::is_bool($a1->{disabled}), 'a1 is not disabled';
is_deeply $a1->{provider_remaining}, { requests => 42, tokens => 9000 }, "the provider's x-ratelimit-remaining";
is_deeply $k{'beta/b1'}{provider_remaining}, { requests => undef, tokens => undef }, 'unknown: null';

# limits: only those set, used = the window's requests / tokens
is_deeply [ sort keys %{ $a1->{limits} } ], [qw(rpd rpm tpm)], 'only the limits that are set';
is_deeply $k{'beta/b1'}{limits}, {}, 'a key without limits';
my %want_lim = (rpm => [ 50, 5 ], tpm => [ 100000, 535 ], rpd => [ 1000, 5 ]);
my %period = (rpm => 60, tpm => 60, rpd => 86400);
for my $l (sort keys %want_lim) {
    my ($limit, $used) = @{ $want_lim{$l} };
    my $g = $a1->{limits}{$l};
    is_deeply [ @$g{qw(limit used remaining)} ], [ $limit, $used, $limit - $used ], "limit $l: limit, used, remaining";
    ok $g->{reset_s} >= 1 && $g->{reset_s} <= $period{$l}, "limit $l: reset in $g->{reset_s} s";
}

# providers and models count client requests, each once, by the answer the
# client got (a failover's failed attempts show on the keys only); tokens
# and cost are those of the key that answered
my %want_prov = (
    alpha => [ 5, {} ], beta => [ 0, {} ], gamma => [ 2, {} ], delta => [ 1, { '4xx' => 1 } ],
    epsilon => [ 1, { '429' => 1 } ], dead => [ 1, { connect => 1 } ], slow => [ 1, { timeout => 1 } ],
    eta => [ 1, {} ],
);
for my $name (sort keys %want_prov) {
    my ($pv, $w) = ($p{$name}, $want_prov{$name});
    is $pv->{requests}, $w->[0], "provider $name: client requests";
    is_deeply { map { $_ => $pv->{errors}{$_} } @ERRORS }, { map { $_ => $w->[1]{$_} // 0 } @ERRORS },
        "provider $name: the errors its clients got";
    for my $path (grep { !/^(?:requests|errors)/ } counter_paths()) {
        my ($got, $want) = ($pv, total_of($pv->{keys}, $path));
        $got = $got->{$_} for split /\./, $path;
        ok near($got, $want), "provider $name: $path is the sum over its keys" or diag "$got != $want";
    }
}

# models: the client requests for each alias, by the answer they got
my %want_model = (
    chat    => { requests => 4, responses => 4, errors => {}, prompt => 400, cost_usd => 4 * 0.000152 },
    fb      => { requests => 1, responses => 1, errors => {}, prompt => 100, cost_usd => 0.000152 },
    claude  => { requests => 2, responses => 2, errors => {}, prompt => 520, cost_usd => 0, unpriced => 2 },
    refused => { requests => 1, responses => 0, errors => { '4xx' => 1 }, prompt => 0 },
    limited => { requests => 1, responses => 0, errors => { '429' => 1 }, prompt => 0 },
    gone    => { requests => 1, responses => 0, errors => { connect => 1 }, prompt => 0 },
    slowm   => { requests => 1, responses => 0, errors => { timeout => 1 }, prompt => 0 },
    est     => { requests => 1, responses => 1, errors => {}, estimated => 1 },
);
for my $name (sort keys %want_model) {
    my ($w, $g) = ($want_model{$name}, $m{$name});
    is $g->{$_}, $w->{$_}, "model $name: $_" for grep { exists $w->{$_} } qw(requests responses estimated unpriced);
    is_deeply { map { $_ => $g->{errors}{$_} } @ERRORS }, { map { $_ => $w->{errors}{$_} // 0 } @ERRORS },
        "model $name: errors by class";
    is $g->{tokens}{prompt}, $w->{prompt}, "model $name: prompt tokens" if exists $w->{prompt};
    ok near($g->{cost_usd}, $w->{cost_usd}), "model $name: cost" if exists $w->{cost_usd};
}

# totals = sum over providers = sum over models
for my $path (counter_paths()) {
    my $got = $s->{totals};
    $got = $got->{$_} for split /\./, $path;
    my ($byp, $bym) = (total_of($s->{providers}, $path), total_of($s->{models}, $path));
    ok near($got, $byp), "totals $path = sum over providers" or diag "$got != $byp";
    ok near($got, $bym), "totals $path = sum over models" or diag "$got != $bym";
}
is $s->{totals}{requests}, 12, 'every client request routed';
is $s->{totals}{responses}, 8, 'the 2xx answers';
is_deeply $s->{totals}{errors}, { '4xx' => 1, '429' => 1, '5xx' => 0, timeout => 1, connect => 1,
                                  stream_cut => 0, stream_timeout => 0 },
    'the errors the clients got';

# Prometheus: the same numbers, in a valid exposition
my $pr = get_status('?format=prometheus');
is $pr->{status}, 200, 'prometheus: 200';
is $pr->{headers}{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8', 'prometheus: content type';
my ($prom, $errors) = parse_exposition($pr->{body});
is_deeply $errors, [], 'prometheus: a valid exposition' or diag $pr->{body};
no_secret('prometheus', $pr->{body});
my %types = map { $_ => $prom->{families}{$_}{type} } keys %{ $prom->{families} };
for my $scope (qw(key provider model)) {
    is $types{"conductor_${scope}_${_}_total"}, 'counter', "counter conductor_${scope}_${_}_total"
        for qw(requests responses errors tokens cost_usd estimated unpriced);
}
is $types{"conductor_key_$_"}, 'gauge', "gauge conductor_key_$_"
    for qw(inflight ttfb_seconds limit_remaining cooldown_seconds breaker_state consecutive_failures disabled);
ok defined $prom->{families}{$_}{help} && length $prom->{families}{$_}{help}, "$_ has a HELP"
    for sort keys %{ $prom->{families} };
is_deeply [ prometheus_matches_json($prom, get_status('')->{json}) ], [], 'prometheus and JSON agree'
    or diag join "\n", prometheus_matches_json($prom, get_status('')->{json});
my %a1 = (provider => 'alpha', key => 'a1');
is sample($prom, 'conductor_key_tokens_total', %a1, type => 'cached'), 200, 'tokens{type="cached"}';
ok near(sample($prom, 'conductor_key_cost_usd_total', %a1), 0.00076), 'cost in USD';
is sample($prom, 'conductor_key_errors_total', provider => 'beta', key => 'b1', class => '5xx'), 1, 'errors{class="5xx"}';
is sample($prom, 'conductor_key_limit_remaining', %a1, limit => 'rpm'), 45, 'limit_remaining{limit="rpm"}';
ok sample($prom, 'conductor_key_ttfb_seconds', %a1) >= 0.05, 'ttfb in seconds';
is sample($prom, 'conductor_key_ttfb_seconds', provider => 'dead', key => 'x1'), undef, 'no ttfb sample when never measured';
my $cd = sample($prom, 'conductor_key_cooldown_seconds', provider => 'epsilon', key => 'e1');
ok defined $cd && $cd > 20 && $cd <= 31, 'cooldown in seconds' or diag $cd // 'none';
is sample($prom, 'conductor_key_cooldown_seconds', %a1), 0, 'no cooldown: 0';
is sample($prom, 'conductor_key_disabled', provider => 'delta', key => 'd1'), 1, 'disabled';
is sample($prom, 'conductor_model_requests_total', model => 'chat'), 4, 'model requests';
is sample($prom, 'conductor_provider_tokens_total', provider => 'gamma', type => 'cache_creation'), 20,
    'provider tokens{type="cache_creation"}';

# Accept: text/plain (a Prometheus scraper) gets the exposition
my $scrape = get_status('', { Accept => 'application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1' });
like $scrape->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'Accept: text/plain gets Prometheus';
like $scrape->{body}, qr/^# HELP conductor_key_requests_total /m, '... its text';
my $both = get_status('', { Accept => 'application/json, text/plain, */*' });
is $both->{headers}{'content-type'}, 'application/json', 'Accept that takes JSON too gets JSON';
is get_status('?format=json', { Accept => 'text/plain' })->{headers}{'content-type'}, 'application/json',
    '?format= wins over Accept';

# the HTML page: one self-contained file
my $html = get_status('?format=html');
is $html->{status}, 200, 'html: 200';
is $html->{headers}{'content-type'}, 'text/html; charset=utf-8', 'html: content type';
like $html->{body}, qr{^<!DOCTYPE html>.*<script>.*format=json.*</script>}s, 'html: a page whose script asks for the JSON';
unlike $html->{body}, qr{https?:|//[a-z0-9.-]+\.[a-z]{2,}}i, 'html: no external URL';
unlike $html->{body}, qr{\s(?:src|href)\s*=|\@import|url\(}i, 'html: no asset loaded';
like $html->{headers}{'content-security-policy'} // '', qr/default-src 'none'/, 'html: CSP allows nothing else';
no_secret('html', $html->{body});

=== TEST 2: unknown models, names that need escaping, methods and formats
--- http_config
conductor_zone conductor:1m;
conductor_provider solo {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key k.1 "solo-secret;prompt_tokens=11;completion_tokens=2";
}
conductor_model "odd\"name\\with\nline" { solo m1; }
conductor_model "modèle" { solo m2; }
upstream conductor_backend { conductor_balancer; }
--- request_eval
[
    (map { +{ method => 'POST', uri => '/v1/chat/completions', body => '{"model":"gpt-unknown","messages":[]}' } } 1 .. 2),
    { method => 'POST', uri => '/conductor/status', body => '{}' },
    'PUT /conductor/status',
    { method => 'HEAD', uri => '/conductor/status' },
    'GET /conductor/status?format=xml',
    'GET /conductor/status?format=json',
]
--- error_code: 200
--- checks
is_deeply [ map { $_->{status} } @$resps ], [ 200, 200, 405, 405, 200, 400, 200 ], 'statuses';
is $resps->[4]{body}, '', 'HEAD: no body';
ok $resps->[4]{headers}{'content-length'} > 0, 'HEAD: the length of the JSON';

my $s = $resp->{json};
my %m = map { $_->{name} => $_ } @{ $s->{models} };
is_deeply [ map { $_->{name} } @{ $s->{models} } ], [ "odd\"name\\with\nline", "mod\x{e8}le", '(unknown openai)' ],
    'the aliases, then the unknown names of the API that was used';
is $m{'(unknown openai)'}{requests}, 2, 'unknown models counted';
is $m{'(unknown openai)'}{tokens}{prompt}, 22, '... with their tokens';
is_deeply $m{'(unknown openai)'}{targets}, [], 'no targets';
is $s->{providers}[0]{keys}[0]{name}, 'k.1', 'key name';
no_secret('json', $resp->{body});

my $pr = get_status('?format=prometheus');
my ($prom, $errors) = parse_exposition($pr->{body});
is_deeply $errors, [], 'a valid exposition' or diag $pr->{body};
is sample($prom, 'conductor_model_requests_total', model => "odd\"name\\with\nline"), 0,
    'label value escaped: quote, backslash, line feed';
like $pr->{body}, qr/\{model="odd\\"name\\\\with\\nline"\}/, '... as the format writes them';
is sample($prom, 'conductor_model_requests_total', model => "mod\x{c3}\x{a8}le"), 0, 'UTF-8 name kept';
is sample($prom, 'conductor_model_requests_total', model => '(unknown openai)'), 2, 'the pseudo-model';
is sample($prom, 'conductor_key_requests_total', provider => 'solo', key => 'k.1'), 2, 'key';
is_deeply [ prometheus_matches_json($prom, $s) ], [], 'prometheus and JSON agree'
    or diag join "\n", prometheus_matches_json($prom, $s);
no_secret('prometheus', $pr->{body});

=== TEST 3: no provider: an empty report
--- http_config
--- config
location = /conductor/status { conductor_status; }
--- request
GET /conductor/status
--- error_code: 200
--- checks
my $s = $resp->{json};
is_deeply $s->{providers}, [], 'no provider';
is_deeply $s->{models}, [], 'no model';
is $s->{totals}{requests}, 0, 'zero totals';
is $s->{totals}{cost_usd}, 0, 'zero cost';
my $pr = get_status('?format=prometheus');
is $pr->{status}, 200, 'prometheus: 200';
my ($prom, $errors) = parse_exposition($pr->{body});
is_deeply $errors, [], 'a valid exposition without samples';
is scalar(@{ $prom->{samples} }), 0, 'no sample';
is get_status('?format=html')->{status}, 200, 'the page';
