# conductor_status and the clients (conductor_client): after requests of two
# clients through conductor_auth, against the embedded mock provider, the
# JSON, the Prometheus text and the HTML page (rendered by headless
# Chromium when there is one) show each client's requests, tokens, cost,
# limits and budgets with the numbers the answers imply, and never a client
# key, nor its digest.
use lib 't/lib';
use Test::Conductor;
use Digest::SHA ();
use File::Path ();
use POSIX ();
use Time::HiRes ();
use Time::Local ();

my $env  = harness_env();
my $port = $env->{TEST_NGINX_PORT};

my $ALICE_KEY = 'sk-alice-0123456789-topsecret';
my $BOB_KEY   = 'sk-bob-9876543210-hush';
my $BOB_SHA   = Digest::SHA::sha256_hex($BOB_KEY);
my $CAROL_KEY = 'sk-carol-5555-quiet';
my $PROVIDER_SECRET = 'mock-provider-secret-42';

# every string that must never be in a status output
my @SECRETS = ($ALICE_KEY, $BOB_KEY, $CAROL_KEY, $BOB_SHA, Digest::SHA::sha256_hex($ALICE_KEY),
    Digest::SHA::sha256_hex($CAROL_KEY), Digest::SHA::sha256_base64($BOB_KEY), $PROVIDER_SECRET);

# prices, pico-USD a token: USD per million tokens * 10^6
my %PRICE = (
    'm-cheap' => [ 1_000_000, 2_000_000 ],    # input=1 output=2
    'm-fine'  => [ 123_457,   500_000 ],      # input=0.123457 output=0.5
);

start_nginx(
    http_config => <<"HTTP",
    conductor_zone conductor:1m;
    conductor_provider mock {
        url http://127.0.0.1:$port/mock/v1;
        key m1 $PROVIDER_SECRET;
        price m-cheap input=1 output=2;
        price m-fine input=0.123457 output=0.5;
    }
    conductor_provider slowmock {
        url http://127.0.0.1:$port/slowmock/v1;
        key s1 $PROVIDER_SECRET-slow;
        price m-slow input=1 output=2;
    }
    conductor_model cheap { mock m-cheap; }
    conductor_model slow { slowmock m-slow; }
    conductor_model fine { mock m-fine; }
    conductor_model free { mock m-free; }
    conductor_client alice {
        key $ALICE_KEY;
        models cheap fine;
        limit rpm=100 tpm=100000 rph=1000 max_inflight=4;
        budget 1.5 per=day;
        budget 10 per=total;
    }
    conductor_client bob {
        key sha256=$BOB_SHA;
        limit rpd=500;
        budget 2.25 per=month;
        unpriced tokens;
        admin on;
    }
    conductor_client carol {
        key $CAROL_KEY;
        limit rpm=1;
    }
    upstream conductor_backend { conductor_balancer; }
HTTP
    config => <<"SERVER",
    location /v1/ {
        conductor_auth on;
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location /mock/ {
        conductor_mock;
    }
    location /slowmock/ {
        conductor_mock delay=100ms;
    }
    location = /conductor/status {
        conductor_auth off;
        conductor_status;
        allow 127.0.0.1;
        deny all;
    }
    location = /admin/status {
        conductor_auth on;
        conductor_status;
    }
SERVER
);

# ---------------------------------------------------------------- requests

# the minute windows must not turn over between the requests and the
# checks: the test takes a few seconds (some 25 under valgrind); should the
# bucket turn all the same, a window's use is checked as at most the count
Time::HiRes::sleep(0.2) while time % 60 > ($ENV{TEST_NGINX_USE_VALGRIND} ? 15 : 40);
my $t0 = time;

# $cost{client}: pico-USD of its priced answers, from the usage they carry
my (%cost, %tokens, %answers);

sub chat {
    my ($client, $headers, $model, %o) = @_;
    my $body = $o{stream}
        ? qq{{"model":"$model","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello"}]}}
        : qq{{"model":"$model","messages":[{"role":"user","content":"hello"}]}};
    my $r = http_request(POST => '/v1/chat/completions', $headers, $body);
    return $r unless ($r->{status} // 0) == 200;
    my $u = $o{stream}
        ? (grep { $_->{json} && $_->{json}{usage} } @{ $r->{sse} || [] })[-1]{json}{usage}
        : $r->{json}{usage};
    ok $u && $u->{prompt_tokens} > 0 && $u->{completion_tokens} > 0, "$client $model: the answer's usage"
        or return $r;
    $tokens{$client}{prompt} += $u->{prompt_tokens};
    $tokens{$client}{completion} += $u->{completion_tokens};
    $answers{$client}{ $PRICE{"m-$model"} ? 'priced' : 'unpriced' }++;
    if (my $p = $PRICE{"m-$model"}) {
        $cost{$client} += $u->{prompt_tokens} * $p->[0] + $u->{completion_tokens} * $p->[1];
    }
    return $r;
}

