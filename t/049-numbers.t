# Numbers that must not wrap or undercount: the cost of huge usage (pico-USD
# beyond uint64), and the tokens a request reserves against a key's tpm when
# it gives no max_tokens (conductor_estimate completion=N).
use lib 't/lib';
use Test::Conductor;
use JSON::PP ();

# ---------------------------------------------------------------- cost

# The records of logs/cost.log (the block's own log_format): one hash a
# request, in order. http_request returns once nginx logged the request, so
# the records are there; the wait only bounds a slow write.
sub cost_log {
    my ($env, $want) = @_;
    my @rec;
    wait_for(sub {
        open my $f, '<', "$env->{TEST_NGINX_SERVROOT}/logs/cost.log" or return 0;
        @rec = ();
        while (my $line = <$f>) {
            chomp $line;
            my %r;
            @r{qw(prompt completion total cost source)} = split / /, $line;
            push @rec, \%r;
        }
        return @rec >= $want;
    }, what => "$want cost.log records");
    return @rec;
}

sub find_named {
    my ($list, $name) = @_;
    my ($x) = grep { $_->{name} eq $name } @{ $list || [] };
    return $x;
}

# the costs of the status report: totals, provider p, its key k1, model m
sub status_costs {
    my ($st) = @_;
    my $p = find_named($st->{providers}, 'p');
    my $k = $p ? find_named($p->{keys}, 'k1') : undef;
    my $m = find_named($st->{models}, 'm');
    return {
        totals   => $st->{totals}{cost_usd},
        provider => $p && $p->{cost_usd},
        key      => $k && $k->{cost_usd},
        model    => $m && $m->{cost_usd},
    };
}

# the cost_usd_total samples of the Prometheus text, by scope
sub prometheus_costs {
    my $r = http_request(GET => '/conductor/status?format=prometheus');
    my %c;
    while ($r->{body} =~ /^conductor_(\w+?)_cost_usd_total\{([^}]*)\} (\S+)$/mg) {
        $c{$1} = $3;
    }
    return \%c;
}

# the harness's placeholders, for configuration text kept in Perl variables
# (an `eval` section gets them replaced in its code, not in what it returns)
sub placeholders { (my $s = shift) =~ s/\$(TEST_NGINX_\w+)/$ENV{$1}/g; return $s }

# $75 / $150 per million tokens: 10^12 tokens in and out cost
# 10^12 * 75 + 10^12 * 150 = 225,000,000 USD, 2.25e20 pico-USD (> 2^64)
our $PRICED = placeholders(<<'HTTP');
conductor_zone conductor:1m;
log_format cost '$conductor_prompt_tokens $conductor_completion_tokens '
                '$conductor_total_tokens $conductor_cost $conductor_usage_source';
access_log logs/cost.log cost;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key k1 "k1;prompt_tokens=1000000000000;completion_tokens=1000000000000";
    price pm input=75 output=150;
}
conductor_model m { p pm; }
upstream conductor_backend { conductor_balancer; }
HTTP

# NGX_HTTP_CONDUCTOR_USAGE_MAX is 10^12: the largest count the usage parser
# takes. [alias, prompt, completion, cost at $75 / $150]
our @CASES = (
    [ below => 80000000000, 80000000000, '18000000.000000' ],    # 1.8e19 pico: fits uint64
    [ half  => 500000000000, 500000000000, '112500000.000000' ],
    [ under => 999999999999, 999999999999, '224999999.999775' ],
    [ max   => 1000000000000, 1000000000000, '225000000.000000' ],
    [ in    => 1000000000000, 0, '75000000.000000' ],
    [ out   => 0, 1000000000000, '150000000.000000' ],
    [ mixed => 123456789012, 987654321098, '157407407.340600' ],
);

# counts from the parser's limit up: 10^12, 10^12 + 1, int64 max, 2^64
our @BIG = ('1000000000000', '1000000000001', '9223372036854775807', '18446744073709551616');

# ---------------------------------------------------------------- tpm

# A chat stream body of exactly $len bytes, padded in its message. It asks
# for usage itself, so the gateway adds nothing to it: the body the estimate
# is taken from is the one sent. %extra: members put before "messages".
sub padded_body {
    my ($len, %extra) = @_;
    my $head = '{"model":"m","stream":true,"stream_options":{"include_usage":true},'
        . join('', map {"\"$_\":$extra{$_},"} sort keys %extra)
        . '"messages":[{"role":"user","content":"';
    my $tail = '"}]}';
    my $pad = $len - length($head) - length($tail);
    die "body of $len bytes is too short for its members\n" if $pad < 1;
    my $body = $head . ('x' x $pad) . $tail;
    die "padded_body: got " . length($body) . " bytes\n" unless length $body == $len;
    JSON::PP::decode_json($body);    # dies if not JSON
    return $body;
}