my %alice = (Authorization => "Bearer $ALICE_KEY");
my %bob   = ('x-api-key' => $BOB_KEY);

is chat(alice => \%alice, 'cheap')->{status}, 200, "alice: cheap $_" for 1 .. 3;
is chat(alice => { 'x-api-key' => $ALICE_KEY }, 'fine')->{status}, 200, 'alice: fine, by x-api-key';
is chat(alice => \%alice, 'free')->{status}, 403, 'alice: a model she may not use';
is chat(bob => \%bob, 'fine')->{status}, 200, "bob: fine $_" for 1 .. 2;
is chat(bob => \%bob, 'free')->{status}, 200, 'bob: an unpriced model, counted in tokens';
is chat(bob => { Authorization => "Bearer $BOB_KEY" }, 'cheap', stream => 1)->{status}, 200, 'bob: a stream';
my %carol = (Authorization => "Bearer $CAROL_KEY");
is chat(carol => \%carol, 'cheap')->{status}, 200, 'carol: her one request a minute';
is chat(carol => \%carol, 'cheap')->{status}, 429, 'carol: the next one, refused at her limit';
is chat(nobody => {}, 'cheap')->{status}, 401, 'no key: 401';
is chat(nobody => { Authorization => 'Bearer sk-unknown' }, 'cheap')->{status}, 401, 'an unknown key: 401';

# ---------------------------------------------------------------- JSON

my $jr = http_request(GET => '/conductor/status');
is $jr->{status}, 200, 'status: 200';
my $s = $jr->{json};
ok $s && ref $s->{clients} eq 'ARRAY', 'a "clients" array' or diag $jr->{body};
my $t1 = time;
my %c = map { $_->{name} => $_ } @{ $s->{clients} || [] };
is_deeply [ map { $_->{name} } @{ $s->{clients} } ], [qw(alice bob carol)], 'the clients in configuration order';

# a window's use is exact while its bucket has not turned since the first
# request; after a turn the previous bucket only counts in part
sub window_is {
    my ($got, $want, $period, $what) = @_;
    if (int($t0 / $period) == int(time / $period)) {
        is $got, $want, $what;
    }
    else {
        ok defined $got && $got <= $want, "$what (the window turned: $got <= $want)";
    }
}

# USD of pico-USD, as a double and as the six decimals Prometheus shows
sub usd  { return $_[0] / 1e12 }
sub usd6 { my $p = shift; return sprintf '%d.%06d', int($p / 1e12), int(($p % 1_000_000_000_000) / 1e6) }
sub near { my ($got, $want) = @_; return defined $got && abs($got - $want) <= 1e-12 * (1 + abs $want) }

my $next_day = (int($s->{time} / 86400) + 1) * 86400;
my @gm = gmtime $s->{time};
my ($ny, $nm) = $gm[4] == 11 ? ($gm[5] + 1901, 0) : ($gm[5] + 1900, $gm[4] + 1);
my $next_month = Time::Local::timegm(0, 0, 0, 1, $nm, $ny);

my %want = (
    alice => {
        requests => 5, responses => 4, errors => { '4xx' => 1 }, unpriced => 0,
        inflight => 0, max_inflight => 4, models => [qw(cheap fine)], admin => 0, unpriced_mode => 'refuse',
        limits => { rpm => [ 100, 4, 60 ], rph => [ 1000, 4, 3600 ],
                    tpm => [ 100000, $tokens{alice}{prompt} + $tokens{alice}{completion}, 60 ] },
        budgets => { day => [ 1.5, $next_day ], total => [ 10, undef ] },
    },
    bob => {
        requests => 4, responses => 4, errors => {}, unpriced => 1,
        inflight => 0, max_inflight => 0, models => undef, admin => 1, unpriced_mode => 'tokens',
        limits => { rpd => [ 500, 4, 86400 ] },
        budgets => { month => [ 2.25, $next_month ] },
    },
    carol => {
        requests => 2, responses => 1, errors => { 429 => 1 }, unpriced => 0,
        inflight => 0, max_inflight => 0, models => undef, admin => 0, unpriced_mode => 'refuse',
        limits => { rpm => [ 1, 1, 60 ] },
        budgets => {},
    },
);