# The contract: a request reserves (len + 3) / 4 prompt tokens plus its
# max_tokens (max_completion_tokens, max_output_tokens), or N of
# conductor_estimate completion=N when it gives none; an estimate alone is
# capped at the limit. A key admits while in flight + new <= tpm.
sub estimate { my ($len, $completion) = @_; return int(($len + 3) / 4) + $completion }
sub admitted { my ($tpm, $est) = @_; return $est >= $tpm ? 1 : int($tpm / $est) }

# Sends $n requests one after the other; the key's answers are held open by
# the mock's gate (head and first event sent, the rest waits for
# /__mock/release), so every admitted request stays in flight while the next
# ones are routed. Returns the statuses in order, and the number of requests
# the mock received while they were all held; then releases and drains.
sub hold_in_flight {
    my ($n, $body, $path) = @_;
    $path //= '/v1/chat/completions';
    my (@streams, @status);
    for (1 .. $n) {
        my $s = http_stream_open(POST => $path, {}, $body, timeout => 15);
        push @streams, $s;
        push @status, $s->status // 0;
        if (($s->status // 0) != 200) { $s->read_all(10); $s->close }
    }
    my $reached = scalar @{ mock_requests() };
    mock_release();
    for my $s (grep { ($_->status // 0) == 200 } @streams) { $s->read_all(15); $s->close }
    return (\@status, $reached, \@streams);
}

# $want admitted, the rest refused by the gateway itself with a 429 of its
# own (the mock never saw them)
sub check_admission {
    my ($status, $reached, $streams, $want, $what) = @_;
    my $n = @$status;
    is_deeply $status, [ (200) x $want, (429) x ($n - $want) ], "$what: the first $want of $n admitted, the rest 429";
    is $reached, $want, "$what: exactly $want reached the provider";
    my ($refused) = grep { ($_->status // 0) == 429 } @$streams;
    like $refused ? $refused->body : '', qr/"type":"rate_limit_exceeded"/, "$what: the 429 is the gateway's"
        if $want < $n;
}

our $TPM_KEY = placeholders(<<'HTTP');
conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1; key k1 "k1;gate" tpm=1000; }
conductor_model m { p pm; }
upstream conductor_backend { conductor_balancer; }
HTTP

block_defaults(
    config => <<'SERVER',
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
    location = /conductor/status { conductor_status; }
SERVER
);

run_tests();

__DATA__

=== TEST 1: 10^12 tokens in and out at $75 / $150 per million: $conductor_cost is exactly 225000000.000000
--- http_config eval: $main::PRICED
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- checks
my ($r) = cost_log($env, 1);
is_deeply [ @$r{qw(prompt completion source)} ], ['1000000000000', '1000000000000', 'response'],
    "the provider's numbers were taken";
is $r->{cost}, '225000000.000000', '$conductor_cost: 10^12 * $75 + 10^12 * $150 per million, no wrap';
my $c = status_costs(status_report());
is $c->{totals}, 225000000, 'status totals cost_usd';
is $c->{provider}, 225000000, 'status provider cost_usd';
is $c->{key}, 225000000, 'status key cost_usd';
is $c->{model}, 225000000, 'status model cost_usd';
my $pc = prometheus_costs();
is $pc->{provider}, '225000000.000000', 'prometheus provider cost_usd_total';
is $pc->{model}, '225000000.000000', 'prometheus model cost_usd_total';

=== TEST 2: cost grows with the tokens up to the parser's limit (10^12 each): exact, never smaller
--- http_config eval
# one alias per case, to a provider model whose name carries the mock's
# usage tokens, priced at $75 / $150
my $models = join '', map {
    my ($name, $p, $o) = @$_;
    qq{conductor_model $name { p "pm;prompt_tokens=$p;completion_tokens=$o"; }\n}
} @main::CASES;
my $prices = join '', map {
    qq{    price "pm;prompt_tokens=$_->[1];completion_tokens=$_->[2]" input=75 output=150;\n}
} @main::CASES;
<<"HTTP";
conductor_zone conductor:1m;
log_format cost '\$conductor_prompt_tokens \$conductor_completion_tokens '
                '\$conductor_total_tokens \$conductor_cost \$conductor_usage_source';
access_log logs/cost.log cost;
conductor_provider p {
    url http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}/v1;
    key k1 s1;
$prices}
$models
upstream conductor_backend { conductor_balancer; }
HTTP
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"$_->[0]","messages":[{"role":"user","content":"hi"}]}} } @main::CASES ]
--- error_code: 200
--- checks
my @cases = @main::CASES;
is_deeply [ map { $_->{status} } @$resps ], [ (200) x @cases ], 'all answered';
my @rec = cost_log($env, scalar @cases);
for my $i (0 .. $#cases) {
    my (undef, $p, $o, $want) = @{ $cases[$i] };
    is_deeply [ @{ $rec[$i] }{qw(prompt completion source)} ], [ $p, $o, 'response' ], "$p / $o: the provider's numbers";
    is $rec[$i]{cost}, $want, "$p in, $o out: cost $want";
}
# more tokens never cost less: every pair of cases ordered by both counts
for my $i (0 .. $#cases) {
    for my $j (0 .. $#cases) {
        next if $i == $j || $cases[$i][1] > $cases[$j][1] || $cases[$i][2] > $cases[$j][2];
        cmp_ok $rec[$j]{cost}, '>=', $rec[$i]{cost}, "$cases[$j][0] costs no less than $cases[$i][0]";
    }
}

=== TEST 3: totals of two answers at the limit add without wrapping: 450000000
--- http_config eval: $main::PRICED
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","messages":[{"role":"user","content":"hi"}]}} } 1 .. 2 ]
--- error_code: 200
--- checks
my @rec = cost_log($env, 2);
is_deeply [ map { $_->{cost} } @rec ], [ ('225000000.000000') x 2 ], 'each answer';
my $st = status_report();
my $c = status_costs($st);
is_deeply $c, { totals => 450000000, provider => 450000000, key => 450000000, model => 450000000 },
    'status: totals, provider, key and model costs are the sum';
is $st->{totals}{tokens}{total}, 4000000000000, 'status: 4 * 10^12 tokens';
my $pc = prometheus_costs();
is $pc->{provider}, '450000000.000000', 'prometheus provider cost_usd_total';
is $pc->{key}, '450000000.000000', 'prometheus key cost_usd_total';

=== TEST 4: counts above the limit, up to int64 max and beyond: refused as estimated, or priced without wrap
--- http_config eval
# a provider per count, on a location of this nginx that answers that
# count exactly (JSON numbers beyond 2^53, which the node mock cannot write)
my $i = 0;
my $providers = join '', map {
    $i++;
    qq{conductor_provider f$i { url http://127.0.0.1:$ENV{TEST_NGINX_PORT}/fake/$_/v1; key k s; price pm input=75 output=150; }\n}
    . qq{conductor_model c$i { f$i pm; }\n}
} @main::BIG;
<<"HTTP";
conductor_zone conductor:1m;
log_format cost '\$conductor_prompt_tokens \$conductor_completion_tokens '
                '\$conductor_total_tokens \$conductor_cost \$conductor_usage_source';
$providers
upstream conductor_backend { conductor_balancer; }
HTTP
--- config
location ~ ^/fake/(\d+)/ {
    default_type application/json;
    return 200 '{"id":"x","object":"chat.completion","created":1,"model":"pm","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":$1,"completion_tokens":$1}}';
}
location /v1/ {
    conductor_route;
    include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
    access_log logs/cost.log cost;
}
location = /conductor/status { conductor_status; }
--- checks
# /v1/ logs to cost.log only: the harness cannot wait for its own line
my @counts = @main::BIG;
for my $i (1 .. @counts) {
    my $r = http_request(POST => '/v1/chat/completions', {},
        qq{{"model":"c$i","messages":[{"role":"user","content":"hi"}]}}, await_log => 0);
    is $r->{status}, 200, "answered ($counts[$i - 1])";
    cost_log($env, $i);    # in order
}
my @rec = cost_log($env, scalar @counts);
is $rec[0]{source}, 'response', '10^12 is taken';
is $rec[0]{cost}, '225000000.000000', '10^12: 225000000 USD';
for my $i (1 .. $#counts) {
    my $r = $rec[$i];
    if ($r->{source} eq 'estimated') {
        pass "$counts[$i]: refused by the parser (estimated)";
        cmp_ok $r->{prompt}, '<', 1000, "$counts[$i]: the estimate is the bytes' (prompt $r->{prompt})";
    }
    else {
        is $r->{source}, 'response', "$counts[$i]: taken";
        cmp_ok $r->{cost}, '>=', $rec[0]{cost}, "$counts[$i]: costs no less than 10^12 ($r->{cost})";
    }
}
my $st = status_report();
cmp_ok $st->{totals}{cost_usd}, '>=', 225000000, 'status totals: no wrap below the 10^12 answer';

=== TEST 5: no max_tokens, conductor_estimate completion=256: exactly floor(1000 / (35 + 256)) = 3 in flight
--- http_config eval
$main::TPM_KEY . "conductor_estimate completion=256;\n"
--- checks
my $body = padded_body(140);
my $want = admitted(1000, estimate(140, 256));
is $want, 3, '(140 + 3) / 4 + 256 = 291 tokens each: 3 fit 1000';
check_admission(hold_in_flight(6, $body), $want, 'completion=256');

=== TEST 6: conductor_estimate completion=100 in the location: 7 in flight (7 * 135 = 945, 8 * 135 > 1000)
--- http_config eval: $main::TPM_KEY
--- config
location /v1/ {
    conductor_route;
    conductor_estimate completion=100;
    include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
}
--- checks
my $want = admitted(1000, estimate(140, 100));
is $want, 7, '(140 + 3) / 4 + 100 = 135 tokens each: 7 fit 1000';
check_admission(hold_in_flight(9, padded_body(140)), $want, 'completion=100');

=== TEST 7: conductor_estimate in the server block is inherited
--- http_config eval: $main::TPM_KEY
--- config
conductor_estimate completion=150;
location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
--- checks
my $want = admitted(1000, estimate(140, 150));
is $want, 5, '(140 + 3) / 4 + 150 = 185 tokens each: 5 fit 1000';
check_admission(hold_in_flight(7, padded_body(140)), $want, 'completion=150');

=== TEST 8: max_tokens in the body: N does not apply, max_tokens does
--- http_config eval
$main::TPM_KEY . "conductor_estimate completion=256;\n"
--- checks
my $body = padded_body(160, max_tokens => 50);
my $want = admitted(1000, estimate(160, 50));
is $want, 11, '(160 + 3) / 4 + 50 = 90 tokens each: 11 fit 1000';
check_admission(hold_in_flight(13, $body), $want, 'max_tokens=50');

=== TEST 9: max_completion_tokens counts as max_tokens
--- http_config eval
$main::TPM_KEY . "conductor_estimate completion=256;\n"
--- checks
my $body = padded_body(160, max_completion_tokens => 150);
my $want = admitted(1000, estimate(160, 150));
is $want, 5, '(160 + 3) / 4 + 150 = 190 tokens each: 5 fit 1000';
check_admission(hold_in_flight(7, $body), $want, 'max_completion_tokens=150');

=== TEST 10: max_output_tokens on /v1/responses counts as max_tokens (8 * 125 = 1000 fits exactly)
--- http_config eval
$main::TPM_KEY . "conductor_estimate completion=256;\n"
--- checks
my $body = '{"model":"m","stream":true,"max_output_tokens":100,"input":"' . ('x' x 38) . '"}';
is length($body), 100, 'a 100-byte Responses body';
my $want = admitted(1000, estimate(100, 100));
is $want, 8, '(100 + 3) / 4 + 100 = 125 tokens each: 8 fit 1000';
check_admission(hold_in_flight(10, $body, '/v1/responses'), $want, 'max_output_tokens=100');

=== TEST 11: without the directive, the default completion=256 applies (11 would get through today)
--- http_config eval: $main::TPM_KEY
--- checks
my $want = admitted(1000, estimate(140, 256));
is $want, 3, 'default 256: 3 fit 1000';
check_admission(hold_in_flight(11, padded_body(140)), $want, 'default estimate');

=== TEST 12: an estimate over the limit is capped: an empty key takes one, then nothing fits
--- http_config eval
$main::TPM_KEY . "conductor_estimate completion=5000;\n"
--- checks
check_admission(hold_in_flight(3, padded_body(140)), 1, 'completion=5000 > tpm');

=== TEST 13: conductor_estimate needs completion=N
--- http_config eval
$main::TPM_KEY . "conductor_estimate completion=lots;\n"
--- must_die