for my $name (qw(alice bob carol)) {
    my ($w, $g) = ($want{$name}, $c{$name});
    ok $g, "client $name reported" or next;
    is $g->{$_}, $w->{$_}, "$name: $_" for qw(requests responses unpriced inflight max_inflight unpriced_mode);
    is_deeply { map { $_ => $g->{errors}{$_} } keys %{ $g->{errors} } },
        { (map { $_ => 0 } keys %{ $g->{errors} }), %{ $w->{errors} } }, "$name: errors by class";
    is_deeply [ sort keys %{ $g->{errors} } ],
        [ sort qw(4xx 429 5xx timeout connect stream_cut stream_timeout) ], "$name: every error class";
    is $g->{tokens}{prompt}, $tokens{$name}{prompt}, "$name: prompt tokens, as the answers said";
    is $g->{tokens}{completion}, $tokens{$name}{completion}, "$name: completion tokens";
    is $g->{tokens}{total}, $tokens{$name}{prompt} + $tokens{$name}{completion}, "$name: total tokens";
    ok near($g->{cost_usd}, usd($cost{$name})), "$name: cost_usd is the sum of the answers' costs ("
        . usd($cost{$name}) . ')' or diag "got $g->{cost_usd}";
    ok JSON::PP::is_bool($g->{admin}) && !!$g->{admin} == !!$w->{admin}, "$name: admin";
    is_deeply $g->{models}, $w->{models}, "$name: models";

    is_deeply [ sort keys %{ $g->{limits} } ], [ sort keys %{ $w->{limits} } ], "$name: only the configured limits";
    for my $l (sort keys %{ $w->{limits} }) {
        my ($limit, $used, $period) = @{ $w->{limits}{$l} };
        my $gl = $g->{limits}{$l};
        is $gl->{limit}, $limit, "$name $l: limit";
        window_is($gl->{used}, $used, $period, "$name $l: used");
        is $gl->{remaining}, $limit - $gl->{used}, "$name $l: remaining";
        ok $gl->{reset_s} >= 1 && $gl->{reset_s} <= $period, "$name $l: reset in $gl->{reset_s} s";
    }

    is_deeply [ sort keys %{ $g->{budgets} } ], [ sort keys %{ $w->{budgets} } ], "$name: only the configured budgets";
    for my $p (sort keys %{ $w->{budgets} }) {
        my ($amount, $resets) = @{ $w->{budgets}{$p} };
        my $b = $g->{budgets}{$p};
        is $b->{usd}, $amount, "$name $p budget: usd";
        ok near($b->{spent_usd}, usd($cost{$name})), "$name $p budget: spent is the sum of the answers' costs"
            or diag "got $b->{spent_usd}, want " . usd($cost{$name});
        is $b->{reserved_usd}, 0, "$name $p budget: nothing reserved once the requests ended";
        ok near($b->{remaining_usd}, $amount - usd($cost{$name})), "$name $p budget: remaining"
            or diag "got $b->{remaining_usd}";
        is $b->{resets}, $resets, "$name $p budget: resets " . ($resets // 'never');
    }
    ok !grep({ exists $g->{$_} } qw(key keys digest sha256 secret)), "$name: no key field";
}
ok $cost{alice} > 0 && $cost{bob} > 0 && $cost{carol} > 0, 'every client spent something';
is $answers{bob}{unpriced}, 1, "bob's unpriced answer";
ok $cost{bob} % 1_000_000 != 0, 'a cost below a micro-USD: Prometheus shows it truncated';

# a client's requests are its own; the totals have every routed request,
# the 401s of the requests without a client too
is $s->{totals}{requests}, 13, 'totals: the requests of the clients and the two 401s';
is $s->{gateway}{errors}{'4xx'}, 3, "the 401s and alice's 403: answered by the gateway";

# the admin client reads the status with its key; another client may not
my $adm = http_request(GET => '/admin/status', { Authorization => "Bearer $BOB_KEY" });
is $adm->{status}, 200, 'the admin client reads /admin/status';
is_deeply [ map { $_->{name} } @{ $adm->{json}{clients} || [] } ], [qw(alice bob carol)], '... with the clients';
is http_request(GET => '/admin/status', \%alice)->{status}, 403, 'a client that is not admin: 403';

# ---------------------------------------------------------------- Prometheus

my $pr = http_request(GET => '/conductor/status?format=prometheus');
is $pr->{status}, 200, 'prometheus: 200';
my $text = $pr->{body};

# a small check of the exposition: every sample's family has its HELP and
# TYPE before it, its samples stay together, no series twice
sub exposition_errors {
    my ($t) = @_;
    my (%type, %help, %seen, %done, @bad);
    my $last = '';
    for my $line (split /\n/, $t) {
        if ($line =~ /^# HELP (\S+) \S/) { push @bad, "second HELP $1" if $help{$1}++; next }
        if ($line =~ /^# TYPE (\S+) (counter|gauge)$/) { push @bad, "second TYPE $1" if $type{$1}++; next }
        my ($name, $labels) = $line =~ /^([a-z_]+)(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? [0-9.]+$/
            or do { push @bad, "not a sample: $line"; next };
        push @bad, "no TYPE before $line" unless $type{$name} && $help{$name};
        push @bad, "$name is split" if $done{$name};
        $done{$last} = 1 if $last ne $name;
        $last = $name;
        push @bad, "twice: $line" if $seen{"$name$labels"}++;
    }
    push @bad, 'no final line feed' unless $t =~ /\n\z/;
    return @bad;
}
is_deeply [ exposition_errors($text) ], [], 'prometheus: a valid exposition' or diag $text;

my %types = (
    (map { ("conductor_client_${_}_total" => 'counter') }
        qw(requests responses errors tokens cost_usd estimated unpriced)),
    (map { ("conductor_client_$_" => 'gauge') }
        qw(inflight limit limit_used limit_remaining budget_usd budget_spent_usd budget_reserved_usd)),
);
for my $f (sort keys %types) {
    like $text, qr/^# HELP \Q$f\E \S.*\n# TYPE \Q$f $types{$f}\E$/m, "$f: HELP and TYPE $types{$f}";
}

my @lines;
for my $name (qw(alice bob carol)) {
    my ($w, $l) = ($want{$name}, qq{client="$name"});
    push @lines,
        "conductor_client_requests_total{$l} $w->{requests}",
        "conductor_client_responses_total{$l} $w->{responses}",
        (map { "conductor_client_errors_total{$l,class=\"$_\"} " . ($w->{errors}{$_} // 0) }
            qw(4xx 429 5xx timeout connect stream_cut stream_timeout)),
        "conductor_client_tokens_total{$l,type=\"prompt\"} $tokens{$name}{prompt}",
        "conductor_client_tokens_total{$l,type=\"completion\"} $tokens{$name}{completion}",
        "conductor_client_tokens_total{$l,type=\"cached\"} 0",
        "conductor_client_cost_usd_total{$l} " . usd6($cost{$name}),
        "conductor_client_unpriced_total{$l} $w->{unpriced}",
        "conductor_client_inflight{$l} 0",
        (map { "conductor_client_limit{$l,limit=\"$_\"} $w->{limits}{$_}[0]" } sort keys %{ $w->{limits} }),
        (map { "conductor_client_budget_usd{$l,period=\"$_\"} " . sprintf('%.6f', $w->{budgets}{$_}[0]) }
            sort keys %{ $w->{budgets} }),
        (map { "conductor_client_budget_spent_usd{$l,period=\"$_\"} " . usd6($cost{$name}) }
            sort keys %{ $w->{budgets} }),
        (map { "conductor_client_budget_reserved_usd{$l,period=\"$_\"} 0.000000" }
            sort keys %{ $w->{budgets} });
    for my $lim (sort keys %{ $w->{limits} }) {
        my ($limit, $used, $period) = @{ $w->{limits}{$lim} };
        my ($u) = $text =~ /^conductor_client_limit_used\{\Q$l\E,limit="$lim"\} (\d+)$/m;
        window_is($u, $used, $period, "prometheus: $name limit_used{limit=\"$lim\"}");
        my ($r) = $text =~ /^conductor_client_limit_remaining\{\Q$l\E,limit="$lim"\} (\d+)$/m;
        is $r, defined $u ? $limit - $u : undef, "prometheus: $name limit_remaining{limit=\"$lim\"}";
    }
}
for my $line (@lines) {
    like $text, qr/^\Q$line\E$/m, "prometheus: $line";
}

# only what is configured: no sample of a limit or budget a client lacks
unlike $text, qr/^conductor_client_limit(?:_used|_remaining)?\{client="bob",limit="(?!rpd")/m,
    'bob: only his rpd limit';
unlike $text, qr/^conductor_client_budget\w*\{client="alice",period="month"\}/m, 'alice: no month budget';
unlike $text, qr/^conductor_client_budget\w*\{client="bob",period="(?:day|total)"\}/m, 'bob: no day or total budget';
unlike $text, qr/^conductor_client_budget\w*\{client="carol"/m, 'carol: no budget';
is scalar(() = $text =~ /^conductor_client_requests_total\{/mg), 3, 'one requests sample a client';

# ---------------------------------------------------------------- in flight

# while a stream of bob's is on its way, its estimated cost is held on his
# budget, and what remains is the budget less spent and held
my $st = http_stream_open(POST => '/v1/chat/completions', \%bob,
    '{"model":"slow","stream":true,"stream_options":{"include_usage":true},"messages":[]}');
is $st->status, 200, 'bob: a slow stream';
ok $st->read_until(qr/"role":"assistant"/, 10), '... its first event';
my $busy = http_request(GET => '/conductor/status')->{json}{clients}[1];
my $mb = $busy->{budgets}{month};
is $busy->{inflight}, 1, 'in flight: 1';
ok $mb->{reserved_usd} > 0, "in flight: its estimated cost is held ($mb->{reserved_usd})";
ok near($mb->{spent_usd}, usd($cost{bob})), 'in flight: spent as before';
ok near($mb->{remaining_usd}, 2.25 - $mb->{spent_usd} - $mb->{reserved_usd}),
    'in flight: remaining is the budget less spent and held' or diag "got $mb->{remaining_usd}";
my $busy_text = http_request(GET => '/conductor/status?format=prometheus')->{body};
like $busy_text, qr/^conductor_client_inflight\{client="bob"\} 1$/m, 'prometheus: in flight 1';
my ($held) = $busy_text =~ /^conductor_client_budget_reserved_usd\{client="bob",period="month"\} (\S+)$/m;
ok defined $held && $held > 0, 'prometheus: the cost held ' . ($held // 'none');
$st->read_all(20);
ok $st->complete, 'the stream ended';
$st->wait_logged;
my $u = (grep { $_->{json} && $_->{json}{usage} } @{ $st->response->{sse} || [] })[-1]{json}{usage};
my $slow_cost = $u->{prompt_tokens} * 1_000_000 + $u->{completion_tokens} * 2_000_000;
my $after = http_request(GET => '/conductor/status')->{json}{clients}[1];
is $after->{inflight}, 0, 'after the stream: nothing in flight';
is $after->{budgets}{month}{reserved_usd}, 0, 'after the stream: nothing held';
ok near($after->{budgets}{month}{spent_usd}, usd($cost{bob} + $slow_cost)),
    "after the stream: its cost is spent";

# ---------------------------------------------------------------- HTML

my $html = http_request(GET => '/conductor/status?format=html');
is $html->{status}, 200, 'html: 200';
like $html->{body}, qr{<h2>Clients</h2>\s*<div class="scroll"><table id="clients">}, 'html: a Clients table';
like $html->{body}, qr{s\.clients\.map}, "html: filled from the JSON's clients";

# no secret, in any output
for my $out ([ json => $jr->{body} ], [ admin => $adm->{body} ], [ prometheus => $text ],
             [ html => $html->{body} ])
{
    my @found = grep { index($out->[1], $_) >= 0 } @SECRETS;
    is_deeply \@found, [], "$out->[0]: no client key, digest or provider secret";
}

# the page in a browser, where there is one (t/021-status-page.t checks
# the rest of the page)
my $CHROMIUM = $ENV{TEST_NGINX_CHROMIUM} // '/usr/bin/chromium';
SKIP: {
    skip "no $CHROMIUM", 1 unless -x $CHROMIUM;

    my $dom = chromium_dom("http://127.0.0.1:$port/conductor/status?format=html");
    skip 'chromium could not render the page here', 1
        unless defined $dom && $dom =~ m{<span id="meta">ngx_http_conductor_module};

    my $s2 = http_request(GET => '/conductor/status')->{json};
    my %c2 = map { $_->{name} => $_ } @{ $s2->{clients} };
    for my $name (qw(alice bob carol)) {
        my $g = $c2{$name};
        my @cells = row_cells($dom, 'data-client', $name);
        is scalar(@cells), 9, "page: the row of $name" or next;
        is $cells[0], $name . ($g->{admin} ? ' admin' : ''), "page $name: name";
        is $cells[1], $g->{max_inflight} ? "0 / $g->{max_inflight}" : '0', "page $name: in flight";
        like $cells[2], qr/^\Q$g->{requests}\E \(\d+\.\d%\)$/, "page $name: requests";
        like $cells[3], qr/^\Q@{[ num($g->{tokens}{total}) ]}\E \(\d+\.\d%\)$/, "page $name: tokens";
        like $cells[4], qr/^\Q@{[ sprintf '$%.6f', $g->{cost_usd} ]}\E \(\d+\.\d%\)$/, "page $name: cost";
        my $errs = join ', ', map { "$_ $g->{errors}{$_}" } grep { $g->{errors}{$_} } qw(4xx 429 5xx timeout connect);
        is $cells[5], $errs || '0', "page $name: errors";
        my $lim = join '', map { "$_ " . num($g->{limits}{$_}{used}) . ' / ' . num($g->{limits}{$_}{limit}) }
            grep { $g->{limits}{$_} } qw(rpm tpm rph tph rpd tpd);
        if (int($t0 / 60) == int(time / 60)) {
            is $cells[6], $lim || 'none', "page $name: limits ($cells[6])";
        }
        else {
            my $re = join '', map { quotemeta("$_ ") . '[\d,]+' . quotemeta(' / ' . num($g->{limits}{$_}{limit})) }
                grep { $g->{limits}{$_} } qw(rpm tpm rph tph rpd tpd);
            like $cells[6], qr/^$re$/, "page $name: limits, a window turned ($cells[6])";
        }
        my $bud = join '', map {
            my $b = $g->{budgets}{$_};
            sprintf('%s $%.6f / $%.6f', $_, $b->{spent_usd}, $b->{usd})
                . (defined $b->{resets} ? 'resets ' . POSIX::strftime('%Y-%m-%d %H:%M UTC', gmtime $b->{resets})
                                        : 'never resets')
        } grep { $g->{budgets}{$_} } qw(day month total);
        is $cells[7], $bud || 'none', "page $name: budgets ($cells[7])";
        is $cells[8], $g->{models} ? join(', ', @{ $g->{models} }) : 'all', "page $name: models";
    }
    my @found = grep { index($dom, $_) >= 0 } @SECRETS;
    is_deeply \@found, [], 'page: no client key, digest or provider secret';
}

my $problems = stop_nginx();
is_deeply $problems, [], 'nginx ran clean';
done_testing();

# ---------------------------------------------------------------- helpers

sub num { my $n = shift; 1 while $n =~ s/^(\d+)(\d{3})/$1,$2/; $n }

# the cells of the row whose attribute is name="value", as text
sub row_cells {
    my ($dom, $attr, $value) = @_;
    my ($row) = $dom =~ m{<tr $attr="\Q$value\E">(.*?)</tr>}s or return;
    my @cells = $row =~ m{<td[^>]*>(.*?)</td>}gs;
    for (@cells) { s/<[^>]+>//g; s/&amp;/&/g; s/&lt;/</g; s/&gt;/>/g; }
    return @cells;
}

# the DOM headless Chromium renders after 5 s of virtual time, in a new
# empty profile; undef when it fails or hangs (then killed, its process
# group, by id)
sub chromium_dom {
    my ($url) = @_;
    my $dir = "$env->{TEST_NGINX_SERVROOT}/chromium";
    File::Path::remove_tree($dir);
    File::Path::make_path("$dir/profile");
    my @argv = ($CHROMIUM, qw(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
        --disable-background-networking --disable-component-update --disable-sync
        --disable-dev-shm-usage), "--user-data-dir=$dir/profile",
        '--virtual-time-budget=5000', '--dump-dom', $url);
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$dir/out" or POSIX::_exit(126);
        open STDERR, '>', "$dir/err" or POSIX::_exit(126);
        { no warnings 'exec'; exec { $argv[0] } @argv; }
        POSIX::_exit(127);
    }
    my $deadline = Time::HiRes::time() + 60;
    my $status;
    while (1) {
        my $r = waitpid $pid, POSIX::WNOHANG();
        if ($r == $pid) { $status = $?; last }
        if (Time::HiRes::time() > $deadline) {
            diag "chromium hung: killing its process group $pid";
            kill 'KILL', -$pid;
            waitpid $pid, 0;
            return undef;
        }
        Time::HiRes::sleep(0.05);
    }
    if ($status) {
        diag "chromium exited with status $status";
        return undef;
    }
    local $/;
    open my $fh, '<', "$dir/out" or return undef;
    return scalar <$fh>;
}
